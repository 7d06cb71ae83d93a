"""geoaudit.stats against independently computed values: scipy's own tests, hand examples, simulations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from geoaudit import stats
from geoaudit.errors import InputError

# ------------------------------------------------------------------------------------------
# Builders for result rows in the simulation's long format
# ------------------------------------------------------------------------------------------


def _row(item, cond, strategy, rate, seed, sample, **metrics):
    return {
        "item": item,
        "domain": metrics.pop("domain", ""),
        "tags": metrics.pop("tags", ""),
        "strategy": strategy,
        "rate": rate,
        "seed": seed,
        "condition": cond,
        "sample": sample,
        "target_orig_rank": metrics.pop("rank", 1),
        **metrics,
    }


def _from_deltas(baseline: np.ndarray, treated: np.ndarray, *, domain=None, metric="m"):
    """One strategy 'S' at rate 0.5: base and rivals equal to ``baseline``, treated to ``treated``."""
    recs = []
    for i, (b, t) in enumerate(zip(baseline, treated, strict=True)):
        dom = domain[i] if domain is not None else ""
        recs.append(_row(f"q{i}", "base", "", math.nan, 0, 0, domain=dom, **{metric: b}))
        recs.append(_row(f"q{i}", "rivals", "S", 0.5, 0, 0, domain=dom, **{metric: b}))
        recs.append(_row(f"q{i}", "treated", "S", 0.5, 0, 0, domain=dom, **{metric: t}))
    return pd.DataFrame(recs)


HIB = {"m": True, "low": False, "delta_rank": True}


# ------------------------------------------------------------------------------------------
# Corrections, effect sizes, MDE, bootstrap
# ------------------------------------------------------------------------------------------


def test_holm_matches_hand_computed_values_and_skips_nan():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005=.02, 3*.01=.03, 2*.03=.06, max(.06, 1*.04)=.06
    assert np.allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert np.isnan(out[1])
    assert np.allclose(np.delete(out, 1), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(stats.holm([0.02, 0.9]), [0.04, 0.9])
    assert np.allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1, monotone
    assert np.isnan(stats.holm([np.nan])).all()
    assert stats.holm([]).size == 0


def test_benjamini_hochberg_matches_hand_values_and_scipy():
    p = [0.01, 0.04, 0.03, 0.005]
    # p*m/rank: .005*4/1=.02, .01*4/2=.02, .03*4/3=.04, .04*4/4=.04; cumulative min from the top
    assert np.allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    out = stats.benjamini_hochberg([np.nan, 0.01, 0.04, 0.03, 0.005])
    assert np.isnan(out[0]) and np.allclose(out[1:], [0.02, 0.04, 0.04, 0.02])
    rng = np.random.default_rng(3)
    q = rng.uniform(size=37) ** 3
    assert np.allclose(stats.benjamini_hochberg(q), sps.false_discovery_control(q, method="bh"))


def test_cohens_dz_and_rank_biserial_hand_values():
    # d = 1,2,3,4,6: mean 3.2, squared deviations sum 14.8, sd = sqrt(14.8/4)
    assert stats.cohens_dz([1, 2, 3, 4, 6]) == pytest.approx(3.2 / math.sqrt(3.7))
    assert math.isnan(stats.cohens_dz([2, 2, 2]))
    # |d| ranks 1..6; R+ = 1+3+4+6 = 14, R- = 2+5 = 7 -> (14-7)/21
    assert stats.rank_biserial([1, -2, 3, 4, -5, 6]) == pytest.approx(1 / 3)
    assert stats.rank_biserial([0, 1, 2, 3]) == pytest.approx(1.0)  # zeros left out
    assert math.isnan(stats.rank_biserial([0, 0]))


def test_mde_gives_the_stated_power_under_the_noncentral_t():
    for n, sd in [(20, 1.0), (50, 0.3), (200, 2.0)]:
        mde = stats.mde_paired(sd, n, 0.05, 0.8)
        df = n - 1
        crit = sps.t.ppf(0.975, df)
        nc = mde * math.sqrt(n) / sd
        power = sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)
        assert power == pytest.approx(0.8, abs=0.01)
    one = stats.mde_paired(1.0, 30, 0.05, 0.8, alternative="greater")
    assert one < stats.mde_paired(1.0, 30, 0.05, 0.8)
    assert math.isnan(stats.mde_paired(0.0, 30)) and math.isnan(stats.mde_paired(1.0, 1))


def test_bootstrap_ci_agrees_with_scipy_bootstrap_and_is_seeded():
    rng = np.random.default_rng(7)
    x = rng.exponential(1.0, size=40)
    for ours, theirs in (("percentile", "percentile"), ("bca", "BCa")):
        lo, hi = stats.bootstrap_ci(x, n_boot=20000, method=ours, seed=1)
        ref = sps.bootstrap((x,), np.mean, n_resamples=20000, method=theirs, rng=2)
        assert lo == pytest.approx(ref.confidence_interval.low, abs=0.03)
        assert hi == pytest.approx(ref.confidence_interval.high, abs=0.03)
    assert stats.bootstrap_ci(x, seed=5) == stats.bootstrap_ci(x, seed=5)
    assert stats.bootstrap_ci(x, seed=5) != stats.bootstrap_ci(x, seed=6)
    # Paired ratio statistic: both arrays resampled with the same indices.
    b = rng.uniform(1, 2, size=40)
    t = b * 1.2
    lo, hi = stats.bootstrap_ci([b, t], lambda bb, tt: tt.mean(axis=-1) / bb.mean(axis=-1) - 1, n_boot=500)
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.2)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([1.0]))


def test_bootstrap_percentile_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(11)
    hits = 0
    for k in range(300):
        lo, hi = stats.bootstrap_ci(rng.normal(0.3, 1.0, size=40), n_boot=1000, seed=k)
        hits += lo <= 0.3 <= hi
    assert 0.88 <= hits / 300 <= 0.99


# ------------------------------------------------------------------------------------------
# Pairing
# ------------------------------------------------------------------------------------------


STRATS = {"A": 1, "B": 2}
RATES = (0.5, 1.0)


@pytest.fixture
def pairing_rows() -> pd.DataFrame:
    """Values encode where they came from, so a wrong join shows up as a wrong number.

    value = offset(condition, strategy, rate, item) + seed + 0.5 * sample; averaging seeds {0, 1}
    and samples {0, 1} adds 0.75. base offset 100*i; rivals 100*i + 10*code + rate;
    treated 100*i + 20*code + 2*rate.
    """
    recs = []
    for i, seed, sample in itertools.product(range(6), (0, 1), (0, 1)):
        noise = seed + 0.5 * sample
        dom = "health" if i < 3 else "law"
        tags = "facts, history" if i % 2 else "facts"
        kw = {"domain": dom, "tags": tags, "rank": i % 3 + 1}
        recs.append(_row(f"q{i}", "base", "", math.nan, seed, sample, m=100 * i + noise, **kw))
        for (s, code), rate in itertools.product(STRATS.items(), RATES):
            riv = 100 * i + 10 * code + rate + noise
            trt = 100 * i + 20 * code + 2 * rate + noise
            dr = code + rate  # a paired metric: defined on treated rows only
            recs.append(_row(f"q{i}", "rivals", s, rate, seed, sample, m=riv, delta_rank=np.nan, **kw))
            recs.append(_row(f"q{i}", "treated", s, rate, seed, sample, m=trt, delta_rank=dr, **kw))
    return pd.DataFrame(recs)


def test_advantage_pairs_treated_with_rivals_at_the_same_strategy_and_rate(pairing_rows):
    pv = stats.paired_values(pairing_rows, "m", "advantage")
    assert len(pv) == 6 * len(STRATS) * len(RATES)
    assert list(pv.columns) == ["item", "domain", "tags", "strategy", "rate", "target_orig_rank",
                                "baseline", "treated", "delta", "favourable"]  # fmt: skip
    for r in pv.itertuples():
        i, code = int(r.item[1:]), STRATS[r.strategy]
        assert r.baseline == pytest.approx(100 * i + 10 * code + r.rate + 0.75)
        assert r.treated == pytest.approx(100 * i + 20 * code + 2 * r.rate + 0.75)
        assert r.delta == pytest.approx(10 * code + r.rate)
        assert r.domain == ("health" if i < 3 else "law")
        assert r.target_orig_rank == i % 3 + 1


def test_net_pairs_treated_with_the_shared_base_rows(pairing_rows):
    pv = stats.paired_values(pairing_rows, "m", "net")
    assert len(pv) == 24
    for r in pv.itertuples():
        i, code = int(r.item[1:]), STRATS[r.strategy]
        assert r.baseline == pytest.approx(100 * i + 0.75)  # the base rows, whatever the strategy
        assert r.delta == pytest.approx(20 * code + 2 * r.rate)


def test_lower_is_better_flips_favourable_but_not_delta(pairing_rows):
    pv = stats.paired_values(pairing_rows, "m", "net", higher_is_better=False)
    assert (pv["delta"] > 0).all() and np.allclose(pv["favourable"], -pv["delta"])
    out = stats.summarize(
        pairing_rows.assign(low=pairing_rows["m"]), ["low"], comparisons=["net"],
        higher_is_better=HIB, n_boot=200,
    )  # fmt: skip
    assert (out["mean_delta"] > 0).all()  # treated - baseline, as stored
    assert (out["losses"] == 6).all() and (out["wins"] == 0).all()
    assert not out["higher_is_better"].any()


def test_paired_metric_is_its_own_delta_against_a_zero_baseline(pairing_rows):
    pv = stats.paired_values(pairing_rows, "delta_rank", "net", paired_metric=True)
    assert (pv["baseline"] == 0).all()
    assert np.allclose(pv["delta"], pv["strategy"].map(STRATS) + pv["rate"])
    out = stats.summarize(pairing_rows, ["delta_rank"], paired_metrics=["delta_rank"],
                          higher_is_better=HIB, n_boot=200)  # fmt: skip
    net = out[out["comparison"] == "net"]
    assert np.allclose(net["mean_delta"], net["strategy"].map(STRATS) + net["rate"])
    assert net["rel_improvement"].isna().all()  # baseline mean 0: eq. 4 undefined
    adv = out[out["comparison"] == "advantage"]
    assert (adv["status"] == stats.INSUFFICIENT).all()
    assert adv["note"].str.contains("not defined on rivals rows").all()


def test_summary_means_relative_improvement_and_nan_items(pairing_rows):
    rows = pairing_rows.copy()
    rows.loc[(rows["item"] == "q0") & (rows["condition"] == "base"), "m"] = np.nan
    out = stats.summarize(rows, ["m"], comparisons=["net"], higher_is_better=HIB, n_boot=300)
    assert len(out) == 4 and (out["n"] == 5).all() and (out["n_dropped"] == 1).all()
    assert out["note"].str.contains("1 item").all()
    r = out[(out["strategy"] == "A") & (out["rate"] == 0.5)].iloc[0]
    base = np.array([100 * i + 0.75 for i in range(1, 6)])
    assert r["baseline_mean"] == pytest.approx(base.mean())
    assert r["treated_mean"] == pytest.approx(base.mean() + 21)
    assert r["rel_improvement"] == pytest.approx((base.mean() + 21) / base.mean() - 1)
    # Constant delta (21 for every item): no variance, so no test - but the estimate stands.
    assert r["status"] == stats.INSUFFICIENT and math.isnan(r["wilcoxon_p"])
    assert r["delta_ci_low"] == pytest.approx(21) and r["delta_ci_high"] == pytest.approx(21)


# ------------------------------------------------------------------------------------------
# Tests against scipy
# ------------------------------------------------------------------------------------------


def _known_data(n=40, seed=5, shift=0.1):
    rng = np.random.default_rng(seed)
    b = np.round(rng.uniform(0, 1, n), 2)
    t = np.round(b + rng.normal(shift, 0.3, n), 2)
    t[:6] = b[:6]  # some exact zero differences
    return b, t


def test_default_mode_equals_scipy_wilcoxon_pratt_and_ttest_rel():
    b, t = _known_data()
    out = stats.summarize(_from_deltas(b, t), ["m"], comparisons=["advantage"],
                          higher_is_better=HIB, n_boot=500)  # fmt: skip
    r = out.iloc[0]
    w = sps.wilcoxon(t, b, zero_method="pratt")
    assert r["status"] == "ok" and r["zero_method"] == "pratt" and r["alternative"] == "two-sided"
    assert r["wilcoxon_p"] == pytest.approx(w.pvalue, rel=1e-12)
    assert r["ttest_p"] == pytest.approx(sps.ttest_rel(t, b).pvalue, rel=1e-12)
    d = t - b
    assert r["n"] == 40 and r["n_nonzero"] == int((np.abs(d) > 1e-12).sum())
    assert r["ties"] == 40 - r["n_nonzero"]
    assert r["wins"] == int((d > 1e-12).sum()) and r["losses"] == int((d < -1e-12).sum())
    assert r["mean_delta"] == pytest.approx(d.mean())
    assert r["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert r["delta_ci_low"] < d.mean() < r["delta_ci_high"]
    # The declared estimand is the mean: t statistic of scipy, df = non-zero pairs - 1 (zero-aware).
    nz = int(r["n_nonzero"])
    t_stat = sps.ttest_rel(t, b).statistic
    assert r["estimand"] == "mean" and r["estimate"] == pytest.approx(d.mean())
    assert r["p_value"] == pytest.approx(2 * sps.t.sf(abs(t_stat), nz - 1), rel=1e-9)
    assert r["companion_p"] == pytest.approx(w.pvalue, rel=1e-12)
    half = sps.t.ppf(0.975, nz - 1) * d.std(ddof=1) / math.sqrt(40)
    assert r["delta_ci_low"] == pytest.approx(d.mean() - half) and r["delta_ci_high"] == pytest.approx(d.mean() + half)
    assert r["mde"] == pytest.approx(stats.mde_paired(d.std(ddof=1), 40, df=nz - 1))
    assert r["mde_alpha"] == 0.05 and r["ci_level"] == 0.95
    # One-sided on a lower-is-better metric: "greater" means the value went down.
    out = stats.summarize(_from_deltas(b, t, metric="low"), ["low"], comparisons=["advantage"],
                          higher_is_better=HIB, alternative="greater", n_boot=200)  # fmt: skip
    w = sps.wilcoxon(b, t, zero_method="pratt", alternative="greater")
    assert out.iloc[0]["wilcoxon_p"] == pytest.approx(w.pvalue, rel=1e-12)
    tt = sps.ttest_rel(b, t, alternative="greater")
    assert out.iloc[0]["ttest_p"] == pytest.approx(tt.pvalue, rel=1e-12)


def test_cseo_mode_equals_scipy_one_sided_wilcoxon_with_zeros_dropped():
    b, t = _known_data(n=60, seed=9, shift=0.05)
    domains = ["retail" if i % 2 else "games" for i in range(60)]
    out = stats.summarize(_from_deltas(b, t, domain=domains), ["m"], comparisons=["advantage"],
                          higher_is_better=HIB, mode="cseo", n_boot=200)  # fmt: skip
    assert list(out["group"]) == ["games", "retail"]
    for r in out.itertuples():
        mask = np.array([d == r.group for d in domains])
        d = t[mask] - b[mask]
        ref = sps.wilcoxon(d, alternative="greater")  # what C-SEO Bench's notebook calls
        assert r.wilcoxon_p == pytest.approx(ref.pvalue, rel=1e-12)
        nz = d[np.abs(d) > 1e-12]
        dropped = sps.wilcoxon(nz, alternative="greater", method="asymptotic")
        assert r.wilcoxon_p == pytest.approx(dropped.pvalue, rel=1e-12)  # zeros do not enter the test
        assert r.mean_delta == pytest.approx(d.mean())  # ... but they do enter the mean
        assert r.zero_method == "wilcox" and r.alternative == "greater"
        # C-SEO's family: one domain x metric x comparison x adopter rate, across strategies.
        assert r.family == f"domain={r.group}/m/advantage/rate=0.5" and r.family_size == 1
        assert r.estimand == "pseudomedian" and r.p_value == r.wilcoxon_p
        assert r.p_holm == pytest.approx(r.wilcoxon_p)
        assert r.sd_delta == pytest.approx(np.std(d)) and r.sd_ddof == 0  # the paper's np.std
        assert r.ci_level == pytest.approx(0.90)  # pairs with the one-sided 5 % tests
        assert "C-SEO Bench mode" in r.note and "Holm within each domain" in r.note


def test_holm_family_per_domain_versus_whole_run():
    rng = np.random.default_rng(2)
    recs = []
    for i in range(30):
        dom = "a" if i < 15 else "b"
        b = rng.uniform()
        recs.append(_row(f"q{i}", "base", "", math.nan, 0, 0, domain=dom, m=b))
        for s, shift in (("S1", 0.3), ("S2", 0.0), ("S3", 0.1)):
            recs.append(_row(f"q{i}", "rivals", s, 0.5, 0, 0, domain=dom, m=b))
            recs.append(_row(f"q{i}", "treated", s, 0.5, 0, 0, domain=dom, m=b + rng.normal(shift, 0.2)))
    rows = pd.DataFrame(recs)
    kw = {"comparisons": ["advantage"], "higher_is_better": HIB, "n_boot": 200}
    per_dom = stats.summarize(rows, ["m"], family="domain", **kw)
    for _, g in per_dom.groupby("group"):
        assert np.allclose(g["p_holm"], stats.holm(g["p_value"].to_numpy()))
        assert np.allclose(g["p_bh"], stats.benjamini_hochberg(g["p_value"].to_numpy()))
        assert (g["family_size"] == 3).all()
    run = stats.summarize(rows, ["m"], by="domain", family="run", **kw)
    assert np.allclose(run["p_holm"], stats.holm(run["p_value"].to_numpy()))
    assert (run["family_size"] == 6).all() and (run["family"] == "run").all()
    bh = stats.summarize(rows, ["m"], correction="bh", **kw)
    assert (bh["significant"] == (bh["p_bh"] < 0.05)).all() and (bh["correction"] == "bh").all()
    s1 = bh[bh["strategy"] == "S1"].iloc[0]
    assert s1["significant"] and s1["verdict"] == "better"
    # family="group" without a breakdown: one family named for the one group, "all".
    grouped = stats.summarize(rows, ["m"], family="group", **kw)
    assert (grouped["family"] == "all").all() and (grouped["family_size"] == 3).all()
    by_domain = stats.summarize(rows, ["m"], family="group", by="domain", **kw)
    assert set(by_domain["family"]) == {"domain=a", "domain=b"}


# ------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "treated", "reason"),
    [
        ([0.2, 0.3, 0.1], [0.3, 0.5, 0.4], "n=3 queries < 5"),
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "same value"),
        ([0.1] * 10, [0.1] * 7 + [0.3, 0.4, 0.2], "only 3 of 10 queries changed"),
        ([np.nan] * 8, [0.3] * 8, "n=0 queries"),
    ],
)
def test_degenerate_groups_are_insufficient_data_with_nan_p(baseline, treated, reason):
    out = stats.summarize(_from_deltas(np.array(baseline), np.array(treated)), ["m"],
                          higher_is_better=HIB, n_boot=200, mode="cseo")  # fmt: skip
    assert len(out) == 2  # advantage and net: a row each, never a crash
    for r in out.itertuples():
        assert r.status == stats.INSUFFICIENT and r.verdict == stats.INSUFFICIENT
        assert reason in r.note
        for col in ("p_value", "wilcoxon_p", "ttest_p", "p_holm", "p_bh", "cohens_dz"):
            assert math.isnan(getattr(r, col))
        assert not r.significant


@pytest.mark.parametrize("n", [5, 200])
def test_all_zero_deltas_read_no_change_detected(n):
    """Every paired answer identical: that is a finding ("no change"), not missing data."""
    out = stats.summarize(_from_deltas(np.full(n, 0.2), np.full(n, 0.2)), ["m"], higher_is_better=HIB)
    for r in out.itertuples():
        assert r.verdict == stats.NO_CHANGE == "no change detected" and r.reason == "all_zero"
        assert r.estimate == 0 and r.estimate_ci_low == 0 and r.estimate_ci_high == 0
        assert math.isnan(r.p_value) and not r.significant
        assert f"0 of {n}" in r.note and f"{1 - 0.05 ** (1 / n):.0%}" in r.note


def test_no_treated_rows_gives_an_empty_frame_with_the_documented_columns():
    rows = _from_deltas(np.ones(6), np.ones(6))
    out = stats.summarize(rows[rows["condition"] != "treated"], ["m"], higher_is_better=HIB)
    assert out.empty and list(out.columns) == stats.SUMMARY_COLUMNS


def test_bad_input_raises_readable_input_errors():
    rows = _from_deltas(np.ones(6), np.ones(6))
    with pytest.raises(InputError, match="lack column"):
        stats.summarize(rows, ["pawc_typo"], higher_is_better=HIB)
    with pytest.raises(InputError, match="no direction known"):
        stats.summarize(rows.assign(odd=1.0), ["odd"])
    with pytest.raises(InputError, match="unknown comparison"):
        stats.paired_values(rows, "m", "sideways")
    with pytest.raises(InputError, match="unknown condition"):
        stats.paired_values(rows.assign(condition="control"), "m")
    with pytest.raises(InputError, match="family='domain' needs"):
        stats.summarize(rows, ["m"], higher_is_better=HIB, family="domain", by="tag")


# ------------------------------------------------------------------------------------------
# Breakdowns
# ------------------------------------------------------------------------------------------


def test_breakdowns_by_domain_tag_and_original_rank(pairing_rows):
    kw = {"higher_is_better": HIB, "comparisons": ["net"], "n_boot": 200}
    dom = stats.breakdown(pairing_rows, "m", by="domain", **kw)
    assert set(dom["group"]) == {"health", "law"} and (dom["n"] == 3).all()
    tag = stats.breakdown(pairing_rows, "m", by="tag", **kw)
    counts = tag.groupby("group")["n"].first().to_dict()
    assert counts == {"facts": 6, "history": 3}  # "facts, history" counts in both
    rank = stats.breakdown(pairing_rows, "m", by="orig_rank", **kw)
    assert set(rank["group"]) == {"1", "2", "3"} and (rank["n"] == 2).all()
    assert (rank["by"] == "orig_rank").all()
    assert (rank["family"] == "orig_rank=" + rank["group"]).all()
    r = rank[(rank["group"] == "2") & (rank["strategy"] == "B") & (rank["rate"] == 1.0)].iloc[0]
    base = np.mean([100 * 1 + 0.75, 100 * 4 + 0.75])  # items q1, q4 have rank 2
    assert r["baseline_mean"] == pytest.approx(base) and r["mean_delta"] == pytest.approx(42)


def test_orig_rank_breakdown_pairs_seeds_at_their_own_rank():
    recs = []
    for i, seed in itertools.product(range(5), (0, 1)):
        rank = 1 if seed == 0 else 4  # the sources were shuffled per seed
        recs.append(_row(f"q{i}", "base", "", math.nan, seed, 0, rank=rank, m=0.2))
        recs.append(_row(f"q{i}", "treated", "S", 0.5, seed, 0, rank=rank, m=0.2 + 0.1 * seed))
    out = stats.breakdown(pd.DataFrame(recs), "m", by="orig_rank", comparisons=["net"],
                          higher_is_better=HIB, n_boot=200)  # fmt: skip
    assert dict(zip(out["group"], out["mean_delta"].round(9))) == {"1": 0.0, "4": 0.1}


# ------------------------------------------------------------------------------------------
# Simulated null and simulated effect; calibration; determinism; speed
# ------------------------------------------------------------------------------------------


def _experiments(n_exp, n_items, effect, seed, strategy="identity"):
    """n_exp independent A/B experiments (one per rate); discrete values with ties and zeros."""
    rng = np.random.default_rng(seed)
    shape = (n_exp, n_items, 2)  # 2 samples per item
    rivals = rng.binomial(5, 0.3, size=shape) / 5
    treated = np.clip(rng.binomial(5, 0.3, size=shape) / 5 + effect, 0, None)
    exp, item, sample = np.meshgrid(np.arange(n_exp), np.arange(n_items), np.arange(2), indexing="ij")
    common = {
        "item": np.char.add("q", item.ravel().astype(str)),
        "domain": "d", "tags": "", "strategy": strategy,
        "rate": (exp.ravel() + 1) / 1000.0, "seed": 0, "sample": sample.ravel(),
        "target_orig_rank": 1,
    }  # fmt: skip
    riv = pd.DataFrame({**common, "condition": "rivals", "m": rivals.ravel()})
    trt = pd.DataFrame({**common, "condition": "treated", "m": treated.ravel()})
    return pd.concat([riv, trt], ignore_index=True)


def test_null_false_positive_rate_is_near_alpha_and_calibration_reports_it():
    rows = _experiments(400, 30, 0.0, seed=123)
    out = stats.summarize(rows, ["m"], comparisons=["advantage"], higher_is_better=HIB, n_boot=100)
    assert len(out) == 400 and (out["status"] == "ok").all()
    fpr = (out["p_value"] < 0.05).mean()  # the declared test: the zero-aware t-test of the mean
    assert 0.02 <= fpr <= 0.09
    assert 0.02 <= (out["wilcoxon_p"] < 0.05).mean() <= 0.09
    assert 0.02 <= (out["ttest_p"] < 0.05).mean() <= 0.09
    assert out["significant"].mean() <= 0.01  # Holm over the run
    cal = stats.calibration(out, 0.05)
    assert list(cal.columns) == stats.CALIBRATION_COLUMNS and len(cal) == 1
    c = cal.iloc[0]
    assert c["n_tests"] == 400 and c["rate_raw"] == pytest.approx(fpr)
    assert c["warning"] == (fpr > 0.05) and c["rate_holm"] <= c["rate_raw"]
    assert not c["excess_significant"]  # a rate near alpha is chance, not a broken engine
    assert c["excess_p"] == pytest.approx(sps.binomtest(round(fpr * 400), 400, 0.05, "greater").pvalue)


def test_true_effect_is_detected_and_a_leaky_aa_control_is_flagged():
    rows = _experiments(20, 40, 0.2, seed=5)
    out = stats.summarize(rows, ["m"], comparisons=["advantage"], higher_is_better=HIB, n_boot=200)
    assert out["significant"].mean() >= 0.9 and (out["verdict"] == "better").mean() >= 0.9
    assert (out["delta_ci_low"] > 0).mean() >= 0.9
    assert (out["rel_ci_low"] < out["rel_improvement"]).all()
    cal = stats.calibration(out, 0.05)  # an "identity" that is not: the flag must go up
    assert cal.iloc[0]["warning"] and cal.iloc[0]["excess_significant"]
    assert "clearly above alpha" in cal.iloc[0]["message"]
    assert stats.calibration(out.assign(strategy="fluency")).empty


def test_results_are_deterministic_for_a_seed(pairing_rows):
    rows = _experiments(5, 25, 0.05, seed=9)
    kw = {"higher_is_better": HIB, "n_boot": 300, "ci": "bca"}
    a = stats.summarize(rows, ["m"], seed=4, **kw)
    shuffled = rows.sample(frac=1, random_state=1)  # row order must not matter
    b = stats.summarize(shuffled, ["m"], seed=4, **kw)
    pd.testing.assert_frame_equal(a, b)
    c = stats.summarize(rows, ["m"], seed=5, **kw)
    assert not np.allclose(a["delta_ci_low"], c["delta_ci_low"])
    assert (a["ci_method"] == "BCa bootstrap, 300 resamples of queries, seed 4").all()


def test_full_size_run_gives_a_result_for_every_test():
    # Its speed is measured in benches/perf/bench_stats_scale.py, not bounded here (a loaded CI
    # machine is not a benchmark).
    rng = np.random.default_rng(0)
    metrics = [f"m{k}" for k in range(10)]
    items = [f"q{i}" for i in range(50)]
    cells = [(s, r) for s in [f"s{j}" for j in range(15)] for r in (0.1, 0.3, 0.6, 1.0)]
    frames = [pd.DataFrame({"item": items, "condition": "base", "strategy": "", "rate": np.nan})]
    for cond in ("rivals", "treated"):
        frames.append(pd.DataFrame(
            [(it, cond, s, r) for s, r in cells for it in items],
            columns=["item", "condition", "strategy", "rate"],
        ))  # fmt: skip
    rows = pd.concat(frames, ignore_index=True)
    for m in metrics:
        rows[m] = rng.beta(2, 5, size=len(rows))
    out = stats.summarize(rows, metrics, higher_is_better=dict.fromkeys(metrics, True))
    assert len(out) == 15 * 4 * 10 * 2 and (out["status"] == "ok").all()
    assert out["n"].eq(50).all() and out["p_holm"].between(0, 1).all()


def test_exhaustive_signed_rank_equals_scipy_on_small_tied_samples() -> None:
    from geoaudit.stats import signed_rank_exhaustive

    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(6):
        x = rng.integers(-3, 4, int(rng.integers(6, 11))).astype(float)  # ties and zeros galore
        if np.count_nonzero(x) < 2:
            continue
        for zero_method in ("pratt", "wilcox", "zsplit"):
            for alternative in ("two-sided", "greater", "less"):
                ref = sps.wilcoxon(x, zero_method=zero_method, alternative=alternative)
                stat, p = signed_rank_exhaustive(x, zero_method=zero_method, alternative=alternative)
                assert p == pytest.approx(ref.pvalue, abs=1e-12)
                assert stat == pytest.approx(ref.statistic, abs=1e-12)
                checked += 1
    assert checked >= 30


# ------------------------------------------------------------------------------------------
# Issue 13: a verdict never contradicts the numbers beside it (one regression test per repro)
# ------------------------------------------------------------------------------------------


def _one(deltas, metric="m", baseline=3.0, **kw):
    """summarize() of one strategy whose treated value is baseline + delta per query (advantage)."""
    d = np.asarray(deltas, dtype=float)
    b = np.full(d.size, baseline) if np.ndim(baseline) == 0 else np.asarray(baseline, dtype=float)
    kw = {"comparisons": ["advantage"], "higher_is_better": HIB, "n_boot": 500, **kw}
    return stats.summarize(_from_deltas(b, b + d, metric=metric), [metric], **kw).iloc[0]


@pytest.mark.parametrize("estimand", ["mean", "pseudomedian"])
def test_repro1_no_better_beside_a_negative_mean(estimand):
    # Most queries gain a little, a few lose a lot: the rank test says up, the mean says down.
    r = _one([0.1] * 42 + [-2.0] * 8, estimand=estimand)
    assert r["mean_delta"] == pytest.approx(-0.236)
    assert r["verdict"] == "mixed" and r["reason"] == "tests_disagree"
    assert r["estimand"] == estimand and not r["significant"]
    if estimand == "mean":  # the interval shown is the mean's, and it is negative
        assert r["estimate"] == r["mean_delta"] and r["estimate_ci_high"] < 0


def test_repro2_the_sign_comes_from_the_test_that_was_run():
    # Pratt ranks the zeros; the old rank-biserial dropped them and pointed the other way.
    d = [1.0] * 120 + [-5.0] * 60 + [0.0] * 300
    hl = _one(d, estimand="pseudomedian", alternative="greater")
    assert hl["wilcoxon_p"] < 0.01 and hl["rank_biserial"] > 0  # same direction as the Pratt test
    assert hl["verdict"] == "mixed"  # ... while the mean (-0.375) points down
    mean = _one(d, alternative="greater")
    assert mean["estimate"] == pytest.approx(-0.375) and mean["estimate_ci_high"] < 0
    assert mean["verdict"] == "mixed" and mean["reason"] == "tests_disagree"


def test_repro3_reasons_name_the_real_cause():
    d = [-0.05] * 14 + [1.0, 1.2, 0.9, 1.5, 0.8, 1.1]
    mean = _one(d)  # the mean and its t-test agree: a gain, with an interval above 0
    assert mean["verdict"] == "better" and mean["estimate_ci_low"] > 0 and mean["p_value"] < 0.05
    hl = _one(d, estimand="pseudomedian")  # the rank test sees nothing the mean sees
    assert hl["verdict"] == "mixed" and hl["reason"] == "companion_only" and hl["wilcoxon_p"] == 1.0
    # Correction: raw p < alpha, adjusted not; the row knows its own family size.
    d4 = np.round(np.random.default_rng(2).normal(0.25, 0.5, 30), 2)  # t-test p = 0.03
    rows = pd.concat([_from_deltas(np.full(30, 3.0), 3.0 + d4)
                      .assign(strategy=lambda f, s=s: np.where(f["condition"] == "base", "", s))
                      for s in ("A", "B", "C", "D")], ignore_index=True)  # fmt: skip
    rows = rows.drop_duplicates(["item", "condition", "strategy"])
    out = stats.summarize(rows, ["m"], comparisons=["advantage"], higher_is_better=HIB)
    assert (out["family_size"] == 4).all()
    r = out.iloc[0]
    assert r["p_value"] < 0.05 <= r["p_holm"] and r["verdict"] == "no evidence" and r["reason"] == "correction"


def test_repro3_cseo_mode_sees_clear_losses_with_the_reverse_test():
    rng = np.random.default_rng(1)
    r = _one(rng.normal(-0.53, 0.4, 40), mode="cseo")
    assert r["p_value"] > 0.5 and r["p_reverse"] < 1e-6 and r["p_reverse_adj"] < 0.05
    assert r["verdict"] == "worse" and r["estimate_ci_high"] < 0
    blind = _one(rng.normal(-0.53, 0.4, 40), mode="cseo", reverse_test=False)
    assert blind["verdict"] == "no evidence" and blind["reason"] == "one_sided_blind"


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_repro3_interval_level_follows_alpha(alpha):
    rng = np.random.default_rng(4)
    d = rng.normal(0.2, 1.0, 40)
    r = _one(d, alpha=alpha)
    assert r["ci_level"] == pytest.approx(1 - alpha)
    half = sps.t.ppf(1 - alpha / 2, 39) * d.std(ddof=1) / math.sqrt(40)
    assert r["estimate_ci_high"] - r["estimate_ci_low"] == pytest.approx(2 * half)
    one_sided = _one(d, alpha=alpha, alternative="greater")
    assert one_sided["ci_level"] == pytest.approx(1 - 2 * alpha)


def test_repro4_cseo_families_population_sd_and_reverse_flags():
    """C-SEO corrects per domain x metric x adoption rate, across methods (strategies)."""
    rng = np.random.default_rng(8)
    recs = []
    for i in range(40):
        dom = "retail" if i % 2 else "books"
        b = rng.uniform()
        recs.append(_row(f"q{i}", "base", "", math.nan, 0, 0, domain=dom, m=b, low=b))
        for s, shift in (("S1", 0.4), ("S2", 0.0), ("S3", -0.4)):
            for rate in (0.1, 1.0):
                recs.append(_row(f"q{i}", "rivals", s, rate, 0, 0, domain=dom, m=b, low=b))
                t = b + rng.normal(shift, 0.3)
                recs.append(_row(f"q{i}", "treated", s, rate, 0, 0, domain=dom, m=t, low=t))
    out = stats.summarize(pd.DataFrame(recs), ["m", "low"], higher_is_better=HIB, mode="cseo")
    assert (out["family_size"] == 3).all()  # the three strategies: 2 domains x 2 metrics x 2 cmp x 2 rates
    assert out["family"].nunique() == 2 * 2 * 2 * 2
    for _, g in out.groupby("family"):
        assert np.allclose(g["p_holm"], stats.holm(g["p_value"].to_numpy()))
        assert np.allclose(g["p_reverse_adj"], stats.holm(g["p_reverse"].to_numpy()))
    adv = out[out["comparison"] == "advantage"]
    s3 = adv[adv["strategy"] == "S3"]
    assert (s3[s3["metric"] == "m"]["verdict"] == "worse").all()  # losses are flagged red
    assert (s3[s3["metric"] == "low"]["verdict"] == "better").all()  # lower is better: a loss of value is a gain
    assert (out["sd_ddof"] == 0).all()


def test_repro5_relative_improvement_is_direction_aware_and_undefined_near_zero():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.02, 30)
    # One baseline of 30 at 0.01, the rest 0: the ratio is not a number anyone should read.
    b = np.r_[0.01, np.zeros(29)]
    r = _one(0.1 + noise, baseline=b)
    assert math.isnan(r["rel_improvement"]) and math.isnan(r["rel_ci_low"])
    assert "relative improvement undefined" in r["note"] and "Fieller" in r["note"]
    # An improved lower-is-better metric reads as a positive relative improvement.
    low = _one(-0.5 + noise, metric="low", baseline=2.0)
    assert low["verdict"] == "better" and low["rel_improvement"] == pytest.approx(0.5 / 2.0, abs=0.01)
    assert 0 < low["rel_ci_low"] < low["rel_improvement"] < low["rel_ci_high"]
    # A negative baseline does not flip the sign: the value went up, higher is better.
    neg = _one(0.5 + noise, baseline=-2.0)
    assert neg["rel_improvement"] == pytest.approx(0.5 / 2.0, abs=0.01) and neg["verdict"] == "better"
    # Many zero baselines but a mean clearly above 0: the interval exists (no NaN from resamples).
    b = np.r_[np.zeros(6), np.full(4, 0.5)]
    r = _one(0.1 + noise[:10] * 5, baseline=b)
    assert np.isfinite(r["rel_ci_low"]) and np.isfinite(r["rel_ci_high"])


def test_repro6_mde_uses_the_corrected_level_the_test_and_the_power_option():
    rng = np.random.default_rng(6)
    frames = []
    for k in range(10):  # a family of 10 tests at n = 30
        b = rng.uniform(0, 1, 30)
        f = _from_deltas(b, b + rng.normal(0, 0.3, 30)).assign(rate=(k + 1) / 100)
        frames.append(f[f["condition"] != "base"])
    rows = pd.concat(frames, ignore_index=True)
    out = stats.summarize(rows, ["m"], comparisons=["advantage"], higher_is_better=HIB, power=0.9)
    r = out.iloc[0]
    assert r["family_size"] == 10 and r["mde_alpha"] == pytest.approx(0.005) and r["power"] == 0.9
    df = int(r["n_nonzero"]) - 1
    assert r["mde"] == pytest.approx(stats.mde_paired(r["sd_delta"], 30, 0.005, 0.9, df=df))
    # Power at the printed MDE, by the noncentral t at the level Holm applies first: about 0.9.
    crit = sps.t.ppf(1 - 0.005 / 2, df)
    nc = r["mde"] * math.sqrt(30) / r["sd_delta"]
    assert sps.nct.sf(crit, df, nc) == pytest.approx(0.9, abs=0.02)


def test_vectorised_signed_rank_z_equals_scipy_ranks_with_ties_and_zeros():
    from geoaudit.stats import _signed_rank_z

    rng = np.random.default_rng(0)
    y = rng.integers(-3, 4, (200, 25)).astype(float)
    y[:100] += np.round(rng.normal(0, 1, (100, 25)), 1)
    z = _signed_rank_z(y)
    for row, got in zip(y, z):
        r, s = sps.rankdata(np.abs(row)), np.sign(row)
        var = (r**2 * (s != 0)).sum() / 4
        assert got == pytest.approx((r * s).sum() / 2 / math.sqrt(var) if var > 0 else 0.0)


def test_mde_signed_rank_gives_the_stated_power_by_independent_simulation():
    rng = np.random.default_rng(12)
    x = rng.normal(0, 1, 30)
    mde = stats.mde_signed_rank(x, 0.01, 0.8, n_sim=400, seed=0)
    hits = 0
    for _ in range(300):
        y = np.abs(rng.choice(x, 30)) * rng.choice([-1, 1], 30) + mde
        hits += sps.wilcoxon(y).pvalue < 0.01
    assert 0.7 <= hits / 300 <= 0.9
    # Zero-heavy, discrete deltas: the queries that did not change stay at 0 under the alternative.
    z = np.r_[np.zeros(36), rng.choice([-1.0, -0.5, 0.5, 1.0], 24)]
    mde = stats.mde_signed_rank(z, 0.05, 0.8, alternative="greater", seed=3)
    hits = 0
    for _ in range(300):
        y = np.abs(rng.choice(z, 60)) * rng.choice([-1, 1], 60)
        y = y + mde * (y != 0)
        hits += sps.wilcoxon(y, zero_method="pratt", alternative="greater").pvalue < 0.05
    assert 0.7 <= hits / 300 <= 0.9


def test_repro7_small_intervals_are_flagged_and_pseudomedian_interval_inverts_the_test():
    rng = np.random.default_rng(9)
    small, large = _one(rng.normal(0.3, 1, 12)), _one(rng.normal(0.3, 1, 40))
    assert not small["ci_verified"] and large["ci_verified"]
    assert stats.CI_VERIFIED_MIN_N["t"] <= 40
    # Walsh interval: the shifts the exact signed-rank test does not reject.
    x = np.round(rng.normal(0.4, 1, 11), 3)
    est, lo, hi = stats.walsh_interval(x, alpha=0.05)
    for theta, inside in ((lo - 1e-6, False), (lo + 1e-6, True), (hi - 1e-6, True), (hi + 1e-6, False)):
        assert (sps.wilcoxon(x - theta).pvalue >= 0.05) == inside
    i, j = np.triu_indices(11)
    assert est == np.median((x[i] + x[j]) / 2)


# ------------------------------------------------------------------------------------------
# Property: verdict, estimate, interval and tests never contradict each other
# ------------------------------------------------------------------------------------------


_values = st.one_of(
    st.sampled_from([0.0, 0.0, 0.0, 0.5, -0.5, 1.0, -1.0, 2.0]),  # LLM metrics: zero-heavy, discrete
    st.floats(-3, 3, allow_nan=False).map(lambda v: round(v, 2)),
)


@st.composite
def _paired_runs(draw):
    n = draw(st.integers(5, 28))
    n_strat = draw(st.integers(1, 3))
    base = np.array(draw(st.lists(st.floats(0, 5).map(lambda v: round(v, 2)), min_size=n, max_size=n)))
    shift = draw(st.sampled_from([0.0, 0.3, -0.3, 1.0]))
    frames = []
    for k in range(n_strat):
        d = np.array(draw(st.lists(_values, min_size=n, max_size=n))) + shift * (k == 0)
        f = _from_deltas(base, base + d).assign(low=lambda f: f["m"])
        f.loc[f["condition"] != "base", "strategy"] = f"S{k}"
        frames.append(f if k == 0 else f[f["condition"] != "base"])
    return pd.concat(frames, ignore_index=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=_paired_runs(),
    estimand=st.sampled_from(["mean", "pseudomedian"]),
    alternative=st.sampled_from(["two-sided", "greater", "less"]),
    zero_method=st.sampled_from(["pratt", "wilcox"]),
    ci=st.sampled_from(["t", "percentile"]),
    alpha=st.sampled_from([0.05, 0.2]),
)
def test_property_verdicts_never_contradict_the_numbers(rows, estimand, alternative, zero_method, ci, alpha):
    out = stats.summarize(rows, ["m", "low"], higher_is_better=HIB, estimand=estimand, alternative=alternative,
                          zero_method=zero_method, ci=ci, alpha=alpha, n_boot=200)  # fmt: skip
    for r in out.itertuples():
        s = 1.0 if r.higher_is_better else -1.0  # to the favourable orientation: > 0 = the target gained
        est = s * r.estimate
        lo, hi = sorted((s * r.estimate_ci_low, s * r.estimate_ci_high))
        adj = r.p_holm
        assert r.verdict in stats.VERDICTS
        assert r.significant == (r.verdict in ("better", "worse"))
        assert r.ci_level == pytest.approx(1 - alpha if alternative == "two-sided" else 1 - 2 * alpha)
        if r.verdict == "better":
            assert est > 0 and lo > 0
            assert (adj if alternative != "less" else r.p_reverse_adj) < alpha
        if r.verdict == "worse":
            assert est < 0 and hi < 0
            assert (adj if alternative != "greater" else r.p_reverse_adj) < alpha
        if r.verdict in ("better", "worse"):  # the other test never points the other way
            other = s * r.mean_delta if estimand == "pseudomedian" else r.rank_biserial  # r is favourable
            assert other * (1 if r.verdict == "better" else -1) >= 0
        if r.verdict == "no evidence":
            assert not adj < alpha and not r.p_reverse_adj < alpha and not r.companion_p_adj < alpha
        if r.verdict == "no change detected":
            assert r.n_nonzero == 0 and r.estimate == 0
        if r.verdict == "insufficient data":
            assert math.isnan(r.p_value)
        if r.status == "ok" and (ci == "t" or estimand == "pseudomedian") and np.isfinite(lo) and np.isfinite(hi):
            assert lo - 1e-9 <= est <= hi + 1e-9
        if np.isfinite(r.rel_improvement):  # the relative change has the sign of the favourable mean
            # (up to floating-point residue: deltas that sum to 0 can average to -5.6e-17)
            tiny = 1e-12
            rel = 0.0 if abs(r.rel_improvement) < tiny else r.rel_improvement
            mean = 0.0 if abs(r.mean_delta) < tiny else s * r.mean_delta
            assert np.sign(rel) == np.sign(mean)
