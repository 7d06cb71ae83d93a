"""Deterministic strategies on the demo bench: guard pass rate, length ratio and time per rewrite.

Every demo query's target page (``item.target_document``, 30 pages) is rewritten by each
strategy through :func:`geoaudit.rewrite.rewrite` with no gateway and no store, i.e. the transform
plus the same guards an LLM rewrite goes through. "pass" = status ok or unchanged (not failed);
"changed" = the passing text differs from the page (the transform found something to do); the length ratio is the guards'
words(rewrite) / words(original), over the passing rewrites. The time is wall time per rewrite
(transform + guards), the median of ``--repeat`` passes over the 30 pages.

    python benches/perf/bench_strategies.py [--repeat 5] [--strategies answer-first,key-facts]
"""

from __future__ import annotations

import argparse
import statistics
import time

from geoaudit.bench import load_bench
from geoaudit.rewrite import rewrite
from geoaudit.strategies import load_strategies

DEFAULT = ("answer-first", "key-facts", "llms-txt-structure", "keyword-stuffing-rule", "identity")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timing passes over the bench (median reported)")
    ap.add_argument("--strategies", default=",".join(DEFAULT), help="comma-separated rule strategies")
    args = ap.parse_args()

    registry = load_strategies()
    items = load_bench("demo").items
    print(f"demo bench: {len(items)} targets; rewrite(None, strategy, target, query) = transform + guards, no model\n")
    print(
        "| strategy | transform | pass (guards) | changed | mean length ratio (min-max) | fabrication flags | ms per rewrite |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in (n.strip() for n in args.strategies.split(",") if n.strip()):
        strategy = registry.get(name)
        if strategy.needs_model:
            print(f"| {name} | (LLM strategy: skipped, needs a model) | | | | | |")
            continue
        results = [rewrite(None, strategy, it.target_document, query=it.query) for it in items]
        passed = [r for r in results if r.status != "failed"]
        ratios = [float(r.guards["length_ratio"]) for r in passed if r.guards.get("length_ratio") is not None]
        flags = sum(r.flag_count for r in passed)
        times = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            for it in items:
                rewrite(None, strategy, it.target_document, query=it.query)
            times.append((time.perf_counter() - t0) / len(items))
        n = len(results)
        ratio_txt = f"{statistics.mean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-"
        print(
            f"| {name} | {strategy.rule_transform.label} | {len(passed)}/{n} ({len(passed) / n:.0%}) "
            f"| {sum(r.rewritten_hash != r.original_hash for r in passed)}/{n} | {ratio_txt} | {flags} | {statistics.median(times) * 1000:.1f} |"
        )
        for r in results:
            if r.status == "failed":
                print(f"    failed {r.doc_id}: {r.reason}")


if __name__ == "__main__":
    main()
