"""Paired statistics for simulation runs: does a rewrite strategy really make the target more visible?

The GEO paper (Aggarwal et al., KDD 2024) reports relative improvements of table means with no
significance test; C-SEO Bench (Puerto et al., 2025) found that most such gains disappear once a
one-sided Wilcoxon signed-rank test with Holm correction is applied. Every number produced here
therefore comes with its uncertainty: a paired bootstrap confidence interval, two paired tests,
effect sizes, multiple-comparison-adjusted p-values and the minimum detectable effect of the run.

Input: the simulation's long-format result rows, one row per answer sample, with the columns
``item, domain, tags, strategy, rate, seed, condition, sample, target_orig_rank`` plus one float
column per metric. ``condition`` is ``"base"`` (nobody rewrote anything; stored once, with
``strategy == ""`` and ``rate`` NaN, and shared by every strategy x rate), ``"rivals"`` (a fraction
``rate`` of the competing sources adopted ``strategy``, the target did not) or ``"treated"`` (the
target adopted ``strategy`` too, with the same rivals).

Two questions are answered for each strategy x rate:

* ``"advantage"``: treated - rivals. "Given that my competitors rewrote, should I rewrite too?"
* ``"net"``: treated - base. "Where does the market end up for me when everybody plays?"

The unit of analysis is the query (item): the samples and seeds of one item are averaged first, so
each item contributes exactly one (baseline, treated) pair and the tests and the bootstrap resample
independent queries, not correlated samples of the same answer.

Everything is a pure function of its arguments: the same rows and seed give the same numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from geoaudit.errors import InputError
from geoaudit.metrics import directions as metric_directions

__all__ = [
    "COMPARISONS",
    "SUMMARY_COLUMNS",
    "CALIBRATION_COLUMNS",
    "INSUFFICIENT",
    "paired_values",
    "summarize",
    "breakdown",
    "calibration",
    "holm",
    "benjamini_hochberg",
    "bootstrap_ci",
    "mde_paired",
    "cohens_dz",
    "rank_biserial",
]

COMPARISONS = ("advantage", "net")
INSUFFICIENT = "insufficient data"
MIN_N = 5
# Per-item means of identical samples can differ in the last bits when they were summed in a
# different order; such differences are noise from floating point, not a change, so they count as 0.
_ZERO_TOL = 1e-12

_REQUIRED = ("item", "strategy", "rate", "condition")
_UNIT = "_unit"

SUMMARY_COLUMNS = [
    "strategy", "rate", "metric", "comparison", "by", "group",
    "status", "verdict", "note",
    "n", "n_dropped", "baseline_mean", "treated_mean",
    "mean_delta", "sd_delta", "delta_ci_low", "delta_ci_high",
    "rel_improvement", "rel_ci_low", "rel_ci_high", "ci_method",
    "higher_is_better", "test", "alternative", "zero_method", "n_nonzero",
    "wilcoxon_stat", "wilcoxon_p", "ttest_p", "cohens_dz", "rank_biserial",
    "wins", "ties", "losses",
    "family", "family_size", "p_holm", "p_bh", "correction", "alpha", "significant",
    "mde", "power", "mode",
]  # fmt: skip

CALIBRATION_COLUMNS = [
    "strategy", "comparison", "n_tests", "n_rejected_raw", "rate_raw",
    "n_rejected_holm", "rate_holm", "n_rejected_bh", "rate_bh", "alpha",
    "excess_p", "warning", "excess_significant", "message",
]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Multiple-comparison corrections
# --------------------------------------------------------------------------------------------


def _adjust_nan_aware(
    pvals: Sequence[float] | np.ndarray, adjust: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    """Apply ``adjust(sorted non-NaN p-values, m)`` and return the result in input order, NaNs kept."""
    p = np.asarray(pvals, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    vals = p[ok]
    order = np.argsort(vals, kind="mergesort")
    adj = np.empty(m)
    adj[order] = adjust(vals[order], m)
    out[ok] = adj
    return out


def holm(pvals: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, NaN-aware.

    With the m non-NaN p-values sorted ascending, p_(1) <= ... <= p_(m):
    ``adj_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))``; returned in the input order. NaN
    entries (tests that were not run) stay NaN and do not count towards m. This is the same
    procedure as statsmodels' ``multipletests(method="holm")`` used by C-SEO Bench.
    """
    def adjust(sorted_p: np.ndarray, m: int) -> np.ndarray:
        return np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * sorted_p))

    return _adjust_nan_aware(pvals, adjust)


def benjamini_hochberg(pvals: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg (1995) false-discovery-rate adjusted p-values, NaN-aware.

    With the m non-NaN p-values sorted ascending: ``adj_(i) = min_{j >= i} min(1, m * p_(j) / j)``;
    returned in the input order. NaN entries stay NaN and do not count towards m (statsmodels
    ``multipletests(method="fdr_bh")``, scipy ``false_discovery_control(method="bh")``).
    """
    def adjust(sorted_p: np.ndarray, m: int) -> np.ndarray:
        scaled = sorted_p * m / np.arange(1, m + 1)
        return np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])

    return _adjust_nan_aware(pvals, adjust)


# --------------------------------------------------------------------------------------------
# Effect sizes, power
# --------------------------------------------------------------------------------------------


def cohens_dz(deltas: Sequence[float] | np.ndarray) -> float:
    """Paired Cohen's d_z = mean(d) / sd(d), sd with ddof = 1 (Cohen 1988; Lakens 2013, eq. 6).

    NaN when fewer than 2 values or when sd = 0.
    """
    d = np.asarray(deltas, dtype=float)
    if d.size < 2:
        return math.nan
    sd = float(np.std(d, ddof=1))
    return float(np.mean(d) / sd) if sd > 0 else math.nan


def rank_biserial(deltas: Sequence[float] | np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation, r = (R+ - R-) / (R+ + R-) (Kerby 2014).

    R+ and R- are the sums of the ranks of |d| (average ranks for ties) over the non-zero
    differences with positive and negative sign; zero differences are left out, as in the
    Wilcoxon signed-rank statistic. Ranges from -1 (all pairs worse) to +1 (all better); NaN when
    every difference is zero.
    """
    d = np.asarray(deltas, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return math.nan
    ranks = sps.rankdata(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    return (r_plus - r_minus) / (r_plus + r_minus)


def mde_paired(
    sd: float, n: int, alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided"
) -> float:
    """Minimum detectable mean difference of a paired t-test (shift approximation, t quantiles).

    ``MDE = (t_{1 - alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n)`` for a two-sided test
    (``t_{1 - alpha, n-1}`` for a one-sided one), where sd is the standard deviation of the paired
    differences (Cohen 1988, ch. 2; the usual sample-size formula for a one-sample / paired
    t-test solved for the effect). The result is in the units of the metric's delta: a true
    mean delta smaller than this is detected with probability below ``power`` at this n.
    NaN for n < 2 or a non-finite / non-positive sd.
    """
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return math.nan
    df = n - 1
    q_alpha = 1 - alpha / 2 if alternative == "two-sided" else 1 - alpha
    return float((sps.t.ppf(q_alpha, df) + sps.t.ppf(power, df)) * sd / math.sqrt(n))


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _boot_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The (n_boot, n) resampled positions, shared by all groups of size n (common random numbers)."""
    idx = np.random.default_rng([seed, n]).integers(0, n, size=(n_boot, n))
    idx.setflags(write=False)
    return idx


@lru_cache(maxsize=16)
def _jack_index(n: int) -> np.ndarray:
    """The (n, n - 1) matrix of leave-one-out positions, for the BCa acceleration."""
    full = np.tile(np.arange(n), (n, 1))
    idx = full[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    idx.setflags(write=False)
    return idx


def _interval(
    theta: float, boot: np.ndarray, jack: np.ndarray | None, confidence: float, method: str
) -> tuple[float, float]:
    """Percentile or BCa interval from replicates (Efron & Tibshirani 1993, ch. 13 and 14.3)."""
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    if not np.isfinite(theta) or boot.size == 0 or not np.all(np.isfinite(boot)):
        return math.nan, math.nan
    if method == "bca":
        b = boot.size
        # Bias correction z0 from the share of replicates below the estimate (ties count half).
        prop = (np.sum(boot < theta) + 0.5 * np.sum(boot == theta)) / b
        prop = min(max(prop, 0.5 / b), 1 - 0.5 / b)
        z0 = sps.norm.ppf(prop)
        accel = 0.0
        if jack is not None and np.all(np.isfinite(jack)):
            diff = jack.mean() - jack
            den = 6.0 * np.sum(diff**2) ** 1.5
            accel = float(np.sum(diff**3) / den) if den > 0 else 0.0
        qs = []
        for q in (lo_q, hi_q):
            z = sps.norm.ppf(q)
            qs.append(float(sps.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))))
        lo_q, hi_q = qs
    lo, hi = np.quantile(boot, [lo_q, hi_q])
    return float(lo), float(hi)


def _mean_last(*arrays: np.ndarray) -> np.ndarray:
    return arrays[0].mean(axis=-1)


def bootstrap_ci(
    samples: np.ndarray | Sequence[float] | Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray] | None = None,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    method: str = "percentile",
    seed: int = 0,
) -> tuple[float, float]:
    """Seeded nonparametric bootstrap confidence interval, resampling units jointly (paired).

    ``samples`` is one 1-D array or a sequence of equal-length 1-D arrays (e.g. baseline and
    treated per query); the same resampled positions are used for every array, so pairs stay
    together. ``statistic(*arrays)`` must reduce over the last axis (it is called once with
    arrays of shape (n_boot, n) - vectorised - and, for BCa, once with the (n, n-1) jackknife
    arrays); the default is the mean of the first array. ``method``:

    * ``"percentile"``: the (1-c)/2 and (1+c)/2 quantiles of the replicates (Efron & Tibshirani
      1993, ch. 13);
    * ``"bca"``: bias-corrected and accelerated, with z0 from the share of replicates below the
      estimate and the acceleration from the jackknife (Efron & Tibshirani 1993, ch. 14.3).

    Returns (low, high); NaN when n < 2 or a replicate is not finite.
    """
    arrays = _as_arrays(samples)
    if method not in ("percentile", "bca"):
        raise InputError(f"unknown bootstrap method {method!r}; use 'percentile' or 'bca'")
    n = arrays[0].size
    if n < 2:
        return math.nan, math.nan
    stat = statistic or _mean_last
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = float(stat(*arrays))
        idx = _boot_index(n, n_boot, seed)
        boot = np.asarray(stat(*(a[idx] for a in arrays)), dtype=float)
        jack = None
        if method == "bca":
            jidx = _jack_index(n)
            jack = np.asarray(stat(*(a[jidx] for a in arrays)), dtype=float)
    return _interval(theta, boot, jack, confidence, method)


def _as_arrays(samples: Any) -> list[np.ndarray]:
    if isinstance(samples, np.ndarray) and samples.ndim == 1:
        return [samples.astype(float)]
    seq = list(samples)
    if seq and np.ndim(seq[0]) == 0:
        return [np.asarray(seq, dtype=float)]
    arrays = [np.asarray(a, dtype=float) for a in seq]
    if not arrays or any(a.ndim != 1 or a.size != arrays[0].size for a in arrays):
        raise InputError("bootstrap_ci needs one or more 1-D arrays of equal length")
    return arrays


# --------------------------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------------------------


def _check_rows(rows: pd.DataFrame, metrics: Iterable[str]) -> None:
    if not isinstance(rows, pd.DataFrame):
        raise InputError("stats needs the run's result rows as a pandas DataFrame")
    missing = [c for c in (*_REQUIRED, *metrics) if c not in rows.columns]
    if missing:
        raise InputError(
            f"result rows lack column(s) {', '.join(missing)}; "
            f"available: {', '.join(map(str, rows.columns))}"
        )
    bad = set(rows["condition"].dropna().unique()) - {"base", "rivals", "treated"}
    if bad:
        raise InputError(
            f"unknown condition value(s) {sorted(map(str, bad))}; expected base, rivals or treated"
        )


def _prepared(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    cols = [c for c in ("item", "domain", "tags", "strategy", "rate", "condition",
                        "target_orig_rank", metric) if c in rows.columns]  # fmt: skip
    df = rows[cols].copy()
    for col, default in (("domain", ""), ("tags", "")):
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].fillna("").astype(str)
    if "target_orig_rank" not in df.columns:
        df["target_orig_rank"] = np.nan
    df["item"] = df["item"].astype(str)
    df["strategy"] = df["strategy"].fillna("").astype(str)
    # Float rates from one store are identical, but rounding makes the join immune to 0.1+0.2 noise.
    df["rate"] = pd.to_numeric(df["rate"], errors="coerce").round(9)
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    return df


def _paired(
    rows: pd.DataFrame,
    metric: str,
    comparison: str,
    *,
    higher_is_better: bool,
    paired_metric: bool,
    by_rank: bool = False,
) -> pd.DataFrame:
    """Per-unit (baseline, treated) pairs; the unit is the item, or (item, rank) when ``by_rank``."""
    if comparison not in COMPARISONS:
        raise InputError(f"unknown comparison {comparison!r}; use one of {', '.join(COMPARISONS)}")
    df = _prepared(rows, metric)
    unit = ["item", "target_orig_rank"] if by_rank else ["item"]
    # Descriptive columns: first value seen per item (they describe the query, not the sample).
    info = df.drop_duplicates("item").set_index("item")[["domain", "tags", "target_orig_rank"]]
    if not by_rank:
        # The item's most common original rank (it only varies if sources are shuffled per seed).
        mode_rank = (
            df.dropna(subset=["target_orig_rank"])
            .groupby("item")["target_orig_rank"]
            .agg(lambda s: s.mode().iloc[0])
        )
        info["target_orig_rank"] = mode_rank.reindex(info.index)

    treated = df[df["condition"] == "treated"]
    keys = ["strategy", "rate", *unit]
    # Samples and seeds are averaged within a unit first (pandas mean skips NaN samples).
    t_mean = treated.groupby(keys, dropna=False, sort=True)[metric].mean().rename("treated")
    out = t_mean.reset_index()
    if comparison == "advantage":
        rivals = df[df["condition"] == "rivals"]
        b_mean = rivals.groupby(keys, dropna=False)[metric].mean().rename("baseline").reset_index()
        out = out.merge(b_mean, on=keys, how="left")
    elif paired_metric:
        # The metric already is a difference against the base answer: the base side is 0 by definition.
        out["baseline"] = np.where(out["treated"].notna(), 0.0, np.nan)
    else:
        base = df[df["condition"] == "base"]
        b_mean = base.groupby(unit, dropna=False)[metric].mean().rename("baseline").reset_index()
        out = out.merge(b_mean, on=unit, how="left")

    out["domain"] = out["item"].map(info["domain"]).fillna("")
    out["tags"] = out["item"].map(info["tags"]).fillna("")
    if not by_rank:
        out["target_orig_rank"] = out["item"].map(info["target_orig_rank"])
    delta = out["treated"] - out["baseline"]
    delta = delta.where(delta.abs() > _ZERO_TOL, 0.0).where(delta.notna())
    out["delta"] = delta
    out["favourable"] = delta if higher_is_better else -delta
    cols = ["item", "domain", "tags", "strategy", "rate", "target_orig_rank",
            "baseline", "treated", "delta", "favourable"]  # fmt: skip
    return out[cols].reset_index(drop=True)


def paired_values(
    rows: pd.DataFrame,
    metric: str,
    comparison: str = "advantage",
    *,
    higher_is_better: bool = True,
    paired_metric: bool = False,
) -> pd.DataFrame:
    """One (baseline, treated) pair per query for every strategy x rate: the unit all tests use.

    Procedure: for each (strategy, rate, item) the metric is averaged over all samples and all
    seeds of the item (NaN samples skipped), separately for the two conditions being compared; the
    item is the unit of analysis (independent queries, as in GEO's and C-SEO Bench's per-query
    evaluation). The baseline is

    * ``comparison="advantage"``: the ``rivals`` rows at the same strategy and rate (rivals
      adopted, the target did not) - the gain from adopting once rivals have;
    * ``comparison="net"``: the ``base`` rows (nobody adopted), which are stored once with
      strategy ``""`` and rate NaN and are joined to every strategy x rate by item.

    ``delta = treated - baseline`` always; ``favourable`` is ``delta`` when higher is better and
    ``-delta`` otherwise, so positive favourable means the target gained. For a ``paired_metric``
    (already a difference against the base answer, e.g. C-SEO's delta_rank) and ``"net"``, the
    baseline is 0 and the delta is the metric itself; for ``"advantage"`` it is the treated value
    minus the rivals value, NaN when the metric is not defined on rivals rows. Items with a NaN on
    either side are kept here (NaN delta) and dropped by :func:`summarize`.

    Columns: item, domain, tags, strategy, rate, target_orig_rank, baseline, treated, delta,
    favourable.
    """
    _check_rows(rows, [metric])
    return _paired(
        rows, metric, comparison, higher_is_better=higher_is_better, paired_metric=paired_metric
    )


# --------------------------------------------------------------------------------------------
# Per-group statistics
# --------------------------------------------------------------------------------------------


def _group_stats(
    baseline: np.ndarray,
    treated: np.ndarray,
    delta: np.ndarray,
    sign: float,
    *,
    alternative: str,
    zero_method: str,
    n_boot: int,
    ci: str,
    seed: int,
    alpha: float,
    power: float,
    n_dropped: int,
) -> dict[str, Any]:
    """All per-group numbers for one strategy x rate x metric x comparison (x group)."""
    n = int(delta.size)
    fav = sign * delta
    notes: list[str] = []
    if n_dropped:
        notes.append(f"{n_dropped} item(s) dropped for NaN")
    res: dict[str, Any] = {
        "n": n,
        "n_dropped": n_dropped,
        "baseline_mean": float(baseline.mean()) if n else math.nan,
        "treated_mean": float(treated.mean()) if n else math.nan,
        "mean_delta": float(delta.mean()) if n else math.nan,
        "sd_delta": float(delta.std(ddof=1)) if n >= 2 else math.nan,
        "wins": int((fav > 0).sum()),
        "ties": int((fav == 0).sum()),
        "losses": int((fav < 0).sum()),
        "n_nonzero": int((fav != 0).sum()),
    }
    b_mean = res["baseline_mean"]
    res["rel_improvement"] = (
        res["treated_mean"] / b_mean - 1 if n and b_mean != 0 and np.isfinite(b_mean) else math.nan
    )
    if n and not np.isfinite(res["rel_improvement"]):
        notes.append("relative improvement undefined (baseline mean 0)")
    nan_keys = ("delta_ci_low", "delta_ci_high", "rel_ci_low", "rel_ci_high", "wilcoxon_stat",
                "wilcoxon_p", "ttest_p", "cohens_dz", "rank_biserial", "mde")  # fmt: skip
    res.update(dict.fromkeys(nan_keys, math.nan))

    if n < MIN_N:
        res["status"] = INSUFFICIENT
        notes.append(f"n={n} queries < {MIN_N}")
        res["note"] = "; ".join(notes)
        return res

    # Paired bootstrap over queries (same index matrix for delta, baseline and treated).
    with np.errstate(divide="ignore", invalid="ignore"):
        idx = _boot_index(n, n_boot, seed)
        jidx = _jack_index(n) if ci == "bca" else None
        boot_d = delta[idx].mean(axis=1)
        jack_d = delta[jidx].mean(axis=1) if jidx is not None else None
        res["delta_ci_low"], res["delta_ci_high"] = _interval(
            res["mean_delta"], boot_d, jack_d, 0.95, ci
        )
        if np.isfinite(res["rel_improvement"]):
            boot_r = treated[idx].mean(axis=1) / baseline[idx].mean(axis=1) - 1
            jack_r = (
                treated[jidx].mean(axis=1) / baseline[jidx].mean(axis=1) - 1
                if jidx is not None
                else None
            )
            res["rel_ci_low"], res["rel_ci_high"] = _interval(
                res["rel_improvement"], boot_r, jack_r, 0.95, ci
            )
            if not np.isfinite(res["rel_ci_low"]):
                notes.append("relative CI undefined (baseline mean 0 in some resamples)")
    sd = res["sd_delta"]
    res["mde"] = mde_paired(sd, n, alpha, power, alternative)

    if res["n_nonzero"] == 0:
        res["status"] = INSUFFICIENT
        notes.append("all deltas are zero")
    elif not sd > _ZERO_TOL * max(1.0, abs(res["mean_delta"])):
        # Equal deltas differing by float rounding (0.2 - 0.1 vs 0.3 - 0.2) would give t = 1e15.
        res["status"] = INSUFFICIENT
        notes.append("every delta has the same value (sd = 0): no variance to test against")
    elif res["n_nonzero"] < MIN_N:
        res["status"] = INSUFFICIENT
        notes.append(f"only {res['n_nonzero']} non-zero deltas < {MIN_N}")
    else:
        res["status"] = "ok"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # method="auto": exact for n <= 50 without ties/zeros, otherwise exhaustive
            # permutations for n <= 13 and the tie-corrected normal approximation above that.
            if len(fav) <= _EXHAUSTIVE_MAX_N:
                w_stat, w_p = signed_rank_exhaustive(fav, zero_method=zero_method, alternative=alternative)
            else:
                w = sps.wilcoxon(fav, zero_method=zero_method, alternative=alternative)
                w_stat, w_p = float(w.statistic), float(w.pvalue)
            t = sps.ttest_1samp(fav, 0.0, alternative=alternative)
        res["wilcoxon_stat"] = float(w_stat)
        res["wilcoxon_p"] = float(w_p)
        res["ttest_p"] = float(t.pvalue)
        res["cohens_dz"] = cohens_dz(fav)
        res["rank_biserial"] = rank_biserial(fav)
    res["note"] = "; ".join(notes)
    return res


_EXHAUSTIVE_MAX_N = 13


def signed_rank_exhaustive(
    deltas: Any, *, zero_method: str = "pratt", alternative: str = "two-sided"
) -> tuple[float, float]:
    """Wilcoxon signed-rank test by enumerating all 2^m sign flips (m = non-zero deltas <= 13).

    The same test as ``scipy.stats.wilcoxon(method="auto")`` for n <= 13, where scipy enumerates
    the permutations one statistic call at a time (about 0.7 s at n = 12); here the 2^m flips are
    one matrix product. Ranks are of |d|: over all deltas for ``pratt`` (zeros get ranks but no
    sign), over the non-zero ones for ``wilcox``; ``zsplit`` gives half of each zero's rank to R+.
    The statistic is R+ (one-sided) or min(R+, R-) (two-sided, scipy's convention); the p-value
    is the share of flips at least as extreme, doubled and capped at 1 for two-sided.

    Source: Wilcoxon (1945); exact permutation null as in scipy.stats.wilcoxon / permutation_test.
    """
    d = np.asarray(deltas, dtype=float)
    if zero_method == "wilcox":
        d = d[d != 0]
    ranks = sps.rankdata(np.abs(d))
    nonzero = d != 0
    offset = 0.5 * ranks[~nonzero].sum() if zero_method == "zsplit" else 0.0
    r, signs = ranks[nonzero], d[nonzero]
    r_plus = r[signs > 0].sum() + offset
    r_minus = r[signs < 0].sum() + offset
    m = len(r)
    flips = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1).astype(float)
    null = flips @ r + offset
    eps = 1e-9 * max(1.0, abs(r_plus))
    p_ge = float(np.mean(null >= r_plus - eps))
    p_le = float(np.mean(null <= r_plus + eps))
    if alternative == "greater":
        return float(r_plus), p_ge
    if alternative == "less":
        return float(r_plus), p_le
    return float(min(r_plus, r_minus)), min(1.0, 2.0 * min(p_ge, p_le))


def _explode_groups(pv: pd.DataFrame, by: str | None) -> pd.DataFrame:
    if by is None:
        return pv.assign(group="all")
    if by == "domain":
        return pv.assign(group=pv["domain"].replace("", "(none)"))
    if by == "tag":
        tags = pv["tags"].map(
            lambda s: [t.strip() for t in str(s).split(",") if t.strip()] or ["(none)"]
        )
        return pv.assign(group=tags).explode("group")
    if by == "orig_rank":
        ranks = pv["target_orig_rank"]
        label = ranks.map(lambda r: str(int(r)) if pd.notna(r) else "(unknown)")
        return pv.assign(group=label)
    raise InputError(f"unknown breakdown {by!r}; use domain, tag or orig_rank")


def _direction(metric: str, higher_is_better: Mapping[str, bool] | None) -> bool:
    merged = {**metric_directions(), **(higher_is_better or {})}
    if metric not in merged:
        raise InputError(
            f"no direction known for metric {metric!r}; pass higher_is_better={{{metric!r}: True}} "
            "(or False when lower values are better)"
        )
    return bool(merged[metric])


def summarize(
    rows: pd.DataFrame,
    metrics: Sequence[str],
    *,
    comparisons: Sequence[str] = COMPARISONS,
    higher_is_better: Mapping[str, bool] | None = None,
    paired_metrics: Iterable[str] = (),
    family: str | None = None,
    by: str | None = None,
    correction: str = "holm",
    alternative: str | None = None,
    zero_method: str | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_boot: int = 2000,
    ci: str = "percentile",
    seed: int = 0,
    mode: str = "default",
) -> pd.DataFrame:
    """Paired tests, effect sizes and bootstrap CIs per strategy x rate x metric x comparison (x group).

    Per group the (baseline, treated) query pairs of :func:`paired_values` are summarised:

    * ``n`` queries (items with NaN on either side dropped, counted in ``n_dropped``),
      ``baseline_mean``, ``treated_mean``, ``mean_delta`` = mean(treated - baseline), ``sd_delta``;
    * ``rel_improvement`` = treated_mean / baseline_mean - 1: GEO eq. 4 computed, as the paper's
      headline numbers are, as a ratio of means (e.g. 27.2 / 19.3 - 1 = +41 %); NaN when the
      baseline mean is 0 (always for paired metrics under ``"net"``);
    * 95 % confidence intervals for mean_delta and rel_improvement from a paired bootstrap that
      resamples queries (``n_boot`` resamples, seeded, percentile or BCa; see ``ci_method``);
    * Wilcoxon signed-rank p (the primary test) and paired t-test p on the favourable deltas
      (``higher_is_better`` orients them, so ``"greater"`` means "the target gained");
      ``cohens_dz`` and matched-pairs ``rank_biserial`` on the same deltas; wins / ties / losses
      (favourable delta > 0, = 0, < 0);
    * ``p_holm`` and ``p_bh``: the Wilcoxon p adjusted within the ``family`` (``"run"``: every
      test in this call; ``"metric"``: within each metric x comparison, across strategies and
      rates; ``"domain"``: within each domain, which implies ``by="domain"`` as in
      C-SEO Bench; ``"group"``: within each breakdown group); ``significant`` = adjusted p of the
      primary ``correction`` < ``alpha``; ``verdict`` = better / worse / no evidence / insufficient
      data (sign taken from the rank-biserial, which agrees with the Wilcoxon statistic);
    * ``mde``: minimum detectable mean delta at ``power`` for this n and the observed sd of the
      deltas (paired t approximation, uncorrected alpha; :func:`mde_paired`).

    Zero differences: the default mode uses ``zero_method="pratt"`` (zeros - e.g. a target cited
    in neither answer - stay in the ranking but carry no sign, so the test is not computed on a
    silently shrunken sample); ``n_nonzero`` is reported. ``mode="cseo"`` reproduces C-SEO
    Bench: one-sided Wilcoxon ``alternative="greater"``, ``zero_method="wilcox"`` (scipy's
    default: zero differences are dropped by the test but kept in the mean), Holm within each
    domain. Explicit ``alternative`` / ``zero_method`` / ``family`` arguments override the mode.

    Degenerate groups (n < 5, all deltas zero, sd of deltas 0, fewer than 5 non-zero deltas) get
    ``status="insufficient data"``, NaN test statistics and p-values, and a ``note`` saying why.

    ``by`` (None, "domain", "tag", "orig_rank") splits every strategy x rate into groups (see
    :func:`breakdown`); the output's ``by``/``group`` columns say which (``"all"`` when pooled).
    Columns: :data:`SUMMARY_COLUMNS`.
    """
    if mode not in ("default", "cseo"):
        raise InputError(f"unknown stats mode {mode!r}; use 'default' or 'cseo'")
    cseo = mode == "cseo"
    alternative = alternative or ("greater" if cseo else "two-sided")
    zero_method = zero_method or ("wilcox" if cseo else "pratt")
    family = family or ("domain" if cseo else "run")
    if alternative not in ("two-sided", "greater", "less"):
        raise InputError(f"unknown alternative {alternative!r}; use two-sided, greater or less")
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise InputError(f"unknown zero_method {zero_method!r}; use wilcox, pratt or zsplit")
    if correction not in ("holm", "bh"):
        raise InputError(f"unknown correction {correction!r}; use holm or bh")
    if ci not in ("percentile", "bca"):
        raise InputError(f"unknown CI method {ci!r}; use percentile or bca")
    if family not in ("run", "metric", "domain", "group"):
        raise InputError(f"unknown family {family!r}; use run, metric, domain or group")
    if family == "domain":
        if by not in (None, "domain"):
            raise InputError(f"family='domain' needs by='domain', not by={by!r}")
        by = "domain"
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise InputError("alpha and power must lie strictly between 0 and 1")
    if n_boot < 100:
        raise InputError(f"n_boot={n_boot} is too few resamples for a 95 % interval; use >= 100")
    metrics = list(metrics)
    comparisons = list(comparisons)
    for c in comparisons:
        if c not in COMPARISONS:
            raise InputError(f"unknown comparison {c!r}; use one of {', '.join(COMPARISONS)}")
    _check_rows(rows, metrics)
    paired_set = set(paired_metrics)
    directions = {m: _direction(m, higher_is_better) for m in metrics}

    ci_name = "BCa" if ci == "bca" else "percentile"
    ci_method = f"{ci_name} bootstrap, {n_boot} resamples of queries, seed {seed}"
    mode_note = (
        "C-SEO Bench mode: one-sided Wilcoxon (greater) on favourable deltas; zero differences kept "
        "in the mean, dropped by the test (scipy zero_method='wilcox'); Holm within each domain"
        if cseo
        else ""
    )
    records: list[dict[str, Any]] = []
    for metric in metrics:
        hib = directions[metric]
        sign = 1.0 if hib else -1.0
        for comparison in comparisons:
            pv = _paired(
                rows,
                metric,
                comparison,
                higher_is_better=hib,
                paired_metric=metric in paired_set,
                by_rank=by == "orig_rank",
            )
            pv = _explode_groups(pv, by)
            for (strategy, rate, group), g in pv.groupby(
                ["strategy", "rate", "group"], dropna=False, sort=True
            ):
                valid = g["delta"].notna()
                gv = g[valid]
                res = _group_stats(
                    gv["baseline"].to_numpy(float),
                    gv["treated"].to_numpy(float),
                    gv["delta"].to_numpy(float),
                    sign,
                    alternative=alternative,
                    zero_method=zero_method,
                    n_boot=n_boot,
                    ci=ci,
                    seed=seed,
                    alpha=alpha,
                    power=power,
                    n_dropped=int((~valid).sum()),
                )
                if metric in paired_set and comparison == "advantage" and res["n"] == 0:
                    res["note"] = (res["note"] + "; " if res["note"] else "") + (
                        f"{metric} is a paired metric not defined on rivals rows"
                    )
                if mode_note:
                    res["note"] = mode_note + ("; " + res["note"] if res["note"] else "")
                records.append(
                    {
                        "strategy": strategy,
                        "rate": rate,
                        "metric": metric,
                        "comparison": comparison,
                        "by": by or "all",
                        "group": group,
                        "higher_is_better": hib,
                        **res,
                    }
                )
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SUMMARY_COLUMNS})
    out = pd.DataFrame.from_records(records)
    out["ci_method"] = ci_method
    out["test"] = "wilcoxon signed-rank"
    out["alternative"] = alternative
    out["zero_method"] = zero_method
    out["correction"] = correction
    out["alpha"] = alpha
    out["power"] = power
    out["mode"] = mode
    if family == "run":
        out["family"] = "run"
    elif family == "metric":
        out["family"] = out["metric"] + "/" + out["comparison"]
    else:
        out["family"] = f"{by}=" + out["group"].astype(str)
    out["p_holm"] = np.nan
    out["p_bh"] = np.nan
    out["family_size"] = 0
    for _, idx in out.groupby("family").groups.items():
        p = out.loc[idx, "wilcoxon_p"].to_numpy(float)
        out.loc[idx, "p_holm"] = holm(p)
        out.loc[idx, "p_bh"] = benjamini_hochberg(p)
        out.loc[idx, "family_size"] = int(np.isfinite(p).sum())
    primary = out["p_holm"] if correction == "holm" else out["p_bh"]
    out["significant"] = (primary < alpha).fillna(False).astype(bool)
    out["verdict"] = np.select(
        [
            out["status"] != "ok",
            out["significant"] & (out["rank_biserial"] > 0),
            out["significant"] & (out["rank_biserial"] < 0),
        ],
        [INSUFFICIENT, "better", "worse"],
        default="no evidence",
    )
    out = out.sort_values(["metric", "comparison", "strategy", "rate", "group"], kind="mergesort")
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


def breakdown(
    rows: pd.DataFrame,
    metric: str,
    by: str = "domain",
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`summarize` for one metric, split by ``by``: "domain", "tag" or "orig_rank".

    * ``"domain"``: one group per domain ("(none)" for an empty domain); the GEO paper's
      per-domain analysis (Table 3) and C-SEO Bench's per-domain tables.
    * ``"tag"``: the comma-separated ``tags`` are exploded, so a query counts in each of its tags
      (groups overlap; "(none)" when untagged).
    * ``"orig_rank"``: one group per ``target_orig_rank``, the target's 1-based position in the
      base condition's source order (GEO Table 2: lower-ranked sources gain more). Here the unit is
      (item, original rank), so seeds that placed the target at different ranks go to their groups.

    Keyword arguments are passed to :func:`summarize` (``family`` defaults to ``"group"``:
    corrections within each group). Columns: :data:`SUMMARY_COLUMNS`.
    """
    if by not in ("domain", "tag", "orig_rank"):
        raise InputError(f"unknown breakdown {by!r}; use domain, tag or orig_rank")
    if kwargs.get("mode") == "cseo" and by == "domain":
        kwargs.setdefault("family", "domain")
    kwargs.setdefault("family", "group")
    return summarize(rows, [metric], by=by, **kwargs)


# --------------------------------------------------------------------------------------------
# Calibration (A/A control)
# --------------------------------------------------------------------------------------------


def calibration(
    summary_df: pd.DataFrame, alpha: float = 0.05, *, strategy: str = "identity"
) -> pd.DataFrame:
    """Rejection rate of the A/A control: how often the tests "find" an effect when nothing changed.

    The ``identity`` strategy leaves every page unchanged, so any difference between its
    conditions is sampling noise and every rejection is a false positive. For each comparison
    (and ``"all"``), over the identity rows of ``summary_df`` with a p-value: the share with raw
    Wilcoxon p < alpha (``rate_raw``), Holm-adjusted p < alpha and BH-adjusted p < alpha.
    ``warning`` is True when ``rate_raw`` exceeds alpha: the engine's noise is larger than the
    tests assume (e.g. samples are not independent) and gains of other strategies of that size
    should not be trusted. ``excess_p`` is a one-sided binomial test of "rate <= alpha" and
    ``excess_significant`` is ``warning and excess_p < 0.05``: with few tests a rate a little above
    alpha is expected by chance. The binomial test treats the tests as independent, which they are
    not (they share queries), so read it as a guide; ``message`` says all this in one line.
    Returns an empty frame (columns :data:`CALIBRATION_COLUMNS`) when there are no identity rows.
    """
    if "strategy" not in summary_df.columns:
        raise InputError("calibration needs the output of geoaudit.stats.summarize")
    aa = summary_df[(summary_df["strategy"] == strategy) & summary_df["wilcoxon_p"].notna()]
    if aa.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CALIBRATION_COLUMNS})
    records = []
    groups = [(c, g) for c, g in aa.groupby("comparison", sort=True)]
    if len(groups) > 1:
        groups.append(("all", aa))
    for comparison, g in groups:
        n = len(g)
        k_raw = int((g["wilcoxon_p"] < alpha).sum())
        k_holm = int((g["p_holm"] < alpha).sum())
        k_bh = int((g["p_bh"] < alpha).sum())
        rate = k_raw / n
        warn = rate > alpha
        excess = float(sps.binomtest(k_raw, n, alpha, alternative="greater").pvalue)
        head = (
            f"A/A control ({strategy}, {comparison}): {k_raw}/{n} tests reject at alpha={alpha:g} "
            f"({rate:.1%}); "
        )
        if not warn:
            tail = "within alpha - the tests look calibrated"
        elif excess < 0.05:
            tail = (
                f"clearly above alpha (binomial p={excess:.2g}) - the engine is noisier than the "
                "tests assume; do not trust gains of that size"
            )
        else:
            tail = (
                f"above alpha, though within chance for {n} tests (binomial p={excess:.2g}); "
                "treat small gains with suspicion"
            )
        msg = head + tail
        records.append(
            {
                "strategy": strategy,
                "comparison": comparison,
                "n_tests": n,
                "n_rejected_raw": k_raw,
                "rate_raw": rate,
                "n_rejected_holm": k_holm,
                "rate_holm": k_holm / n,
                "n_rejected_bh": k_bh,
                "rate_bh": k_bh / n,
                "alpha": alpha,
                "excess_p": excess,
                "warning": warn,
                "excess_significant": bool(warn and excess < 0.05),
                "message": msg,
            }
        )
    return pd.DataFrame.from_records(records)[CALIBRATION_COLUMNS]
