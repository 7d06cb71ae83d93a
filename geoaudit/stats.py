"""Paired statistics for simulation runs: does a rewrite strategy really make the target more visible?

The GEO paper (Aggarwal et al., KDD 2024) reports relative improvements of table means with no
significance test; C-SEO Bench (Puerto et al., 2025) found that most such gains disappear once a
one-sided Wilcoxon signed-rank test with Holm correction is applied. Every number produced here
therefore comes with its uncertainty: each metric has one declared estimand (the mean delta, or the
Hodges-Lehmann pseudo-median) reported with the interval its test inverts, so a verdict can never
contradict the estimate and interval beside it; the other test is run as a check ("mixed" when they
disagree); plus effect sizes, multiple-comparison-adjusted p-values within a declared family and the
minimum detectable effect at the level the correction needs.

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
each item contributes exactly one (baseline, treated) pair and the tests and any bootstrap resample
independent queries, not correlated samples of the same answer.

Everything is a pure function of its arguments: the same rows and seed give the same numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import special as spc

from geoaudit.errors import InputError
from geoaudit.metrics import directions as metric_directions

__all__ = [
    "CALIBRATION_COLUMNS",
    "CI_VERIFIED_MIN_N",
    "COMPARISONS",
    "ESTIMANDS",
    "INSUFFICIENT",
    "MEAN_CI_METHODS",
    "NO_CHANGE",
    "SUMMARY_COLUMNS",
    "VERDICTS",
    "UnitMeans",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bootstrap_test_interval",
    "breakdown",
    "calibration",
    "cohens_dz",
    "fieller_relative",
    "hodges_lehmann",
    "holm",
    "mde_paired",
    "mde_signed_rank",
    "mode_rank",
    "normalise_rate",
    "paired_values",
    "rank_biserial",
    "summarize",
    "t_test_interval",
    "unit_means",
    "walsh_interval",
]

COMPARISONS = ("advantage", "net")
INSUFFICIENT = "insufficient data"
NO_CHANGE = "no change detected"
#: Every verdict summarize assigns (see its docstring for when).
VERDICTS = ("better", "worse", "mixed", "no evidence", NO_CHANGE, INSUFFICIENT)
#: What a metric's test and interval are about: the mean delta or the Hodges-Lehmann pseudo-median.
ESTIMANDS = ("mean", "pseudomedian")
MIN_N = 5
# Per-item means of identical samples can differ in the last bits when they were summed in a
# different order; such differences are noise from floating point, not a change, so they count as 0.
_ZERO_TOL = 1e-12

_REQUIRED = ("item", "strategy", "rate", "condition")
_UNIT = "_unit"

SUMMARY_COLUMNS = [
    "strategy", "rate", "metric", "comparison", "by", "group",
    "status", "verdict", "reason", "note",
    "n", "n_dropped", "baseline_mean", "treated_mean",
    "estimand", "estimate", "estimate_ci_low", "estimate_ci_high", "ci_level", "ci_method", "ci_verified",
    "mean_delta", "sd_delta", "sd_ddof", "delta_ci_low", "delta_ci_high",
    "hl_delta", "hl_ci_low", "hl_ci_high",
    "rel_improvement", "rel_ci_low", "rel_ci_high",
    "higher_is_better", "test", "alternative", "zero_method", "n_nonzero",
    "p_value", "p_reverse", "wilcoxon_stat", "wilcoxon_p", "ttest_p", "cohens_dz", "rank_biserial",
    "companion_test", "companion_p", "companion_p_adj",
    "wins", "ties", "losses",
    "family", "family_size", "p_holm", "p_bh", "p_reverse_adj", "correction", "alpha", "significant",
    "mde", "mde_alpha", "power", "mode",
]  # fmt: skip

CALIBRATION_COLUMNS = [
    "strategy", "comparison", "n_tests", "n_rejected_raw", "rate_raw",
    "n_rejected_holm", "rate_holm", "n_rejected_bh", "rate_bh", "alpha",
    "excess_p", "warning", "excess_significant", "message",
]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Distribution functions
# --------------------------------------------------------------------------------------------
#
# The special functions scipy.stats' t and normal distributions evaluate (their _ppf / _cdf / _sf
# for 0 < q < 1 and df > 0), called directly: the same numbers without the distribution
# machinery's per-call cost, which dominated a summary of hundreds of tests.


def _t_ppf(q: Any, df: Any) -> Any:
    """Student's t quantile: ``scipy.stats.t.ppf(q, df)``."""
    return spc.stdtrit(df, q)


def _t_cdf(x: Any, df: Any) -> Any:
    """``scipy.stats.t.cdf(x, df)``."""
    return spc.stdtr(df, x)


def _t_sf(x: Any, df: Any) -> Any:
    """``scipy.stats.t.sf(x, df)``."""
    return spc.stdtr(df, -x)


def _norm_ppf(q: Any) -> Any:
    """``scipy.stats.norm.ppf(q)``."""
    return spc.ndtri(q)


def _norm_cdf(x: Any) -> Any:
    """``scipy.stats.norm.cdf(x)``."""
    return spc.ndtr(x)


def _scipy_stats() -> Any:
    """scipy.stats, imported when first needed: it takes longer to import than a large run's tests take."""
    from scipy import stats

    return stats


def _binom_p_greater(k: int, n: int, p: float) -> float:
    """``scipy.stats.binomtest(k, n, p, alternative="greater").pvalue`` = P(X >= k), X ~ Binomial(n, p).

    The special function scipy's binomial survival function evaluates (Boost's), when this scipy
    has it under that name; scipy.stats otherwise.
    """
    try:
        from scipy.special._ufuncs import _binom_sf
    except ImportError:  # pragma: no cover - another scipy
        return float(_scipy_stats().binomtest(k, n, p, alternative="greater").pvalue)
    return 1.0 if k <= 0 else float(_binom_sf(k - 1, n, p))


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


def rank_biserial(deltas: Sequence[float] | np.ndarray, *, zero_method: str = "wilcox") -> float:
    """Matched-pairs rank-biserial correlation, r = (R+ - R-) / (sum of the ranks) (Kerby 2014).

    R+ and R- are the sums of the ranks of |d| (average ranks for ties) with positive and negative
    sign. ``zero_method`` follows the Wilcoxon test it accompanies: ``"wilcox"`` (Kerby's
    definition) ranks only the non-zero differences; ``"pratt"`` and ``"zsplit"`` rank all of them
    and the zeros' ranks count in the denominator only (split evenly between R+ and R- for zsplit),
    so r has the sign of the Pratt / zsplit statistic. Ranges from -1 (all pairs worse) to +1 (all
    better); NaN when every difference is zero.
    """
    d = np.asarray(deltas, dtype=float)
    if zero_method == "wilcox":
        d = d[d != 0]
    if d.size == 0 or not np.any(d != 0):
        return math.nan
    ranks = _average_ranks(np.abs(d))[0]
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    return (r_plus - r_minus) / float(ranks.sum())


def mde_paired(
    sd: float,
    n: int,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    *,
    df: int | None = None,
) -> float:
    """Minimum detectable mean difference of a paired t-test (shift approximation, t quantiles).

    ``MDE = (t_{1 - alpha/2, df} + t_{power, df}) * sd / sqrt(n)`` for a two-sided test
    (``t_{1 - alpha, df}`` for a one-sided one), where sd is the standard deviation of the paired
    differences and ``df`` defaults to n - 1 (Cohen 1988, ch. 2; the usual sample-size formula for
    a one-sample / paired t-test solved for the effect). :func:`summarize` passes the level its
    verdict needs after the correction (alpha / family size) and the df of its t-test. The result
    is in the units of the metric's delta: a true mean delta smaller than this is detected with
    probability below ``power`` at this n. NaN for n < 2 or a non-finite / non-positive sd.
    """
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return math.nan
    df = n - 1 if df is None else max(1, int(df))
    q_alpha = 1 - alpha / 2 if alternative == "two-sided" else 1 - alpha
    return float((_t_ppf(q_alpha, df) + _t_ppf(power, df)) * sd / math.sqrt(n))


def mde_signed_rank(
    deltas: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    *,
    n_sim: int = 200,
    seed: int = 0,
) -> float:
    """Minimum detectable shift of the pseudo-median for the Wilcoxon signed-rank test, simulated.

    The observed |deltas| are resampled ``n_sim`` times (seeded) with random signs - the sign-flip
    null of the test, which keeps the zeros and the spread - and the non-zero ones are shifted by
    delta (queries that did not change stay unchanged: LLM visibility deltas are mostly exact 0s,
    and moving those too would make any shift look detectable). The power at delta is the share of
    resamples whose signed-rank test (normal approximation with the tie-corrected conditional
    variance ``sum(r^2) / 4``, zeros without sign) rejects at ``alpha``; the MDE is the smallest
    delta with power >= ``power``, found on the same resamples for every delta (common random
    numbers).
    Without zeros this is the shift of the pseudo-median; with zeros, the shift of the queries that
    change. The search starts at the t-test's MDE: a geometric grid of 6 shifts around it, then
    twice 6 shifts inside the bracket (resolution about 2 % of the MDE), each grid ranked in one
    vectorised pass; the result is the smallest simulated shift whose power reaches ``power``.
    NaN for fewer than 2 values or no spread.
    """
    x = np.asarray(deltas, dtype=float)
    n = x.size
    if n < 2 or not np.ptp(x) > 0:
        return math.nan
    # The null the test itself uses: the observed magnitudes with random signs (zeros stay 0).
    idx, flips = _mde_draws(n, n_sim, seed)
    mags, which = np.unique(np.abs(x), return_inverse=True)
    counts = _sign_counts(which.reshape(-1)[idx], flips, mags.size)
    # Resamples in column blocks of about 1 MB: the per-shift passes then run in cache.
    width = max(8, min(n_sim, 131072 // (2 * mags.size)))
    blocks = [np.ascontiguousarray(counts[:, i : i + width]) for i in range(0, n_sim, width)]
    z_crit = float(_norm_ppf(1 - alpha / 2 if alternative == "two-sided" else 1 - alpha))
    step = -1.0 if alternative == "less" else 1.0

    def powers(shifts: np.ndarray) -> np.ndarray:
        z = np.stack([_signed_rank_z_counts(mags, blocks, step * s) for s in shifts]) * step
        hit = np.abs(z) > z_crit if alternative == "two-sided" else z > z_crit
        return np.asarray(hit.mean(axis=1), dtype=float)

    return _smallest_powered_shift(powers, x, alpha, power, alternative)


def _smallest_powered_shift(
    powers: Callable[[np.ndarray], np.ndarray], x: np.ndarray, alpha: float, power: float, alternative: str
) -> float:
    """The smallest shift whose simulated power (``powers``: shifts -> power per shift) reaches ``power``;
    NaN when none within 4^8 times the starting guess does."""
    n = x.size
    # Start from the t-test's MDE (the signed-rank test's efficiency is near 1 for such data) and
    # search a geometric grid around it, then a linear grid inside the bracket.
    guess = mde_paired(float(np.std(x, ddof=1)), n, alpha, power, alternative)
    lo, hi = 0.0, guess if np.isfinite(guess) and guess > 0 else float(np.ptp(x)) / math.sqrt(n)
    for _ in range(8):
        grid = hi * np.geomspace(1 / 4, 4, 6)
        pw = powers(grid)
        if pw[-1] >= power:
            k = int(np.argmax(pw >= power))
            lo, hi = (grid[k - 1] if k else 0.0), grid[k]
            break
        lo, hi = grid[-1], grid[-1] * 4
    else:
        return math.nan
    # Two linear refinements of the bracket; the answer is the smallest simulated shift that reaches
    # the power (no interpolation: the power of discrete, zero-heavy data jumps where ties form).
    for _ in range(2):
        grid = np.linspace(lo, hi, 7)[1:]
        k = int(np.argmax(powers(grid) >= power))
        lo, hi = (grid[k - 1] if k else lo), grid[k]
    return float(hi)


@lru_cache(maxsize=16)
def _mde_draws(n: int, n_sim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The resampled positions and random signs of :func:`mde_signed_rank`, shared by every row of size n."""
    rng = np.random.default_rng([seed, n, 7])
    idx = rng.integers(0, n, size=(n_sim, n))
    flips = rng.choice([-1.0, 1.0], size=(n_sim, n))
    idx.setflags(write=False)
    flips.setflags(write=False)
    return idx, flips


def _sign_counts(which: np.ndarray, flips: np.ndarray, k: int) -> np.ndarray:
    """(2k, n_sim) counts of each magnitude drawn with a - sign (first k rows) and a + sign, per resample."""
    n_sim = which.shape[0]
    # Laid out category-major: (2k, n_sim), so a category's counts over the resamples are contiguous.
    cell = (which + k * (flips > 0)) * n_sim + np.arange(n_sim)[:, None]
    return np.bincount(cell.reshape(-1), minlength=n_sim * 2 * k).reshape(2 * k, n_sim).astype(float)


def _signed_rank_z_counts(mags: np.ndarray, blocks: Sequence[np.ndarray], shift: float) -> np.ndarray:
    """:func:`_signed_rank_z` of every resample after ``shift``, from counts instead of the values.

    A resample is a multiset of the observed magnitudes ``mags`` (sorted, unique) with signs; its
    values after the shift are ``-m + shift`` and ``m + shift`` (0 stays 0: it does not move).
    Ranks depend only on how many values fall in each category, so the categories are ordered once
    per shift and every resample's ranks follow from cumulative counts: O(resamples x categories)
    instead of sorting every resample. ``blocks``: the (2k, resamples) counts of
    :func:`_sign_counts`, split into column blocks. The ranks are half-integers and every sum is
    exact, so z is the number :func:`_signed_rank_z` gives on the values, to the bit.
    """
    moves = mags != 0
    y = np.concatenate([np.where(moves, -mags + shift, 0.0), np.where(moves, mags + shift, 0.0)])
    mag = np.abs(y)
    order = np.argsort(mag, kind="stable")
    sorted_mag = mag[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = sorted_mag[1:] != sorted_mag[:-1]
    sgn = np.sign(y)[order]
    signed = (sgn != 0).astype(float)
    # Tie groups: categories with equal |value| share their ranks.
    tied = not first.all()
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, order.size))
    out = []
    for counts in blocks:
        c = counts[order]  # (categories in rank order, resamples)
        if not tied:
            # Average rank of a category's values: those before it plus (count + 1) / 2.
            rank = np.cumsum(c, axis=0) - (c - 1) / 2
        else:
            size = np.add.reduceat(c, starts, axis=0)
            rank = np.repeat(np.cumsum(size, axis=0) - (size - 1) / 2, sizes, axis=0)
        rc = rank * c
        # Sums of exact half-integer products: any order (here a matrix-vector product) gives the same number.
        num = (sgn @ rc) / 2
        var = (signed @ (rank * rc)) / 4
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(var > 0, num / np.sqrt(var), 0.0))
    return np.concatenate(out)


def _signed_rank_z(y: np.ndarray) -> np.ndarray:
    """Row-wise signed-rank z: (R+ - R-) / 2 over sqrt(sum r^2 / 4), average ranks for ties.

    The normal approximation of the sign-flip null given the ranks (ties and zeros included;
    zeros get ranks but no sign, as Pratt). 0 for a row without non-zero values.
    """
    n = y.shape[1]
    mag_all = np.abs(y)
    order = np.argsort(mag_all, axis=1)
    mag = np.take_along_axis(mag_all, order, axis=1)
    sgn = np.sign(np.take_along_axis(y, order, axis=1))
    # Average rank of a tie group = (first position + last position) / 2 + 1, by running max / min.
    pos = np.arange(n)
    first = np.ones_like(mag, dtype=bool)
    first[:, 1:] = mag[:, 1:] != mag[:, :-1]
    last = np.ones_like(first)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = (start + end) / 2 + 1
    num = (ranks * sgn).sum(axis=1) / 2
    var = (ranks**2 * (sgn != 0)).sum(axis=1) / 4
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, num / np.sqrt(var), 0.0)


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
        z0 = _norm_ppf(prop)
        accel = 0.0
        if jack is not None and np.all(np.isfinite(jack)):
            diff = jack.mean() - jack
            den = 6.0 * np.sum(diff**2) ** 1.5
            accel = float(np.sum(diff**3) / den) if den > 0 else 0.0
        qs = []
        for q in (lo_q, hi_q):
            z = _norm_ppf(q)
            qs.append(float(_norm_cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))))
        lo_q, hi_q = qs
    lo, hi = np.quantile(boot, [lo_q, hi_q])
    return float(lo), float(hi)


def _mean_last(*arrays: np.ndarray) -> np.ndarray:
    means: np.ndarray = arrays[0].mean(axis=-1)  # numpy's stubs type mean() as Any
    return means


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
# Intervals and the tests they invert
# --------------------------------------------------------------------------------------------
#
# Every interval below comes with the test it is the inversion of, computed from the same numbers
# with the same tie conventions, so "the test rejects at alpha" and "the (1 - alpha) interval
# excludes 0" are one statement: a verdict can never sit beside an interval that says otherwise.
# One-sided tests at alpha pair with the two-sided (1 - 2 alpha) interval, each of whose bounds is
# a one-sided (1 - alpha) bound.

#: Interval methods for the mean; "t" is the default (see benches/README.md, "statistics: coverage").
MEAN_CI_METHODS = ("t", "studentized", "percentile", "bca")

#: Smallest n (pairs) from which benches/stats_coverage.py found each method's simulated coverage of a
#: nominal 95 % interval to be at least 0.925 (0.95 minus about three Monte-Carlo standard errors) on
#: every simulated shape - normal, skewed, 70 % zeros (continuous and +/-1), 90 % zeros - among the
#: samples a verdict is printed for (>= 5 non-zero deltas); figures in benches/README.md. Below it,
#: and on rows too small to test, ``ci_verified`` is False and the interval is flagged.
CI_VERIFIED_MIN_N: dict[str, int] = {
    "t": 20,  # 0.915 at n = 10 on skewed deltas
    "studentized": 30,  # 0.714 at n = 20 with 90 % zeros (the 4 % of samples that are testable)
    "percentile": 100,  # 0.922 at n = 50 (70 % zeros), 0.881 at n = 10 (skewed)
    "bca": 100,  # 0.917 at n = 50 (70 % zeros)
    "walsh": 10,  # coverage of the pseudo-median >= 0.926 from n = 10
}


def _ci_level(alpha: float, alternative: str) -> float:
    return 1 - alpha if alternative == "two-sided" else 1 - 2 * alpha


def _tail(alpha: float, alternative: str) -> float:
    """The probability in each tail of the interval that pairs with the test at ``alpha``."""
    return alpha / 2 if alternative == "two-sided" else alpha


def _low_order_stat(sorted_x: np.ndarray, q: float) -> float:
    """The inverted-CDF q-quantile: the k-th smallest value with k = ceil(q B) (at least 1).

    With ``#{x <= v} / B`` as the empirical CDF, ``_low_order_stat(x, q) > v`` exactly when
    ``#{x <= v} / B < q``: the convention that makes a bootstrap interval and its p-value dual.
    """
    b = sorted_x.size
    k = max(1, math.ceil(q * b - 1e-12))
    return float(sorted_x[k - 1])


def t_test_interval(
    fav: np.ndarray, *, alpha: float, alternative: str
) -> tuple[float, float, float, float, float, int]:
    """Paired t-test with its dual interval, degrees of freedom = non-zero pairs - 1.

    ``t = mean / (sd / sqrt(n))`` (sd with ddof = 1) on the favourable deltas; p-values from
    Student's t with ``df = max(1, n_nonzero - 1)`` instead of n - 1. With many zero deltas the
    sample variance rests on the few pairs that changed, and the usual n - 1 makes the interval too
    short (simulated 95 % coverage 0.910 at n = 30 with 70 % zeros, 0.866 with 90 %); with non-zero
    pairs - 1 it holds (0.951 and 0.947; benches/README.md). Without zeros it is the
    textbook paired t-test (Student 1908). Returns (mean, low, high, p_greater, p_less, df); the
    interval is mean -/+ t_{1 - tail, df} * se at the level that pairs with ``alternative``.
    """
    n = fav.size
    mean = float(fav.mean())
    sd = float(fav.std(ddof=1))
    df = max(1, int(np.count_nonzero(fav)) - 1)
    se = sd / math.sqrt(n)
    crit = float(_t_ppf(1 - _tail(alpha, alternative), df))
    if se > 0:
        tstat = mean / se
        p_g, p_l = float(_t_sf(tstat, df)), float(_t_cdf(tstat, df))
    else:
        p_g = p_l = math.nan
    return mean, mean - crit * se, mean + crit * se, p_g, p_l, df


def bootstrap_test_interval(
    fav: np.ndarray, *, alpha: float, alternative: str, method: str, n_boot: int, seed: int
) -> tuple[float, float, float, float, float]:
    """A bootstrap interval for the mean and the test that is its exact inversion.

    Resamples are the shared seeded index matrix (:func:`_boot_index`, queries resampled).

    * ``"percentile"``: bounds are inverted-CDF quantiles of the resampled means m*; the test's
      p_greater = #{m* <= 0} / B and p_less = #{m* >= 0} / B, so the lower bound is > 0 exactly
      when p_greater < tail (Efron & Tibshirani 1993, ch. 13 and 16).
    * ``"studentized"`` (bootstrap-t): t* = (m* - m) / se*, bounds m - se * t*-quantiles; p_greater
      = #{t* >= t_obs} / B (Efron & Tibshirani 1993, ch. 12.5; Hall 1992). Resamples with se* = 0
      give t* = +/-inf (0 when m* = m), so the interval can be unbounded.
    * ``"bca"``: percentile bounds at BCa-adjusted levels (z0 from the share of m* below m, the
      acceleration from the jackknife; ch. 14.3); p-values invert the same adjustment.

    Returns (mean, low, high, p_greater, p_less). P-values are multiples of 1 / B.
    """
    n = fav.size
    mean = float(fav.mean())
    tail = _tail(alpha, alternative)
    idx = _boot_index(n, n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = fav[idx].mean(axis=1)
        if method == "studentized":
            se = float(fav.std(ddof=1)) / math.sqrt(n)
            se_b = fav[idx].std(axis=1, ddof=1) / math.sqrt(n)
            diff = boot - mean
            tb = np.where(se_b > 0, diff / se_b, np.sign(diff) * np.inf)
            tb = np.where(np.isnan(tb), 0.0, tb)
            t_obs = mean / se if se > 0 else math.nan
            p_g = float(np.mean(tb >= t_obs))
            p_l = float(np.mean(tb <= t_obs))
            s_pos, s_neg = np.sort(tb), np.sort(-tb)
            hi_q = -_low_order_stat(s_neg, tail)  # the upper quantile, by the mirrored rule
            lo_q = _low_order_stat(s_pos, tail)
            return mean, mean - se * hi_q, mean - se * lo_q, p_g, p_l
    s_pos, s_neg = np.sort(boot), np.sort(-boot)
    share_le = float(np.mean(boot <= 0))
    share_ge = float(np.mean(boot >= 0))
    if method == "percentile":
        return mean, _low_order_stat(s_pos, tail), -_low_order_stat(s_neg, tail), share_le, share_ge
    # BCa: bounds at adjusted levels a(q) = Phi(z0 + (z0 + z_q) / (1 - acc (z0 + z_q))).
    b = boot.size
    prop = (np.sum(boot < mean) + 0.5 * np.sum(boot == mean)) / b
    z0 = float(_norm_ppf(min(max(prop, 0.5 / b), 1 - 0.5 / b)))
    jack = fav[_jack_index(n)].mean(axis=1)
    d = jack.mean() - jack
    den = 6.0 * float(np.sum(d**2)) ** 1.5
    acc = float(np.sum(d**3)) / den if den > 0 else 0.0

    def adjusted(q: float) -> float:
        z = z0 + _norm_ppf(q)
        return float(_norm_cdf(z0 + z / (1 - acc * z)))

    def inverse(share: float) -> float:
        # The q whose adjusted level equals ``share``: the p-value that inverts the BCa bound.
        if share <= 0:
            return 0.0
        if share >= 1:
            return 1.0
        w = float(_norm_ppf(share)) - z0
        return float(_norm_cdf(w / (1 + acc * w) - z0))

    lo = _low_order_stat(s_pos, adjusted(tail))
    hi = -_low_order_stat(s_neg, 1 - adjusted(1 - tail))
    return mean, lo, hi, inverse(share_le), 1 - inverse(1 - share_ge)


@lru_cache(maxsize=256)
def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(W+ <= w), w = 0..n(n+1)/2, for the signed-rank statistic of n untied non-zero values.

    The exact null (Wilcoxon 1945): each rank 1..n enters W+ with probability 1/2 independently;
    built by the recursion p_k(w) = (p_{k-1}(w) + p_{k-1}(w - k)) / 2.
    """
    # The recursion passes through every smaller n on its way: continue from the last one computed
    # (tests of many sizes each needed their own O(n^3) pass).
    state = _NULL_RECURSION
    if n > _EXACT_NULL_MAX_N or state.k > n:
        state.reset(max(n, _EXACT_NULL_MAX_N))
    p = state.p
    for k in range(state.k + 1, n + 1):
        state.top += k
        p[k : state.top + 1] = 0.5 * (p[k : state.top + 1] + p[: state.top + 1 - k])
        p[:k] *= 0.5
    state.k = n
    cdf = np.cumsum(p[: n * (n + 1) // 2 + 1])
    cdf.setflags(write=False)
    return cdf


_EXACT_NULL_MAX_N = 300


class _Recursion:
    """Where the signed-rank null's recursion stands: p_k over w = 0..top, in an array sized for the largest n."""

    def __init__(self) -> None:
        self.reset(_EXACT_NULL_MAX_N)

    def reset(self, n_max: int) -> None:
        self.p = np.zeros(n_max * (n_max + 1) // 2 + 1)
        self.p[0] = 1.0
        self.k = self.top = 0


_NULL_RECURSION = _Recursion()


def _signed_rank_crit(n: int, q: float) -> int:
    """The largest c with P(W+ <= c) <= q under the null (-1 when even c = 0 is too likely).

    Exact for n <= 300; above, the normal approximation with a continuity correction.
    """
    if n <= _EXACT_NULL_MAX_N:
        return int(np.searchsorted(_signed_rank_cdf(n), q * (1 + 1e-12), side="right")) - 1
    mu = n * (n + 1) / 4
    sigma = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return math.floor(mu + sigma * float(_norm_ppf(q)) - 0.5)


_WALSH_MATERIALISE_MAX_N = 1000


@lru_cache(maxsize=8)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def _hl_ks(total: int) -> list[int]:
    """The 1-based positions of the median of ``total`` Walsh averages (two when ``total`` is even)."""
    return [(total + 1) // 2] if total % 2 else [total // 2, total // 2 + 1]


def _walsh_order_stats(sorted_x: np.ndarray, ks: Sequence[int]) -> list[float]:
    """The k-th smallest Walsh averages (x_i + x_j) / 2, i <= j, for 1-based ``ks``.

    Up to 1,000 values all n(n+1)/2 averages are formed; above, each order statistic is found by
    bisection on the value with an O(n log n) count per step (no quadratic memory).
    """
    n = sorted_x.size
    if n <= _WALSH_MATERIALISE_MAX_N:
        i, j = _triu(n)
        walsh = np.partition((sorted_x[i] + sorted_x[j]) / 2, [k - 1 for k in ks])
        return [float(walsh[k - 1]) for k in ks]
    out = []
    pos = np.arange(n)
    for k in ks:
        lo, hi = 2 * float(sorted_x[0]), 2 * float(sorted_x[-1])
        for _ in range(200):  # bisection on the sum until adjacent floats
            mid = lo + (hi - lo) / 2
            if mid <= lo or mid >= hi:
                break
            count = np.maximum(0, np.searchsorted(sorted_x, mid - sorted_x, side="right") - pos).sum()
            if count >= k:
                hi = mid
            else:
                lo = mid
        j = np.searchsorted(sorted_x, hi - sorted_x, side="right") - 1
        ok = j >= pos
        out.append(float(np.max(sorted_x[ok] + sorted_x[j[ok]])) / 2)
    return out


def hodges_lehmann(deltas: Sequence[float] | np.ndarray) -> float:
    """Hodges-Lehmann estimate of the pseudo-median: the median of the Walsh averages.

    ``median{(d_i + d_j) / 2 : i <= j}`` (Hodges & Lehmann 1963): the location estimate that goes
    with the Wilcoxon signed-rank test (the signed-rank statistic counts the positive Walsh
    averages, Tukey 1949). NaN for no values.
    """
    x = np.sort(np.asarray(deltas, dtype=float))
    n = x.size
    if n == 0:
        return math.nan
    mid = _walsh_order_stats(x, _hl_ks(n * (n + 1) // 2))
    return mid[0] if len(mid) == 1 else (mid[0] + mid[1]) / 2


def walsh_interval(
    deltas: Sequence[float] | np.ndarray, *, alpha: float = 0.05, alternative: str = "two-sided"
) -> tuple[float, float, float]:
    """(HL estimate, low, high): the distribution-free interval for the pseudo-median.

    Bounds are the (c+1)-th smallest and largest Walsh averages, c the largest value with
    P(W+ <= c) <= tail under the exact signed-rank null for n values (Tukey 1949; Hollander &
    Wolfe 1999, 3.3): the set of shifts the signed-rank test does not reject. Ties and zeros make
    the test at 0 (Pratt or Wilcox handling of zeros) differ slightly from this inversion, so the
    verdict checks the two against each other. Bounds are -inf / +inf when n is too small for the
    level.
    """
    x = np.sort(np.asarray(deltas, dtype=float))
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    total = n * (n + 1) // 2
    c = _signed_rank_crit(n, _tail(alpha, alternative))
    mid = _hl_ks(total)
    # The estimate and both bounds from one selection over the Walsh averages.
    stats_ = _walsh_order_stats(x, mid + ([c + 1, total - c] if c >= 0 else []))
    est = stats_[0] if len(mid) == 1 else (stats_[0] + stats_[1]) / 2
    if c < 0:
        return est, -math.inf, math.inf
    lo, hi = stats_[len(mid) :]
    return est, lo, hi


def fieller_relative(
    baseline: np.ndarray, treated: np.ndarray, crit: float, sign: float = 1.0
) -> tuple[float, float, float, str]:
    """Direction-aware relative change of the means with Fieller's interval, or why it is undefined.

    ``rel = sign * (mean_t - mean_b) / |mean_b|``: positive means the target gained whichever way
    the metric points (GEO eq. 4 when higher is better and the baseline is positive). The
    interval solves ``(T - R B)^2 <= crit^2 Var(T - R B)`` for the ratio R = T / B of the paired
    means, with variances and the covariance from the per-query values (Fieller 1954). It is a
    bounded interval exactly when the baseline mean differs from 0 by more than ``crit`` standard
    errors; otherwise the baseline is indistinguishable from 0 at this level, the ratio can be
    arbitrarily large, and (NaN, NaN, NaN, reason) is returned instead of an astronomical number.
    With the t-test's ``crit`` the interval excludes 0 exactly when the t interval of the mean
    delta does (Var(T - 1 B) is the variance of the deltas).
    """
    n = baseline.size
    b_mean, t_mean = float(baseline.mean()), float(treated.mean())
    if n < 2:
        return math.nan, math.nan, math.nan, "fewer than 2 queries"
    vb = float(baseline.var(ddof=1)) / n
    vt = float(treated.var(ddof=1)) / n
    cbt = float(np.cov(baseline, treated, ddof=1)[0, 1]) / n
    a = b_mean**2 - crit**2 * vb
    if b_mean == 0 or a <= 0:
        se = math.sqrt(vb)
        return (
            math.nan,
            math.nan,
            math.nan,
            (
                f"baseline mean {b_mean:.3g} is within {crit:.2f} standard errors ({se:.2g}) of 0, so the "
                "ratio is unbounded (Fieller)"
            ),
        )
    bq = t_mean * b_mean - crit**2 * cbt
    c = t_mean**2 - crit**2 * vt
    root = math.sqrt(max(0.0, bq * bq - a * c))
    r_lo, r_hi = (bq - root) / a, (bq + root) / a
    orient = sign * (1.0 if b_mean > 0 else -1.0)
    rel = orient * (t_mean / b_mean - 1)
    lo, hi = sorted((orient * (r_lo - 1), orient * (r_hi - 1)))
    return rel, lo, hi, ""


# --------------------------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------------------------


def _check_rows(rows: pd.DataFrame, metrics: Iterable[str]) -> None:
    if not isinstance(rows, pd.DataFrame):
        raise InputError("stats needs the run's result rows as a pandas DataFrame")
    missing = [c for c in (*_REQUIRED, *metrics) if c not in rows.columns]
    if missing:
        raise InputError(
            f"result rows lack column(s) {', '.join(missing)}; available: {', '.join(map(str, rows.columns))}"
        )
    bad = set(rows["condition"].dropna().unique()) - {"base", "rivals", "treated"}
    if bad:
        raise InputError(f"unknown condition value(s) {sorted(map(str, bad))}; expected base, rivals or treated")


def _prepared(rows: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    cols = [c for c in ("item", "domain", "tags", "strategy", "rate", "condition",
                        "target_orig_rank", *metrics) if c in rows.columns]  # fmt: skip
    df = rows[list(dict.fromkeys(cols))].copy()
    for col, default in (("domain", ""), ("tags", "")):
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].fillna("").astype(str)
    if "target_orig_rank" not in df.columns:
        df["target_orig_rank"] = np.nan
    df["item"] = df["item"].astype(str)
    df["strategy"] = df["strategy"].fillna("").astype(str)
    # Float rates from one store are identical, but rounding makes the join immune to 0.1+0.2 noise.
    df["rate"] = normalise_rate(df["rate"])
    for metric in metrics:
        df[metric] = pd.to_numeric(df[metric], errors="coerce")
    return df


def normalise_rate(rate: pd.Series) -> pd.Series:
    """Adopter rates as the tests group them: numeric (NaN for the base condition), rounded to 1e-9."""
    return pd.to_numeric(rate, errors="coerce").round(9)


def _unit_keys(by_rank: bool) -> list[str]:
    return ["item", "target_orig_rank"] if by_rank else ["item"]


@dataclass(frozen=True)
class UnitMeans:
    """Result rows reduced to what every test here starts from: one mean per unit and condition.

    The unit is the item (query), or (item, target_orig_rank) when ``by_rank``. Samples and seeds
    are averaged within a unit first (NaN samples skipped), so each unit contributes one value per
    condition x strategy x rate. :func:`unit_means` builds this from long rows; a run store can
    build the same from SQL aggregates without its rows ever reaching pandas
    (:func:`geoaudit.analysis.RunData`), and :func:`summarize` accepts either.

    Attributes:
        means: the "rivals" and "treated" conditions: columns ``condition, strategy, rate,
            item[, target_orig_rank]`` and one per metric, sorted by those keys (NaN last), as
            ``DataFrame.groupby(sort=True)`` orders them.
        base: the "base" condition (stored once, shared by every strategy x rate): columns
            ``item[, target_orig_rank]`` and the metrics, sorted.
        items: indexed by item: ``domain`` and ``tags`` of the item's first row ("" when
            missing), and ``target_orig_rank``, its most common original rank (the smallest of
            equally common ones; with ``by_rank`` the units carry their own).
        metrics: the metric columns.
        by_rank: whether the unit is (item, target_orig_rank).
    """

    means: pd.DataFrame
    base: pd.DataFrame
    items: pd.DataFrame
    metrics: tuple[str, ...]
    by_rank: bool = False
    #: How treated units pair with rivals and base units: the same for every metric, computed once.
    _plan: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def mode_rank(counts: pd.DataFrame) -> pd.Series:
    """Each item's most common ``target_orig_rank``, the smallest of equally common ones.

    ``counts``: columns item, target_orig_rank (no NaN) and n, the rows with that rank. This is
    ``Series.mode().iloc[0]`` per item (the mode sorts its values), without a Python call per item.
    """
    best = counts.sort_values(["item", "n", "target_orig_rank"], ascending=[True, False, True], kind="mergesort")
    best = best.drop_duplicates("item")
    return pd.Series(
        best["target_orig_rank"].to_numpy(),
        index=pd.Index(best["item"].to_numpy(), name="item"),
        name="target_orig_rank",
    )


def unit_means(rows: pd.DataFrame, metrics: Sequence[str], *, by_rank: bool = False) -> UnitMeans:
    """The per-unit means of long result rows (one row per answer sample): see :class:`UnitMeans`.

    Raises:
        InputError: rows lack a column, or carry an unknown condition.
    """
    metrics = list(dict.fromkeys(metrics))
    _check_rows(rows, metrics)
    df = _prepared(rows, metrics)
    unit = _unit_keys(by_rank)
    # Descriptive columns: first value seen per item (they describe the query, not the sample).
    items = df.drop_duplicates("item").set_index("item")[["domain", "tags", "target_orig_rank"]]
    # The item's most common original rank (it only varies if sources are shuffled per seed); with
    # by_rank each unit carries its own.
    ranked = df.dropna(subset=["target_orig_rank"])
    counts = ranked.groupby(["item", "target_orig_rank"], sort=True).size().rename("n").reset_index()
    items["target_orig_rank"] = mode_rank(counts).reindex(items.index)
    cond = df["condition"]
    # pandas' grouped mean sums each group in row order (compensated): the same numbers as one
    # groupby per condition, which is how they were computed before.
    means = (df[cond.isin(["rivals", "treated"])]
             .groupby(["condition", "strategy", "rate", *unit], dropna=False, sort=True)[metrics].mean()
             .reset_index())  # fmt: skip
    base = df[cond == "base"].groupby(unit, dropna=False, sort=True)[metrics].mean().reset_index()
    return UnitMeans(means=means, base=base, items=items, metrics=tuple(metrics), by_rank=by_rank)


def _pairing(units: UnitMeans) -> dict[str, Any]:
    """Each treated unit's row, its rivals row and base row (-1: none) and its description, computed once."""
    if units._plan:
        return units._plan
    unit = _unit_keys(units.by_rank)
    keys = ["strategy", "rate", *unit]
    means = units.means
    cond = means["condition"].to_numpy()
    t_pos, r_pos = np.flatnonzero(cond == "treated"), np.flatnonzero(cond == "rivals")
    frame = means.iloc[t_pos][keys].reset_index(drop=True)
    # Left merges keep the treated order and match NaN keys with NaN, as the per-metric merges did.
    rivals = means.iloc[r_pos][keys].assign(_pos=r_pos)
    adv = frame.merge(rivals, on=keys, how="left")["_pos"].fillna(-1).to_numpy(int)
    base = units.base[unit].assign(_pos=np.arange(len(units.base)))
    net = frame.merge(base, on=unit, how="left")["_pos"].fillna(-1).to_numpy(int)
    info = units.items
    at = info.index.get_indexer(frame["item"])
    found = at >= 0
    for col, missing in (("domain", ""), ("tags", "")):
        values = info[col].to_numpy(object)
        frame[col] = np.where(found, values[np.maximum(at, 0)] if len(values) else missing, missing)
        frame[col] = frame[col].fillna(missing)
    if not units.by_rank:
        ranks = info["target_orig_rank"]
        frame["target_orig_rank"] = ranks.iloc[np.maximum(at, 0)].to_numpy() if len(ranks) else np.nan
        if not found.all():
            frame["target_orig_rank"] = frame["target_orig_rank"].where(found)
    units._plan.update(t_pos=t_pos, adv=adv, net=net, frame=frame)
    return units._plan


def _take(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]`` with NaN where ``pos`` is -1."""
    out = values[np.maximum(pos, 0)] if len(values) else np.full(pos.size, np.nan)
    return np.where(pos >= 0, out, np.nan)


def _paired(
    units: UnitMeans,
    metric: str,
    comparison: str,
    *,
    higher_is_better: bool,
    paired_metric: bool,
) -> pd.DataFrame:
    """Per-unit (baseline, treated) pairs; the unit is the item, or (item, rank) when ``units.by_rank``."""
    if comparison not in COMPARISONS:
        raise InputError(f"unknown comparison {comparison!r}; use one of {', '.join(COMPARISONS)}")
    plan = _pairing(units)
    values = units.means[metric].to_numpy(float)
    treated = values[plan["t_pos"]]
    if comparison == "advantage":
        baseline = _take(values, plan["adv"])
    elif paired_metric:
        # The metric already is a difference against the base answer: the base side is 0 by definition.
        baseline = np.where(~np.isnan(treated), 0.0, np.nan)
    else:
        baseline = _take(units.base[metric].to_numpy(float), plan["net"])
    out = plan["frame"].copy()
    out["baseline"], out["treated"] = baseline, treated
    with np.errstate(invalid="ignore"):
        delta = treated - baseline
        delta = np.where(np.isnan(delta), np.nan, np.where(np.abs(delta) > _ZERO_TOL, delta, 0.0))
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
    if comparison not in COMPARISONS:
        raise InputError(f"unknown comparison {comparison!r}; use one of {', '.join(COMPARISONS)}")
    return _paired(
        unit_means(rows, [metric]),
        metric,
        comparison,
        higher_is_better=higher_is_better,
        paired_metric=paired_metric,
    )


# --------------------------------------------------------------------------------------------
# Per-group statistics
# --------------------------------------------------------------------------------------------


def _average_ranks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(average ranks of ``a``, tie-group sizes in sorted order): ``scipy.stats.rankdata(a)`` and its ties.

    Ties share the mean of their 1-based positions, ``start + (size + 1) / 2``: half-integers, exact in
    floating point, so sums of ranks are exact whatever their order.
    """
    order = np.argsort(a, kind="stable")
    s = a[order]
    first = np.ones(s.size, dtype=bool)
    first[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, s.size))
    ranks = np.empty(s.size)
    ranks[order] = np.repeat(starts + (sizes + 1) / 2, sizes)
    return ranks, sizes


def _signed_rank_normal(fav: np.ndarray, zero_method: str) -> tuple[float, float, float] | None:
    """(R+, R-, z) of the signed-rank test's normal approximation, as ``scipy.stats.wilcoxon`` computes them.

    Ranks of |d| (over the non-zero d for ``wilcox``); ``E[R+] = c (c + 1) / 4`` and
    ``Var = (c (c + 1) (2c + 1) - sum(t^3 - t) / 2) / 24`` over the c ranked values with tie-group
    sizes t; Pratt removes the zeros' share from both (Cureton 1967) and leaves their group out of
    the tie correction; zsplit gives half of the zeros' ranks to each side. Every term is an integer
    or a half-integer until the square root, so this is scipy's number to the bit. None when scipy
    would compute the exact null instead (at most 50 values, no zeros, no ties): the caller asks scipy.
    """
    n_zero = int(np.count_nonzero(fav == 0))
    d = fav[fav != 0] if zero_method == "wilcox" else fav
    ranks, sizes = _average_ranks(np.abs(d))
    if fav.size <= 50 and n_zero == 0 and not (sizes > 1).any():
        return None
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    if zero_method == "zsplit":
        half = float(ranks[d == 0].sum()) / 2
        r_plus, r_minus = r_plus + half, r_minus + half
    count = float(d.size)
    mean = count * (count + 1.0) * 0.25
    var24 = count * (count + 1.0) * (2.0 * count + 1.0)
    t = sizes.astype(float)
    if zero_method == "pratt" and n_zero:
        nz = float(n_zero)
        mean -= nz * (nz + 1.0) * 0.25
        var24 -= nz * (nz + 1.0) * (2.0 * nz + 1.0)
        t = t[1:]  # the zeros' group (|d| = 0 sorts first) has no sign: no tie correction
    se = math.sqrt((var24 - float(np.sum(t**3 - t)) / 2) / 24)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = float(np.float64(r_plus - mean) / np.float64(se))
    return r_plus, r_minus, z


def _rank_test(fav: np.ndarray, zero_method: str, alternative: str) -> dict[str, float]:
    """The Wilcoxon signed-rank test on favourable deltas, in the row's direction and both others.

    Returns the statistic (scipy's convention for ``alternative``), the p-value for
    ``alternative``, the one-sided p-values (NaN for two-sided rows, where they are not needed),
    the two-sided p, and the sign of R+ - R- (the direction the ranks point). The test is
    ``scipy.stats.wilcoxon`` (method "auto", no continuity correction): enumerated here for at most
    13 values, its normal approximation computed here (:func:`_signed_rank_normal`) where scipy
    uses it, scipy itself for its exact null.
    """
    out = {"stat": math.nan, "p": math.nan, "p_greater": math.nan, "p_less": math.nan, "p_two": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        normal = _signed_rank_normal(fav, zero_method) if fav.size > _EXHAUSTIVE_MAX_N else None
        if fav.size <= _EXHAUSTIVE_MAX_N:
            r_plus, r_minus, p_ge, p_le = _signed_rank_exhaustive_parts(fav, zero_method)
            p_two = min(1.0, 2.0 * min(p_ge, p_le))
            out.update(p_greater=p_ge, p_less=p_le, p_two=p_two)
            out["stat"] = r_plus if alternative != "two-sided" else min(r_plus, r_minus)
        elif normal is not None:
            r_plus, r_minus, z = normal
            if alternative == "two-sided":
                out.update(stat=min(r_plus, r_minus), p_two=float(2 * _norm_cdf(-abs(z))))
            else:
                out.update(stat=r_plus, p_greater=float(_norm_cdf(-z)), p_less=float(_norm_cdf(z)))
                out["p_two"] = min(1.0, 2.0 * min(out["p_greater"], out["p_less"]))
        elif alternative == "two-sided":
            w = _scipy_stats().wilcoxon(fav, zero_method=zero_method, alternative="two-sided")
            out.update(stat=float(w.statistic), p_two=float(w.pvalue))
        else:
            g = _scipy_stats().wilcoxon(fav, zero_method=zero_method, alternative="greater")
            le = _scipy_stats().wilcoxon(fav, zero_method=zero_method, alternative="less")
            out.update(stat=float(g.statistic), p_greater=float(g.pvalue), p_less=float(le.pvalue))
            out["p_two"] = min(1.0, 2.0 * min(out["p_greater"], out["p_less"]))
    out["p"] = {"two-sided": out["p_two"], "greater": out["p_greater"], "less": out["p_less"]}[alternative]
    return out


def _ttest_p(a: np.ndarray, alternative: str) -> float:
    """``scipy.stats.ttest_1samp(a, 0.0, alternative=alternative).pvalue``, in scipy's arithmetic.

    t = mean / sqrt(var / n), var = mean of squared deviations x n / (n - 1), df = n - 1.
    """
    n = a.size
    mean = np.mean(a)
    v = np.mean((a - np.mean(a, keepdims=True)) ** 2)
    nf = np.float64(n)
    v = v * (nf / (nf - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.divide(mean, np.sqrt(v / n))
    df = np.float64(n - 1)
    if alternative == "less":
        return float(_t_cdf(t, df))
    if alternative == "greater":
        return float(_t_sf(t, df))
    return float(2 * _t_sf(np.abs(t), df))


def _sign(x: float) -> int:
    return 0 if not np.isfinite(x) or x == 0 else (1 if x > 0 else -1)


def _group_stats(
    baseline: np.ndarray,
    treated: np.ndarray,
    delta: np.ndarray,
    sign: float,
    *,
    estimand: str,
    alternative: str,
    zero_method: str,
    n_boot: int,
    ci: str,
    seed: int,
    alpha: float,
    ddof: int,
    n_dropped: int,
) -> dict[str, Any]:
    """All per-group numbers for one strategy x rate x metric x comparison (x group).

    Computed on the favourable deltas (``sign * delta``, positive = the target gained) and reported
    in the metric's own orientation; the verdict is assigned later, once the correction families
    are known. ``_fav`` (estimate and bounds, favourable) and ``_dir`` keys are for the verdict.
    """
    n = int(delta.size)
    fav = sign * delta
    notes: list[str] = []
    if n_dropped:
        notes.append(f"{n_dropped} item(s) dropped for NaN")
    level = _ci_level(alpha, alternative)
    res: dict[str, Any] = {
        "n": n,
        "n_dropped": n_dropped,
        "baseline_mean": float(baseline.mean()) if n else math.nan,
        "treated_mean": float(treated.mean()) if n else math.nan,
        "mean_delta": float(delta.mean()) if n else math.nan,
        "sd_delta": float(delta.std(ddof=ddof)) if n > ddof else math.nan,
        "sd_ddof": ddof,
        "wins": int((fav > 0).sum()),
        "ties": int((fav == 0).sum()),
        "losses": int((fav < 0).sum()),
        "n_nonzero": int((fav != 0).sum()),
        "estimand": estimand,
        "ci_level": level,
        "_mde_sd": math.nan,
        "_mde_df": 0,
        "_dir": 0,
        "_companion_dir": 0,
    }
    nan_keys = ("delta_ci_low", "delta_ci_high", "hl_delta", "hl_ci_low", "hl_ci_high", "estimate",
                "estimate_ci_low", "estimate_ci_high", "rel_improvement", "rel_ci_low", "rel_ci_high",
                "p_value", "p_reverse", "wilcoxon_stat", "wilcoxon_p", "ttest_p", "cohens_dz",
                "rank_biserial", "companion_p", "_est_fav", "_lo_fav", "_hi_fav")  # fmt: skip
    res.update(dict.fromkeys(nan_keys, math.nan))
    res["reason"] = ""

    def finish(status: str, reason: str, why: str = "") -> dict[str, Any]:
        res["status"], res["reason"] = status, reason
        if why:
            notes.append(why)
        res["note"] = "; ".join(notes)
        return res

    if n < MIN_N:
        return finish(INSUFFICIENT, "few_queries", f"n={n} queries < {MIN_N}")

    def to_raw(lo: float, hi: float) -> tuple[float, float]:
        return (lo, hi) if sign > 0 else (-hi, -lo)

    # The mean: its interval and the test that interval inverts.
    sd1 = float(fav.std(ddof=1))
    constant = not sd1 > _ZERO_TOL * max(1.0, abs(float(fav.mean())))
    with np.errstate(divide="ignore", invalid="ignore"):
        if ci == "t" or constant:
            m, lo, hi, p_g, p_l, df = t_test_interval(fav, alpha=alpha, alternative=alternative)
        else:
            m, lo, hi, p_g, p_l = bootstrap_test_interval(
                fav, alpha=alpha, alternative=alternative, method=ci, n_boot=n_boot, seed=seed
            )
            df = max(1, res["n_nonzero"] - 1)
    if constant:  # every delta equal: the interval is that value; no test has variance to use
        lo = hi = m
        p_g = p_l = math.nan
    res["delta_ci_low"], res["delta_ci_high"] = to_raw(lo, hi)
    mean_p = {"two-sided": min(1.0, 2 * min(p_g, p_l)), "greater": p_g, "less": p_l}
    res["_mde_sd"], res["_mde_df"] = sd1, df

    # Relative change of the means: Fieller's interval with the t-test's critical value.
    crit = float(_t_ppf(1 - _tail(alpha, alternative), df))
    rel, rlo, rhi, why_rel = fieller_relative(baseline, treated, crit, sign)
    res["rel_improvement"], res["rel_ci_low"], res["rel_ci_high"] = rel, rlo, rhi
    if why_rel:
        notes.append("relative improvement undefined: " + why_rel)

    if estimand == "pseudomedian":
        test_d = fav[fav != 0] if zero_method == "wilcox" else fav
        if test_d.size:
            est, hlo, hhi = walsh_interval(test_d, alpha=alpha, alternative=alternative)
            res["hl_delta"] = sign * est
            res["hl_ci_low"], res["hl_ci_high"] = to_raw(hlo, hhi)
            res["_est_fav"], res["_lo_fav"], res["_hi_fav"] = est, hlo, hhi
    else:
        res["_est_fav"], res["_lo_fav"], res["_hi_fav"] = m, lo, hi
    res["estimate"] = sign * res["_est_fav"]
    res["estimate_ci_low"], res["estimate_ci_high"] = to_raw(res["_lo_fav"], res["_hi_fav"])

    if res["n_nonzero"] == 0:
        # Nothing moved: every estimand and its interval is exactly 0.
        for key in ("estimate", "estimate_ci_low", "estimate_ci_high", "_est_fav", "_lo_fav", "_hi_fav"):
            res[key] = 0.0
        if estimand == "pseudomedian":
            res["hl_delta"] = res["hl_ci_low"] = res["hl_ci_high"] = 0.0
        bound = 1 - alpha ** (1 / n)
        return finish(
            "no change",
            "all_zero",
            (
                f"no query changed (0 of {n}); at most {bound:.0%} of queries are likely affected "
                f"(exact {level:.0%} upper bound, 1 - alpha^(1/n))"
            ),
        )
    if constant:
        return finish(
            INSUFFICIENT, "constant_delta", "every delta has the same value (sd = 0): no variance to test against"
        )
    if res["n_nonzero"] < MIN_N:
        return finish(
            INSUFFICIENT,
            "few_nonzero",
            (f"only {res['n_nonzero']} of {n} queries changed (< {MIN_N} non-zero pairs): too few to test"),
        )

    rank = _rank_test(fav, zero_method, alternative)
    res["wilcoxon_stat"], res["wilcoxon_p"] = rank["stat"], rank["p"]
    res["rank_biserial"] = rank_biserial(fav, zero_method=zero_method)
    res["ttest_p"] = _ttest_p(fav, alternative)
    res["cohens_dz"] = cohens_dz(fav)
    mean_dir, rank_dir = _sign(float(fav.mean())), _sign(res["rank_biserial"])
    reverse = {"greater": "less", "less": "greater"}.get(alternative)
    if estimand == "pseudomedian":
        res["p_value"] = rank["p"]
        res["p_reverse"] = rank["p_" + reverse] if reverse else math.nan
        res["_dir"], res["_companion_dir"] = rank_dir, mean_dir
        res["companion_p"] = mean_p["two-sided"]
    else:
        res["p_value"] = mean_p[alternative]
        res["p_reverse"] = mean_p[reverse] if reverse else math.nan
        res["_dir"], res["_companion_dir"] = mean_dir, rank_dir
        res["companion_p"] = rank["p_two"]
    return finish("ok", "")


def _signed_rank_exhaustive_parts(d: np.ndarray, zero_method: str) -> tuple[float, float, float, float]:
    """(R+, R-, P(null >= R+), P(null <= R+)) by enumerating the 2^m sign flips of the ranks."""
    if zero_method == "wilcox":
        d = d[d != 0]
    ranks = _average_ranks(np.abs(d))[0]
    nonzero = d != 0
    offset = 0.5 * ranks[~nonzero].sum() if zero_method == "zsplit" else 0.0
    r, signs = ranks[nonzero], d[nonzero]
    r_plus = r[signs > 0].sum() + offset
    r_minus = r[signs < 0].sum() + offset
    m = len(r)
    flips = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1).astype(float)
    null = flips @ r + offset
    eps = 1e-9 * max(1.0, abs(r_plus))
    return float(r_plus), float(r_minus), float(np.mean(null >= r_plus - eps)), float(np.mean(null <= r_plus + eps))


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
    r_plus, r_minus, p_ge, p_le = _signed_rank_exhaustive_parts(np.asarray(deltas, dtype=float), zero_method)
    if alternative == "greater":
        return r_plus, p_ge
    if alternative == "less":
        return r_plus, p_le
    return min(r_plus, r_minus), min(1.0, 2.0 * min(p_ge, p_le))


def _explode_groups(pv: pd.DataFrame, by: str | None) -> pd.DataFrame:
    if by is None:
        return pv.assign(group="all")
    if by == "domain":
        return pv.assign(group=pv["domain"].replace("", "(none)"))
    if by == "tag":
        tags = pv["tags"].map(lambda s: [t.strip() for t in str(s).split(",") if t.strip()] or ["(none)"])
        return pv.assign(group=tags).explode("group")
    if by == "orig_rank":
        ranks = pv["target_orig_rank"]
        # One label per distinct rank, not a Python call per row.
        label = ranks.map({r: str(int(r)) for r in ranks.dropna().unique()}).astype(object)
        return pv.assign(group=label.where(ranks.notna(), "(unknown)"))
    raise InputError(f"unknown breakdown {by!r}; use domain, tag or orig_rank")


def _direction(metric: str, higher_is_better: Mapping[str, bool] | None) -> bool:
    merged = {**metric_directions(), **(higher_is_better or {})}
    if metric not in merged:
        raise InputError(
            f"no direction known for metric {metric!r}; pass higher_is_better={{{metric!r}: True}} "
            "(or False when lower values are better)"
        )
    return bool(merged[metric])


def _estimands(metrics: Sequence[str], estimand: str | Mapping[str, str] | None, default: str) -> dict[str, str]:
    given = estimand if isinstance(estimand, Mapping) else dict.fromkeys(metrics, estimand or default)
    out = {m: str(given.get(m) or default) for m in metrics}
    for m, e in out.items():
        if e not in ESTIMANDS:
            raise InputError(f"unknown estimand {e!r} for {m}; use {' or '.join(ESTIMANDS)}")
    return out


def _test_name(estimand: str, ci: str, zero_method: str) -> str:
    if estimand == "pseudomedian":
        return f"Wilcoxon signed-rank ({zero_method})"
    if ci == "t":
        return "paired t-test (df = non-zero pairs - 1)"
    return f"bootstrap test of the mean (inverts the {ci} interval)"


def _ci_name(estimand: str, ci: str, n_boot: int, seed: int) -> str:
    if estimand == "pseudomedian":
        return "Walsh-average interval (inverts the signed-rank test)"
    if ci == "t":
        return "t interval, df = non-zero pairs - 1"
    name = {"percentile": "percentile", "bca": "BCa", "studentized": "studentized"}[ci]
    return f"{name} bootstrap, {n_boot} resamples of queries, seed {seed}"


@dataclass(frozen=True)
class _Options:
    """:func:`summarize`'s test options once ``mode`` has filled in what the caller left open."""

    alternative: str
    zero_method: str
    family: str
    by: str | None
    cseo: bool


def _resolve_options(
    mode: str,
    alternative: str | None,
    zero_method: str | None,
    family: str | None,
    by: str | None,
    correction: str,
    ci: str,
    alpha: float,
    power: float,
    n_boot: int,
    comparisons: Sequence[str],
) -> _Options:
    """Check :func:`summarize`'s options and resolve the mode's defaults (InputError on a bad one)."""
    if mode not in ("default", "cseo"):
        raise InputError(f"unknown stats mode {mode!r}; use 'default' or 'cseo'")
    cseo = mode == "cseo"
    alternative = alternative or ("greater" if cseo else "two-sided")
    zero_method = zero_method or ("wilcox" if cseo else "pratt")
    family = family or ("cseo" if cseo else "run")
    if alternative not in ("two-sided", "greater", "less"):
        raise InputError(f"unknown alternative {alternative!r}; use two-sided, greater or less")
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise InputError(f"unknown zero_method {zero_method!r}; use wilcox, pratt or zsplit")
    if correction not in ("holm", "bh"):
        raise InputError(f"unknown correction {correction!r}; use holm or bh")
    if ci not in MEAN_CI_METHODS:
        raise InputError(f"unknown CI method {ci!r}; use {', '.join(MEAN_CI_METHODS)}")
    if family not in ("run", "metric", "domain", "group", "cseo"):
        raise InputError(f"unknown family {family!r}; use run, metric, domain, group or cseo")
    if family in ("domain", "cseo"):
        if by not in (None, "domain"):
            raise InputError(f"family={family!r} needs by='domain', not by={by!r}")
        by = "domain"
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise InputError("alpha and power must lie strictly between 0 and 1")
    if alternative != "two-sided" and alpha >= 0.5:
        raise InputError("a one-sided test pairs with a 1 - 2 alpha interval: alpha must be < 0.5")
    if n_boot < 100:
        raise InputError(f"n_boot={n_boot} is too few resamples for an interval; use >= 100")
    for c in comparisons:
        if c not in COMPARISONS:
            raise InputError(f"unknown comparison {c!r}; use one of {', '.join(COMPARISONS)}")
    return _Options(alternative, zero_method, family, by, cseo)


def _test_records(
    units: UnitMeans,
    metrics: list[str],
    comparisons: list[str],
    opts: _Options,
    *,
    higher_is_better: Mapping[str, bool] | None,
    paired_set: set[str],
    estimands: Mapping[str, str],
    n_boot: int,
    ci: str,
    seed: int,
    alpha: float,
) -> tuple[list[dict[str, Any]], list[np.ndarray | None]]:
    """One record per strategy x rate x metric x comparison x group (tests, estimate, interval), and
    per record the favourable non-zero deltas the simulated signed-rank MDE needs (None if untested)."""
    alternative, zero_method, by, cseo = opts.alternative, opts.zero_method, opts.by, opts.cseo
    directions = {m: _direction(m, higher_is_better) for m in metrics}
    ddof = 0 if cseo else 1
    mode_note = (
        "C-SEO Bench mode: one-sided Wilcoxon (greater) on favourable deltas, losses by the reverse "
        "test; zero differences kept in the mean, dropped by the test (scipy zero_method='wilcox'); "
        "Holm within each domain x metric x comparison x adopter rate, across strategies; population SD"
        if cseo
        else ""
    )
    records: list[dict[str, Any]] = []
    test_deltas: list[np.ndarray | None] = []  # per record, for the simulated signed-rank MDE
    for metric in metrics:
        hib = directions[metric]
        sign = 1.0 if hib else -1.0
        est_kind = estimands[metric]
        for comparison in comparisons:
            pv = _paired(units, metric, comparison, higher_is_better=hib, paired_metric=metric in paired_set)
            pv = _explode_groups(pv, by)
            cols = {c: pv[c].to_numpy(float) for c in ("baseline", "treated", "delta")}
            for (strategy, rate, group), idx in _group_positions(pv, ["strategy", "rate", "group"]):
                d_all = cols["delta"][idx]
                valid = ~np.isnan(d_all)
                delta = d_all[valid]
                res = _group_stats(
                    cols["baseline"][idx][valid],
                    cols["treated"][idx][valid],
                    delta,
                    sign,
                    estimand=est_kind,
                    alternative=alternative,
                    zero_method=zero_method,
                    n_boot=n_boot,
                    ci=ci,
                    seed=seed,
                    alpha=alpha,
                    ddof=ddof,
                    n_dropped=int((~valid).sum()),
                )
                if metric in paired_set and comparison == "advantage" and res["n"] == 0:
                    res["note"] = (res["note"] + "; " if res["note"] else "") + (
                        f"{metric} is a paired metric not defined on rivals rows"
                    )
                if mode_note:
                    res["note"] = mode_note + ("; " + res["note"] if res["note"] else "")
                fav = sign * delta
                keep = est_kind == "pseudomedian" and res["status"] == "ok"
                test_deltas.append((fav[fav != 0] if zero_method == "wilcox" else fav) if keep else None)
                records.append(
                    {
                        "strategy": strategy,
                        "rate": rate,
                        "metric": metric,
                        "comparison": comparison,
                        "by": by or "all",
                        "group": group,
                        "higher_is_better": hib,
                        "test": _test_name(est_kind, ci, zero_method),
                        "ci_method": _ci_name(est_kind, ci, n_boot, seed),
                        "companion_test": _test_name(
                            "mean" if est_kind == "pseudomedian" else "pseudomedian", ci, zero_method
                        ),
                        **res,
                    }
                )
    return records, test_deltas


def summarize(
    rows: pd.DataFrame | UnitMeans,
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
    estimand: str | Mapping[str, str] | None = None,
    reverse_test: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    n_boot: int = 2000,
    ci: str = "t",
    seed: int = 0,
    mode: str = "default",
) -> pd.DataFrame:
    """Paired tests, estimates and intervals per strategy x rate x metric x comparison (x group).

    Per group the (baseline, treated) query pairs of :func:`paired_values` are summarised. ``rows``
    are the long result rows, or their per-unit means (:class:`UnitMeans`, per (item, original
    rank) for ``by="orig_rank"``): the numbers are the same. Every metric has one declared
    **estimand** and the test, interval and verdict are about it:

    * ``"mean"`` (default): the mean delta. Interval ``ci`` = ``"t"`` (default: t interval with
      df = non-zero pairs - 1, which holds its level on zero-heavy deltas; see
      ``benches/README.md``), ``"studentized"``, ``"percentile"`` or ``"bca"`` bootstrap (queries
      resampled, ``n_boot``, ``seed``); the test is the one that interval inverts (t-test, or the
      bootstrap test whose p-value is the share of resamples on the other side of 0).
    * ``"pseudomedian"`` (C-SEO mode's default): the Hodges-Lehmann estimate (median of the Walsh
      averages) with the Wilcoxon signed-rank test (``zero_method``) and the Walsh-average
      interval. Under ``zero_method="wilcox"`` both use only the non-zero deltas, as the test does.

    ``estimand`` may be one name or a mapping metric -> name. Intervals have level 1 - alpha for
    two-sided tests and 1 - 2 alpha for one-sided ones (each bound then is the one-sided 1 - alpha
    bound the test inverts); ``ci_level`` says which.

    The **other** test (Wilcoxon for the mean, the mean's test for the pseudo-median) is run too,
    as a check: ``companion_p`` (two-sided) and its adjusted ``companion_p_adj``.

    **Verdict** (``verdict``; the machine-readable cause in ``reason``, the words in ``note``):

    * ``"better"`` / ``"worse"``: the declared test is significant after the correction (for a
      one-sided ``alternative`` the losses come from the reverse one-sided test, ``p_reverse``,
      corrected in the same family, unless ``reverse_test=False``), the estimate and its whole
      interval lie on that side of 0 (by construction of the dual interval), and the other test
      does not point the other way. Better always means "the target gained" (``higher_is_better``
      orients it), so for a lower-is-better metric "better" has estimate < 0.
    * ``"mixed"``: the two tests disagree - one is significant and the other points the other way
      (``tests_disagree``), or only the other test is significant after the same correction
      (``companion_only``), or a significant rank test sits beside a pseudo-median whose interval
      touches 0, e.g. when most deltas are zero (``interval_disagrees``).
    * ``"no evidence"``: tested, not significant; ``reason`` ``correction`` when the raw p is below
      alpha but the adjusted one is not, ``not_significant`` otherwise, ``one_sided_blind`` when
      the estimate points against a one-sided test and no reverse test was run.
    * ``"no change detected"``: every delta is 0 (n >= 5): every paired answer was identical.
    * ``"insufficient data"``: n < 5 (``few_queries``), fewer than 5 non-zero deltas
      (``few_nonzero``) or all deltas equal but not 0 (``constant_delta``); no test is run.

    Other columns (:data:`SUMMARY_COLUMNS`): ``n`` queries (``n_dropped`` for NaN), means,
    ``mean_delta`` with its interval ``delta_ci_low/high`` (method ``ci``), ``sd_delta`` (ddof in
    ``sd_ddof``: 1, or 0 - the population SD - in C-SEO mode as the paper's ``np.std``),
    ``hl_delta`` / ``hl_ci_low/high`` (pseudo-median rows only), ``estimate`` /
    ``estimate_ci_low/high`` (the declared estimand's), ``ci_verified`` (n at or above the size
    where simulated coverage held, :data:`CI_VERIFIED_MIN_N`); ``rel_improvement`` =
    sign * (treated_mean - baseline_mean) / |baseline_mean| (positive = the target gained; GEO
    eq. 4 as a ratio of means) with Fieller's interval, NaN with the reason in ``note`` when the
    baseline mean is not distinguishable from 0; ``p_value`` (declared test, raw), ``p_holm``,
    ``p_bh`` (adjusted within ``family``), ``p_reverse`` / ``p_reverse_adj``; ``wilcoxon_p`` and
    ``ttest_p`` (Student's paired t-test, df n - 1) in ``alternative``; effect sizes
    ``cohens_dz`` and ``rank_biserial`` (zero handling of the test); wins / ties / losses.

    Families (``family``): ``"run"`` (every test of the call), ``"metric"`` (metric x comparison),
    ``"domain"`` (each domain; implies ``by="domain"``), ``"group"`` (each breakdown group) and
    ``"cseo"`` (domain x metric x comparison x adopter rate, across strategies: C-SEO Bench's
    per-table correction; implies ``by="domain"``). ``family_size`` is the row's own family.

    ``mde``: the smallest true change of the estimand the row's test detects with probability
    ``power`` at ``mde_alpha`` = alpha / family_size (the level Holm and BH apply to the smallest
    p-value; a test can succeed at a larger level when others in its family also reject): the t
    formula with the test's df for the mean (:func:`mde_paired`), a simulation of the signed-rank
    test for the pseudo-median (:func:`mde_signed_rank`).

    ``mode="cseo"`` reproduces C-SEO Bench: one-sided Wilcoxon ``alternative="greater"`` with
    ``zero_method="wilcox"`` (zeros dropped by the test, kept in the mean), the pseudo-median as
    the estimand, Holm per ``family="cseo"``, population SD, and losses flagged by the reverse
    one-sided test. Explicit arguments override the mode's defaults.

    ``by`` (None, "domain", "tag", "orig_rank") splits every strategy x rate into groups (see
    :func:`breakdown`); ``by``/``group`` say which (``"all"`` when pooled). Deterministic for a
    seed; row order does not matter.
    """
    opts = _resolve_options(
        mode, alternative, zero_method, family, by, correction, ci, alpha, power, n_boot, comparisons
    )
    alternative, zero_method, family, by = opts.alternative, opts.zero_method, opts.family, opts.by
    metrics = list(metrics)
    units = _units(rows, metrics, by_rank=by == "orig_rank")
    records, test_deltas = _test_records(
        units,
        metrics,
        list(comparisons),
        opts,
        higher_is_better=higher_is_better,
        paired_set=set(paired_metrics),
        estimands=_estimands(metrics, estimand, "pseudomedian" if opts.cseo else "mean"),
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        alpha=alpha,
    )
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SUMMARY_COLUMNS})
    out = pd.DataFrame.from_records(records)
    out["alternative"] = alternative
    out["zero_method"] = zero_method
    out["correction"] = correction
    out["alpha"] = alpha
    out["power"] = power
    out["mode"] = mode
    out["family"] = _family_labels(out, family, by)
    _correct(out, correction)
    _assign_verdicts(out, alternative=alternative, alpha=alpha, reverse_test=reverse_test)
    _add_mde(out, test_deltas, alpha=alpha, power=power, alternative=alternative, seed=seed)
    # Coverage was simulated for intervals of testable rows at or above a size per method.
    used_n = np.where((out["estimand"] == "pseudomedian") & (zero_method == "wilcox"), out["n_nonzero"], out["n"])
    min_n = out["estimand"].map(lambda e: CI_VERIFIED_MIN_N["walsh" if e == "pseudomedian" else ci])
    out["ci_verified"] = (out["status"] != INSUFFICIENT).to_numpy() & (used_n >= min_n.to_numpy())
    out = out.sort_values(["metric", "comparison", "strategy", "rate", "group"], kind="mergesort")
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


def _group_positions(df: pd.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], np.ndarray]]:
    """``df.groupby(keys, dropna=False, sort=True)`` as (key, row positions) pairs, positions in row order.

    The same groups, in the same order and with the same rows as iterating the groupby, without
    building a DataFrame per group (which cost more than the statistics of a group).
    """
    if df.empty:
        return []
    codes = df.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(int(codes.max()) + 2))
    firsts = df[keys].iloc[order[bounds[:-1]]]
    return [
        (tuple(k), order[a:b]) for k, a, b in zip(firsts.itertuples(index=False, name=None), bounds[:-1], bounds[1:])
    ]


def _units(rows: pd.DataFrame | UnitMeans, metrics: Sequence[str], *, by_rank: bool) -> UnitMeans:
    if not isinstance(rows, UnitMeans):
        return unit_means(rows, metrics, by_rank=by_rank)
    missing = [m for m in metrics if m not in rows.metrics]
    if missing:
        raise InputError(f"unit means lack metric(s) {', '.join(missing)}; available: {', '.join(rows.metrics)}")
    if rows.by_rank != by_rank:
        raise InputError(
            "a breakdown by orig_rank needs unit means per (item, original rank): "
            "unit_means(rows, metrics, by_rank=True)"
        )
    return rows


def _family_labels(out: pd.DataFrame, family: str, by: str | None) -> pd.Series:
    # Without a breakdown the one group is "all" (not "None=all").
    group = (f"{by}=" if by else "") + out["group"].astype(str)
    if family == "run":
        return pd.Series("run", index=out.index)
    if family == "metric":
        return out["metric"] + "/" + out["comparison"]
    if family == "cseo":
        rate = out["rate"].map(lambda r: "nan" if pd.isna(r) else f"{float(r):g}")
        return group + "/" + out["metric"] + "/" + out["comparison"] + "/rate=" + rate
    return group


def _correct(out: pd.DataFrame, correction: str) -> None:
    """Adjusted p-values within each family: the declared test, its reverse and the companion."""
    adjust = holm if correction == "holm" else benjamini_hochberg
    for col in ("p_holm", "p_bh", "p_reverse_adj", "companion_p_adj"):
        out[col] = np.nan
    out["family_size"] = 0
    for idx in out.groupby("family", sort=False).groups.values():
        p = out.loc[idx, "p_value"].to_numpy(float)
        out.loc[idx, "p_holm"] = holm(p)
        out.loc[idx, "p_bh"] = benjamini_hochberg(p)
        out.loc[idx, "p_reverse_adj"] = adjust(out.loc[idx, "p_reverse"].to_numpy(float))
        out.loc[idx, "companion_p_adj"] = adjust(out.loc[idx, "companion_p"].to_numpy(float))
        out.loc[idx, "family_size"] = int(np.isfinite(p).sum())
    out["family_size"] = out["family_size"].astype(int)


def _assign_verdicts(out: pd.DataFrame, *, alternative: str, alpha: float, reverse_test: bool) -> None:
    """Verdicts that cannot contradict the estimate and interval printed beside them.

    A direction D (+1 gained, -1 lost) comes from the declared test after the correction; it
    becomes better / worse only if the declared estimate and its whole interval lie on that side of
    0 and the companion test does not point the other way; otherwise the row is "mixed".
    """
    ok = (out["status"] == "ok").to_numpy()
    adj = (out["p_holm"] if out["correction"].iloc[0] == "holm" else out["p_bh"]).to_numpy(float)
    rev_adj = out["p_reverse_adj"].to_numpy(float)
    sig = ok & (adj < alpha)
    sig_rev = ok & (rev_adj < alpha) & reverse_test
    direction = out["_dir"].to_numpy(int)
    if alternative == "two-sided":
        d = np.where(sig, direction, 0)
    elif alternative == "greater":
        d = np.where(sig, 1, np.where(sig_rev, -1, 0))
    else:
        d = np.where(sig, -1, np.where(sig_rev, 1, 0))
    est, lo, hi = (out[c].to_numpy(float) for c in ("_est_fav", "_lo_fav", "_hi_fav"))
    with np.errstate(invalid="ignore"):
        interval_ok = ((d > 0) & (est > 0) & (lo > 0)) | ((d < 0) & (est < 0) & (hi < 0))
    companion_against = (d != 0) & (out["_companion_dir"].to_numpy(int) == -d)
    companion_only = ok & (d == 0) & (out["companion_p_adj"].to_numpy(float) < alpha)
    raw_sig = ok & ((out["p_value"].to_numpy(float) < alpha)
                    | ((out["p_reverse"].to_numpy(float) < alpha) & reverse_test))  # fmt: skip
    with np.errstate(invalid="ignore"):
        against = (hi < 0) if alternative == "greater" else (lo > 0)
    blind = ok & (not reverse_test and alternative != "two-sided") & against
    status = out["status"].to_numpy()
    conds = [
        status == INSUFFICIENT,
        status == "no change",
        (d > 0) & interval_ok & ~companion_against,
        (d < 0) & interval_ok & ~companion_against,
        (d != 0) & companion_against,
        (d != 0) & ~interval_ok,
        blind,
        companion_only,
        raw_sig,
    ]
    out["verdict"] = np.select(
        conds,
        [INSUFFICIENT, NO_CHANGE, "better", "worse", "mixed", "mixed", "no evidence", "mixed", "no evidence"],
        default="no evidence",
    )
    out["reason"] = np.select(
        conds,
        [
            out["reason"],
            "all_zero",
            "significant",
            "significant",
            "tests_disagree",
            "interval_disagrees",
            "one_sided_blind",
            "companion_only",
            "correction",
        ],
        default="not_significant",
    )
    out["significant"] = out["verdict"].isin(["better", "worse"])


def _add_mde(
    out: pd.DataFrame,
    test_deltas: Sequence[np.ndarray | None],
    *,
    alpha: float,
    power: float,
    alternative: str,
    seed: int,
) -> None:
    """MDE at the level the verdict needs: alpha / family size, with the test the row uses."""
    m = np.maximum(out["family_size"].to_numpy(int), 1)
    out["mde_alpha"] = alpha / m
    # Means: the t formula of mde_paired, for every row at once.
    sd, n = out["_mde_sd"].to_numpy(float), out["n"].to_numpy(int)
    df = np.maximum(out["_mde_df"].to_numpy(int), 1)
    level = 1 - out["mde_alpha"].to_numpy(float) / (2 if alternative == "two-sided" else 1)
    ok = (out["estimand"] == "mean").to_numpy() & (n >= MIN_N) & np.isfinite(sd) & (sd > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mde = (_t_ppf(level, df) + _t_ppf(power, df)) * sd / np.sqrt(np.maximum(n, 1))
    mde = np.where(ok, t_mde, np.nan)
    # Pseudo-medians: the simulated signed-rank test, per row.
    for i, (a, deltas) in enumerate(zip(out["mde_alpha"], test_deltas)):
        if deltas is not None:
            mde[i] = mde_signed_rank(deltas, float(a), power, alternative, seed=seed)
    out["mde"] = mde


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
        kwargs.setdefault("family", "cseo")
    kwargs.setdefault("family", "group")
    return summarize(rows, [metric], by=by, **kwargs)


# --------------------------------------------------------------------------------------------
# Calibration (A/A control)
# --------------------------------------------------------------------------------------------


def calibration(summary_df: pd.DataFrame, alpha: float = 0.05, *, strategy: str = "identity") -> pd.DataFrame:
    """Rejection rate of the A/A control: how often the tests "find" an effect when nothing changed.

    The ``identity`` strategy leaves every page unchanged, so any difference between its
    conditions is sampling noise and every rejection is a false positive. For each comparison
    (and ``"all"``), over the identity rows of ``summary_df`` with a p-value: the share whose
    declared test (``p_value``: the t-test, bootstrap or Wilcoxon test of each row's estimand, in
    the run's ``alternative``; reverse tests are not counted) has raw p < alpha (``rate_raw``),
    Holm-adjusted p < alpha and BH-adjusted p < alpha.
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
    aa = summary_df[(summary_df["strategy"] == strategy) & summary_df["p_value"].notna()]
    if aa.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CALIBRATION_COLUMNS})
    records = []
    groups = [(c, g) for c, g in aa.groupby("comparison", sort=True)]
    if len(groups) > 1:
        groups.append(("all", aa))
    for comparison, g in groups:
        n = len(g)
        k_raw = int((g["p_value"] < alpha).sum())
        k_holm = int((g["p_holm"] < alpha).sum())
        k_bh = int((g["p_bh"] < alpha).sum())
        rate = k_raw / n
        warn = rate > alpha
        excess = _binom_p_greater(k_raw, n, alpha)
        head = f"A/A control ({strategy}, {comparison}): {k_raw}/{n} tests reject at alpha={alpha:g} ({rate:.1%}); "
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
