"""Simulated coverage of the confidence intervals geoaudit.stats can print (issue 13).

For each shape of per-query deltas and each n, draws ``--reps`` samples, computes every candidate
interval with the library's own functions at 95 %, and prints the share of intervals that contain
the true value (the mean, 0.2, for the mean intervals; the true pseudo-median for the Walsh
interval). Shapes are what LLM visibility deltas look like: mostly exact zeros, discrete values,
skew. The first table is over all samples; the second only over the samples a verdict would be
printed for (at least 5 non-zero deltas, the rule in ``summarize``). Monte-Carlo standard error of
a coverage near 0.95 is about 0.007 at 1,000 repetitions.

    python benches/stats_coverage.py [--reps 1000] [--n-boot 1000] [--seed 0]

Candidates: Student's t (df = n - 1), t with df = non-zero pairs - 1 (geoaudit's default), the
percentile, BCa and studentized bootstrap (queries resampled), and the Walsh-average interval of the
Hodges-Lehmann pseudo-median.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from scipy import stats as sps

from geoaudit.stats import bootstrap_test_interval, t_test_interval, walsh_interval

TRUE_MEAN = 0.2
NS = (10, 20, 30, 50, 100)


def _normal(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(TRUE_MEAN, 1.0, n)


def _skewed(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.exponential(1.0, n) - 1.0 + TRUE_MEAN  # skewness 2


def _zeros(share: float, discrete: bool) -> Callable[[np.random.Generator, int], np.ndarray]:
    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        moved = rng.random(n) >= share
        if discrete:  # +1 / -1 with the mean kept at TRUE_MEAN
            up = (1 + TRUE_MEAN / (1 - share)) / 2
            values = np.where(rng.random(n) < up, 1.0, -1.0)
        else:
            values = rng.normal(TRUE_MEAN / (1 - share), 1.0, n)
        return np.where(moved, values, 0.0)

    return draw


SHAPES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "normal": _normal,
    "skewed (exp)": _skewed,
    "70% zeros": _zeros(0.7, False),
    "70% zeros, ±1": _zeros(0.7, True),
    "90% zeros": _zeros(0.9, False),
}
METHODS = ("t, df n-1", "t, df nz-1 (default)", "percentile", "BCa", "studentized", "Walsh (HL)")


def true_pseudomedian(draw: Callable[[np.random.Generator, int], np.ndarray], seed: int) -> float:
    """Median of (X1 + X2) / 2 over 2,000,000 simulated pairs."""
    rng = np.random.default_rng([seed, 99])
    a, b = draw(rng, 2_000_000), draw(rng, 2_000_000)
    return float(np.median((a + b) / 2))


def intervals(x: np.ndarray, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    n = x.size
    out: dict[str, tuple[float, float]] = {}
    se = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.975, n - 1)) * se
    out["t, df n-1"] = (float(x.mean()) - half, float(x.mean()) + half)
    _, lo, hi, *_ = t_test_interval(x, alpha=0.05, alternative="two-sided")
    out["t, df nz-1 (default)"] = (lo, hi)
    for name, method in (("percentile", "percentile"), ("BCa", "bca"), ("studentized", "studentized")):
        with np.errstate(all="ignore"):
            _, lo, hi, _, _ = bootstrap_test_interval(
                x, alpha=0.05, alternative="two-sided", method=method, n_boot=n_boot, seed=seed
            )
        out[name] = (lo, hi)
    _, lo, hi = walsh_interval(x, alpha=0.05)
    out["Walsh (HL)"] = (lo, hi)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    start = time.perf_counter()
    rows_all, rows_ok = [], []
    for shape, draw in SHAPES.items():
        pm = true_pseudomedian(draw, args.seed)
        for n in NS:
            rng = np.random.default_rng([args.seed, n, len(shape)])
            hits = {m: [] for m in METHODS}
            testable = []
            for rep in range(args.reps):
                x = draw(rng, n)
                testable.append(np.count_nonzero(x) >= 5)
                for m, (lo, hi) in intervals(x, args.n_boot, rep).items():
                    target = pm if m == "Walsh (HL)" else TRUE_MEAN
                    hits[m].append(bool(lo <= target <= hi))  # NaN bounds count as a miss
            ok = np.array(testable)
            rows_all.append((shape, n, ok.mean(), [np.mean(hits[m]) for m in METHODS]))
            rows_ok.append(
                (shape, n, ok.mean(), [np.mean(np.array(hits[m])[ok]) if ok.any() else math.nan for m in METHODS])
            )
    for title, rows in (
        ("all samples", rows_all),
        ("samples with >= 5 non-zero deltas (a verdict is printed)", rows_ok),
    ):
        print(
            f"\nCoverage of nominal 95 % intervals, {title}; {args.reps} repetitions, "
            f"{args.n_boot} bootstrap resamples, true mean {TRUE_MEAN}"
        )
        print("| shape | n | testable | " + " | ".join(METHODS) + " |")
        print("|---|---|---|" + "---|" * len(METHODS))
        for shape, n, share, cov in rows:
            cells = " | ".join("–" if math.isnan(c) else f"{c:.3f}" for c in cov)
            print(f"| {shape} | {n} | {share:.2f} | {cells} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
