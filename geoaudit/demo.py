"""``geoaudit demo``: the whole pipeline, offline, on the bundled demo bench.

crawl (the bundled pages, served on 127.0.0.1 and fetched by the real crawler) -> documents ->
rewrite (the demo strategies on the target pages) -> simulate (adopter rates, A/A control) ->
stats -> report. Everything runs on the embedded model by default and is cached, so a second run
takes seconds. The demo bench is written by the project (``benches/demo/``).
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoaudit.analysis import run_stats
from geoaudit.config import Settings
from geoaudit.crawl import CrawlOptions, crawl
from geoaudit.documents import Document, atomic_write_text
from geoaudit.engine import EngineConfig
from geoaudit.errors import ConfigError, InputError
from geoaudit.llm import Gateway
from geoaudit.options import DEMO
from geoaudit.report import write_report
from geoaudit.resources import data_dir
from geoaudit.rewrite import RewriteStore, rewrite_many
from geoaudit.simulate import Simulation, SimulationConfig
from geoaudit.strategies import load_strategies

DEMO_STRATEGIES = DEMO.strategies
DEMO_RATES = DEMO.rates
DEMO_ITEMS = DEMO.items

Stage = Callable[[str, dict[str, Any]], None]


@dataclass
class DemoResult:
    report: Path
    run_id: str
    crawled: dict[str, int]
    rewrites: dict[str, int]
    stats: Any
    seconds: float
    notes: list[str] = field(default_factory=list)
    usage: list[str] = field(default_factory=list)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a random port) for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _demo_queries(limit: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (data_dir("demo") / "queries.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise InputError("the bundled demo bench has no queries")
    # Spread the chosen items over the domains (queries.jsonl is grouped by domain).
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_domain.setdefault(r.get("domain", ""), []).append(r)
    picked: list[dict[str, Any]] = []
    while len(picked) < min(limit, len(rows)):
        for group in by_domain.values():
            if group and len(picked) < limit:
                picked.append(group.pop(0))
    return picked


def build_demo_bench(
    settings: Settings, *, limit: int = DEMO_ITEMS, stage: Stage | None = None
) -> tuple[Path, dict[str, int], dict[str, Document]]:
    """Crawl the demo pages over local HTTP and write a geoaudit JSONL bench of the crawled documents.

    Returns the bench path, the crawl counts and the crawled documents by page name.
    """
    queries = _demo_queries(limit)
    pages = sorted({c for q in queries for c in q["candidates"]} | {q["target"] for q in queries})
    root = data_dir("demo")
    with serve_directory(root) as base:
        urls = [f"{base}/{p}" for p in pages]
        progress = (lambda p: stage("crawl", {"done": p.done, "total": len(urls)})) if stage else None
        result = crawl(
            urls,
            settings=settings,
            progress=progress,
            # Our own local server: no delay needed, loopback explicitly allowed.
            options=CrawlOptions(delay=0.0, per_host=4, concurrency=8, allow_private=True, resume=False),
        )
    by_page: dict[str, Document] = {}
    for rec in result.records:
        if rec.doc_id:
            doc = next((d for d in result.documents if d.id == rec.doc_id), None)
            if doc is not None:
                by_page[rec.url.split(base + "/", 1)[-1]] = doc
    missing = [p for p in pages if p not in by_page]
    if missing:
        raise InputError(f"the demo crawl did not yield {len(missing)} pages, e.g. {missing[0]}")
    lines = []
    for q in queries:
        docs = [by_page[c] for c in q["candidates"]]
        lines.append(
            json.dumps(
                {
                    "id": q["id"],
                    "query": q["query"],
                    "domain": q.get("domain", ""),
                    "tags": q.get("tags", []),
                    "target": q["candidates"].index(q["target"]),
                    "documents": [
                        {"url": d.metadata.get("canonical") or d.url, "title": d.title, "text": d.text} for d in docs
                    ],
                },
                ensure_ascii=False,
            )
        )
    bench = settings.ensure_data_dir() / "demo" / f"demo-bench-{limit}.jsonl"
    atomic_write_text(bench, "\n".join(lines) + "\n")
    return bench, result.counts, by_page


def run_demo(
    settings: Settings,
    *,
    out_dir: Path | str | None = None,
    limit: int = DEMO_ITEMS,
    strategies: tuple[str, ...] = DEMO_STRATEGIES,
    rates: tuple[float, ...] = DEMO_RATES,
    seeds: tuple[int, ...] = (0,),
    samples: int = 1,
    stage: Stage | None = None,
    command: str = "geoaudit demo",
) -> DemoResult:
    """Run the whole demo pipeline and write the report; see the module docstring.

    Raises:
        ConfigError / InputError / UnknownStrategyError: bad arguments, before any work.
    """
    if limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    started = time.perf_counter()
    # Validates samples before any work.
    engine = EngineConfig(
        samples=samples,
        max_tokens=DEMO.max_tokens,
        source_budget_chars=DEMO.source_budget,
        relevance_scope=DEMO.relevance_scope,
    )
    registry = load_strategies(settings=settings)
    chosen = registry.resolve(list(strategies))
    bench, crawled, _ = build_demo_bench(settings, limit=limit, stage=stage)

    # Rewrite the target pages up front (the simulation reuses these from the store and the cache).
    gateway = Gateway(settings)
    rewrite_gateway = gateway if not settings.rewrite_model else Gateway(settings.replace(model=settings.rewrite_model))
    from geoaudit.bench import load_bench

    items = load_bench(bench, settings=settings).items
    store = RewriteStore(settings.store_path)
    text_strategies = [s for s in chosen if s.changes_text]
    counts = {"ok": 0, "unchanged": 0, "failed": 0}
    done = 0
    total = len(items) * len(text_strategies)
    for item in items:

        def on_rewrite(res: Any) -> None:
            nonlocal done
            done += 1
            counts[res.status] = counts.get(res.status, 0) + 1
            if stage:
                stage("rewrite", {"done": done, "total": total, "status": res.status, "reason": res.reason})

        if text_strategies:
            rewrite_many(
                rewrite_gateway,
                text_strategies,
                [item.target_document],
                query=item.query,
                seed=0,
                store=store,
                progress=on_rewrite,
            )

    config = SimulationConfig(
        bench=str(bench),
        strategies=tuple(s.name for s in chosen),
        rates=rates,
        seeds=seeds,
        engine=engine,
        model=gateway.model,
        rewrite_model=rewrite_gateway.model,
    )
    sim = Simulation(settings, config, gateway=gateway, rewrite_gateway=rewrite_gateway, command=command)
    sim.run_sync((lambda st: stage("simulate", {"done": st.done, "total": st.planned})) if stage else None)
    if stage:
        stage("stats", {})
    stats = run_stats(sim.run)
    out = Path(out_dir) if out_dir else settings.data_dir / "reports" / "demo"
    if stage:
        stage("report", {})
    report = write_report(sim.run, out, stats=stats, title="geoaudit demo: does rewriting a page raise its visibility?")
    return DemoResult(
        report=report,
        run_id=sim.run_id,
        crawled=crawled,
        rewrites=counts,
        stats=stats,
        seconds=time.perf_counter() - started,
        notes=list(sim.bench.notes),
        usage=[g.usage.summary() for g in dict.fromkeys((gateway, rewrite_gateway))],
    )


def headline(stats: Any, metric: str | None = None, comparison: str = "advantage") -> list[str]:
    """One line per strategy x adopter rate for the terminal: the estimate with its CI and the verdict.

    ``metric`` defaults to the run's primary metric. The estimate is the metric's declared estimand
    (mean Δ, or the pseudo-median in C-SEO mode) and the interval the one its test inverts, at the
    level stated on the line; "*" marks an interval from fewer queries than the size where its
    coverage was verified.
    """
    metric = metric or stats.options["metrics"][0]
    df = stats.summary
    rows = df[(df["metric"] == metric) & (df["comparison"] == comparison)]
    lines = []
    for r in rows.itertuples():
        ok = r.estimate_ci_low == r.estimate_ci_low
        ci = f"{r.ci_level:.0%} CI [{r.estimate_ci_low:+.3f}, {r.estimate_ci_high:+.3f}]" if ok else "CI [n/a]"
        what = f"Δ{metric}" if r.estimand == "mean" else f"pseudo-median Δ{metric}"
        lines.append(
            f"  {r.strategy:<22} competitors adopting {r.rate:>4.0%}: {what} {r.estimate:+.3f} {ci}"
            f"{'' if r.ci_verified else '*'} n={r.n} -> {r.verdict}"
        )
    return lines
