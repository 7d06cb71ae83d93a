"""The fast paths behind statistics at scale give the very numbers of the slow ones they replace.

Each fast path (issue 16) is checked against the implementation it replaced, kept here or in scipy,
to the bit: special functions for scipy's t and normal distributions, the signed-rank test's normal
approximation for ``scipy.stats.wilcoxon``, the t-test for ``scipy.stats.ttest_1samp``, the
count-based signed-rank MDE for the sort-based one, one selection of the Walsh averages for the
estimate and both bounds, per-unit means aggregated in SQLite for pandas' means of the rows.
Timings live in ``benches/perf/bench_stats_scale.py``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from geoaudit import stats
from geoaudit.runs import Run


def _deltas(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    """Paired deltas of the shapes LLM visibility gives: continuous, discrete (ties), zero-heavy, mixed."""
    if kind == 0:
        return rng.normal(0.1, 1, n)
    if kind == 1:
        return np.round(rng.normal(0.1, 1, n) * 4) / 8
    if kind == 2:
        x = rng.normal(0.2, 1, n)
        x[rng.random(n) < 0.7] = 0
        return x
    return rng.choice([-1.0, 0.0, 0.0, 1.0, 0.5, -0.25, 1 / 3, -1 / 3], n)


def test_binomial_tail_is_scipys_binomtest() -> None:
    for n in (1, 2, 7, 30, 64, 384, 2000):
        for p in (0.01, 0.05, 0.1):
            for k in range(0, n + 1, max(1, n // 50)):
                assert stats._binom_p_greater(k, n, p) == sps.binomtest(k, n, p, alternative="greater").pvalue


def test_special_functions_are_scipys_distributions() -> None:
    rng = np.random.default_rng(0)
    q, df, x = rng.random(5000), rng.integers(1, 3000, 5000).astype(float), rng.normal(0, 4, 5000)
    assert np.array_equal(stats._t_ppf(q, df), sps.t.ppf(q, df))
    assert np.array_equal(stats._t_sf(x, df), sps.t.sf(x, df))
    assert np.array_equal(stats._t_cdf(x, df), sps.t.cdf(x, df))
    assert np.array_equal(stats._norm_ppf(q), sps.norm.ppf(q))
    assert np.array_equal(stats._norm_cdf(x), sps.norm.cdf(x))
    assert all(float(stats._t_ppf(a, b)) == float(sps.t.ppf(a, b)) for a, b in zip(q[:300], df[:300]))


@pytest.mark.parametrize("zero_method", ["pratt", "wilcox", "zsplit"])
def test_signed_rank_test_is_scipys_wilcoxon_to_the_bit(zero_method: str) -> None:
    rng = np.random.default_rng(1)
    checked = 0
    for it in range(240):
        x = _deltas(rng, int(rng.choice([14, 30, 50, 51, 120, 700])), it % 4)
        if np.count_nonzero(x) < 5:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            two = sps.wilcoxon(x, zero_method=zero_method)
            greater = sps.wilcoxon(x, zero_method=zero_method, alternative="greater")
            less = sps.wilcoxon(x, zero_method=zero_method, alternative="less")
        got = stats._rank_test(x, zero_method, "two-sided")
        assert (got["stat"], got["p"]) == (float(two.statistic), float(two.pvalue))
        got = stats._rank_test(x, zero_method, "greater")
        assert (got["stat"], got["p"], got["p_less"]) == (
            float(greater.statistic),
            float(greater.pvalue),
            float(less.pvalue),
        )
        d = x[x != 0] if zero_method == "wilcox" else x
        r = sps.rankdata(np.abs(d))
        assert stats.rank_biserial(x, zero_method=zero_method) == (r[d > 0].sum() - r[d < 0].sum()) / r.sum()
        checked += 1
    assert checked > 200


def test_t_test_p_is_scipys_ttest_1samp_to_the_bit() -> None:
    rng = np.random.default_rng(2)
    for it in range(300):
        x = _deltas(rng, int(rng.choice([5, 13, 40, 300])), it % 4)
        for alternative in ("two-sided", "greater", "less"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = float(sps.ttest_1samp(x, 0.0, alternative=alternative).pvalue)
            got = stats._ttest_p(x, alternative)
            assert got == expected or (math.isnan(got) and math.isnan(expected))


def _mde_by_sorting(x: np.ndarray, alpha: float, power: float, alternative: str, seed: int, n_sim: int = 200) -> float:
    """The signed-rank MDE as it was computed before: every resample of every shift sorted."""
    n = x.size
    if n < 2 or not np.ptp(x) > 0:
        return math.nan
    rng = np.random.default_rng([seed, n, 7])
    base = np.abs(x)[rng.integers(0, n, size=(n_sim, n))] * rng.choice([-1.0, 1.0], size=(n_sim, n))
    moves = base != 0
    z_crit = float(sps.norm.ppf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha))
    step = -1.0 if alternative == "less" else 1.0

    def powers(shifts: np.ndarray) -> np.ndarray:
        y = base[None] + (step * shifts)[:, None, None] * moves[None]
        z = stats._signed_rank_z(y.reshape(-1, n)).reshape(len(shifts), n_sim) * step
        hit = np.abs(z) > z_crit if alternative == "two-sided" else z > z_crit
        return np.asarray(hit.mean(axis=1), dtype=float)

    # The search over shifts is shared; what differs (and is checked) is how the power is computed.
    return stats._smallest_powered_shift(powers, x, alpha, power, alternative)


def test_count_based_signed_rank_mde_equals_sorting_every_resample() -> None:
    rng = np.random.default_rng(11)
    for it in range(60):
        x = _deltas(rng, int(rng.choice([2, 5, 14, 30, 90])), it % 4)
        alternative = ("two-sided", "greater", "less")[it % 3]
        alpha = float(rng.choice([0.05, 0.05 / 64]))
        expected = _mde_by_sorting(x, alpha, 0.8, alternative, seed=it % 3)
        got = stats.mde_signed_rank(x, alpha, 0.8, alternative, seed=it % 3)
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (it, got, expected)


def test_signed_rank_z_from_counts_equals_ranking_every_resample() -> None:
    rng = np.random.default_rng(13)
    for it in range(40):
        x = _deltas(rng, int(rng.choice([3, 14, 60, 200])), it % 4)
        idx, flips = stats._mde_draws(x.size, 50, it)
        mags, which = np.unique(np.abs(x), return_inverse=True)
        counts = stats._sign_counts(which.reshape(-1)[idx], flips, mags.size)
        base = np.abs(x)[idx] * flips
        # Shifts that make values tie with others and land exactly on 0, and ordinary ones.
        for shift in (0.0, 0.125, -0.25, 1 / 3, float(mags[len(mags) // 2]), 0.3712):
            expected = stats._signed_rank_z(base + shift * (base != 0))
            assert np.array_equal(stats._signed_rank_z_counts(mags, [counts], shift), expected), (it, shift)
            blocks = [np.ascontiguousarray(counts[:, i : i + 8]) for i in range(0, 50, 8)]
            assert np.array_equal(stats._signed_rank_z_counts(mags, blocks, shift), expected), (it, shift)


def test_walsh_estimate_and_bounds_from_one_selection_equal_sorting_all_averages() -> None:
    rng = np.random.default_rng(5)
    for it in range(80):
        n = int(rng.choice([1, 2, 6, 13, 40, 250]))
        x = _deltas(rng, n, it % 4)
        s = np.sort(x)
        walsh = np.sort([(s[i] + s[j]) / 2 for i in range(n) for j in range(i, n)])
        total = walsh.size
        hl = walsh[total // 2] if total % 2 else (walsh[total // 2 - 1] + walsh[total // 2]) / 2
        c = stats._signed_rank_crit(n, 0.025)
        est, lo, hi = stats.walsh_interval(x, alpha=0.05)
        assert est == hl == stats.hodges_lehmann(x)
        assert (lo, hi) == ((walsh[c], walsh[total - c - 1]) if c >= 0 else (-math.inf, math.inf))


def test_exact_signed_rank_null_continued_from_smaller_n_equals_a_fresh_recursion() -> None:
    def fresh(n: int) -> np.ndarray:
        p = np.zeros(n * (n + 1) // 2 + 1)
        p[0] = 1.0
        top = 0
        for k in range(1, n + 1):
            top += k
            p[k : top + 1] = 0.5 * (p[k : top + 1] + p[: top + 1 - k])
            p[:k] *= 0.5
        return np.cumsum(p)

    for n in (0, 1, 12, 40, 7, 300, 299, 301, 64):  # up, down (a restart), past the largest exact n
        stats._signed_rank_cdf.cache_clear()
        assert np.array_equal(stats._signed_rank_cdf(n), fresh(n)), n


def test_group_positions_are_the_groupby_groups_in_order() -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "strategy": rng.choice(["a", "b", "c"], 300),
            "rate": rng.choice([0.0, 0.5, np.nan], 300),
            "group": rng.choice(["x", "y"], 300),
            "v": rng.normal(size=300),
        }
    )
    expected = [(k, g.index.to_numpy()) for k, g in df.groupby(["strategy", "rate", "group"], dropna=False, sort=True)]
    got = stats._group_positions(df, ["strategy", "rate", "group"])
    assert len(got) == len(expected)
    for (k1, i1), (k2, i2) in zip(got, expected):
        assert [str(a) for a in k1] == [str(a) for a in k2] and np.array_equal(i1, i2)


def test_sql_unit_means_match_pandas_means_of_the_rows(tmp_path) -> None:
    """A run whose sources are shuffled per seed (ranks vary within a query) and whose samples
    average to non-dyadic numbers: SQLite's per-unit means are pandas' to the last bits."""
    from geoaudit.analysis import RunData

    rng = np.random.default_rng(4)
    run = Run(tmp_path / "run-sql")
    cols = [
        "item",
        "domain",
        "tags",
        "strategy",
        "rate",
        "seed",
        "condition",
        "sample",
        "target_orig_rank",
        "pawc",
        "cited",
    ]
    rows = []
    for i in range(12):
        for seed in range(3):
            rank = int(rng.integers(1, 6))
            for strategy, rate, condition in [("", None, "base")] + [
                (s, r, c) for s in ("identity", "rank") for r in (0.0, 0.5) for c in ("rivals", "treated")
            ]:
                for sample in range(3):
                    pawc = None if rng.random() < 0.05 else float(rng.random() / 3)
                    rows.append(
                        (
                            f"q{i}",
                            "home" if i % 2 else "food",
                            "t",
                            strategy,
                            rate,
                            seed,
                            condition,
                            sample,
                            rank,
                            pawc,
                            float(rng.integers(0, 2)),
                        )
                    )
    with run.conn:
        run.conn.executemany(f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
    loaded, from_rows = RunData.load(run, ["pawc", "cited"]), RunData.from_rows(run, run.rows(), ["pawc", "cited"])
    for by_rank in (False, True):
        a, b = loaded.units(by_rank), from_rows.units(by_rank)
        for x, y in ((a.means, b.means), (a.base, b.base)):
            assert list(x.columns) == list(y.columns)
            for col in x.columns:
                if col in ("pawc", "cited"):
                    assert np.allclose(x[col], y[col], rtol=1e-15, atol=0, equal_nan=True)
                else:
                    assert x[col].astype(str).tolist() == y[col].astype(str).tolist()
        assert a.items.sort_index().astype(str).equals(b.items.sort_index().astype(str))
    assert loaded.n_rows == len(rows) and loaded.n_queries == 12 and loaded.n_distinct == from_rows.n_distinct
    run.close()


def test_answer_samples_are_the_stored_answers_samples(tmp_path) -> None:
    from test_stats_pinned import restore

    run = restore("b", tmp_path)
    ids = list(run.rows()["answer_id"].unique())
    got = run.answer_samples(ids + ["a-missing"])
    stored = [a for a in ids if run.answer(a) is not None]
    assert stored and sorted(got) == sorted(stored)
    for a in stored:
        answer = run.answer(a)
        assert answer is not None
        assert [s.to_dict() for s in got[a]] == [s.to_dict() for s in answer.samples]
    run.close()
