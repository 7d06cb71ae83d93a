"""The embedded default as an instrument: demo wall time, readings per minute, calibration figures.

Runs ``geoaudit demo`` (the README's main command) in a fresh data directory, i.e. with a cold
cache, and prints what ``benches/README.md`` records:

* wall time of the whole demo (crawl, rewrites, simulation, statistics, report) and of its stages;
* model calls and prompt tokens per stage (relevance readings, selection readings, answers), and
  throughput in readings (or answers) per minute;
* the engine's own figures: share of answer sentences attributable to a source, share unsupported
  by every source, selection mass;
* the controls: the positive control (rank at 0 % adopters) and the other strategies' effects on
  the primary metric, with intervals and adjusted p-values; the negative (identity) and congestion
  controls.

Usage::

    python benches/perf/bench_instrument.py [--limit 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="demo queries (default: the demo's own)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the data directory here")
    args = ap.parse_args()

    from geoaudit.config import Settings
    from geoaudit.demo import run_demo
    from geoaudit.options import DEMO

    home = args.keep or Path(tempfile.mkdtemp(prefix="geoaudit-instrument-"))
    settings = Settings(data_dir=home)
    stages: dict[str, float] = {}
    current: list[str] = []

    def stage(name: str, info: dict) -> None:  # type: ignore[type-arg]
        if not current or current[-1] != name:
            stages[name] = time.perf_counter()
            current.append(name)

    t0 = time.perf_counter()
    result = run_demo(settings, out_dir=home / "report", limit=args.limit or DEMO.items, stage=stage)
    wall = time.perf_counter() - t0
    marks = [(n, stages[n]) for n in current] + [("end", t0 + wall)]
    print(f"demo: {args.limit or DEMO.items} queries, strategies {', '.join(DEMO.strategies)}, rates {DEMO.rates}")
    print(
        f"wall {wall:.0f} s ("
        + ", ".join(f"{a} {b_t - a_t:.0f} s" for (a, a_t), (_, b_t) in itertools.pairwise(marks))
        + ")"
    )

    conn = sqlite3.connect(settings.cache_path)
    rows = conn.execute(
        "SELECT purpose, COUNT(*), SUM(json_extract(response, '$.prompt_tokens')), "
        "SUM(json_extract(response, '$.completion_tokens')) FROM responses GROUP BY purpose"
    ).fetchall()
    sim_seconds = (
        marks[[n for n, _ in marks].index("simulate") + 1][1] - stages.get("simulate", t0)
        if "simulate" in stages
        else wall
    )
    for purpose, n, pt, ct in rows:
        print(f"  {purpose:<10} {n:>5} calls  {int(pt or 0):>8,} prompt tokens  {int(ct or 0):>6,} generated")
    total = sum(n for _, n, _, _ in rows)
    print(
        f"  {total} model calls in the simulation's {sim_seconds:.0f} s: {60 * total / max(sim_seconds, 1e-9):.0f} per minute"
    )

    cal = result.stats.engine
    if cal is not None:
        print("engine calibration:")
        for line in cal.lines():
            print("  " + line)
    primary = result.stats.options["metrics"][0]
    df = result.stats.summary
    sub = df[(df["metric"] == primary)].sort_values(["comparison", "strategy", "rate"])
    print(f"effects on {primary}:")
    for r in sub.itertuples():
        print(
            f"  {r.comparison:<9} {r.strategy:<20} rate {r.rate:>4.0%}: {r.estimand} {r.estimate:+.3f} "
            f"[{r.estimate_ci_low:+.3f}, {r.estimate_ci_high:+.3f}] n={r.n} p_adj={r.p_holm:.3g} -> {r.verdict}"
        )
    print(json.dumps({"wall_s": round(wall, 1), "report": str(result.report)}))
    if args.keep is None:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
