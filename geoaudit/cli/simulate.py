"""``geoaudit simulate`` and ``geoaudit runs``: competitive runs and the run store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from geoaudit.cli._app import (
    ApiBasesOpt,
    ConcurrencyOpt,
    NoCacheOpt,
    RouterOpt,
    WorkersOpt,
    app,
    check_output_file,
    console,
    err_console,
    print_usage,
    settings,
)
from geoaudit.options import (
    ENGINE_K,
    ENGINE_MAX_TOKENS,
    ENGINE_SOURCE_BUDGET,
    ENGINE_TEMPERATURE,
    SIMULATE_RATES,
    SIMULATE_STRATEGIES,
)

runs_app = typer.Typer(help="List, inspect and export simulation runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@app.command("simulate")
def simulate_cmd(
    bench: str = typer.Option("demo", "--bench", "-b", help="Bench: 'demo', a name from `bench list`, or a path."),
    strategies: str = typer.Option(
        ",".join(SIMULATE_STRATEGIES), "--strategies", "-s", help="Comma-separated strategy names, or 'all'."
    ),
    adopters: str = typer.Option(
        ",".join(f"{r:g}" for r in SIMULATE_RATES),
        "--adopters",
        "-a",
        help="Adopter rates in [0, 1]: share of competitors that also adopt.",
    ),
    samples: int = typer.Option(1, "--samples", "-n", help="Answers sampled per condition."),
    seeds: str = typer.Option("1", "--seeds", help="Seed count (3 = seeds 0,1,2) or a list (0,7,9)."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N bench items."),
    domain: str | None = typer.Option(None, "--domain", help="Only items of this domain."),
    k: int = typer.Option(ENGINE_K, "--k", help="Sources the engine shows per query."),
    order: str = typer.Option("given", "--order", help="Source order: given, retrieved or shuffled."),
    attribution: str = typer.Option(
        "auto", "--attribution", help="citations, overlap, hybrid, or auto (hybrid for local models)."
    ),
    temperature: float = typer.Option(
        ENGINE_TEMPERATURE, "--temperature", help="Answer sampling temperature (GEO: 0.7)."
    ),
    max_tokens: int = typer.Option(ENGINE_MAX_TOKENS, "--max-tokens", help="Longest answer, in tokens."),
    stages: str = typer.Option(
        "auto",
        "--stages",
        help="What the engine measures: some of relevance,selection,answer, or auto "
        "(all three on the embedded model, answer elsewhere).",
    ),
    answers: str = typer.Option(
        "auto",
        "--answers",
        help="Sample answers in every condition (all) or only the base one (base: engine calibration at a "
        "fraction of the cost); auto: base when the primary metric is a reading (selection), else all.",
    ),
    primary: str = typer.Option(
        "auto",
        "--primary",
        help="The metric the verdict is about, declared before the run (auto: selection when measured, else pawc).",
    ),
    source_budget: int = typer.Option(
        ENGINE_SOURCE_BUDGET, "--source-budget", help="Characters of each source shown to the engine."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Engine model (default: local/smollm2)."),
    rewrite_model: str | None = typer.Option(None, "--rewrite-model", help="Model that rewrites documents."),
    api_base: list[str] | None = ApiBasesOpt,
    router: Path | None = RouterOpt,
    concurrency: int | None = ConcurrencyOpt,
    workers: int | None = WorkersOpt,
    no_cache: bool = NoCacheOpt,
    strategies_dir: Path | None = typer.Option(None, "--strategies-dir", help="Extra directory of strategy files."),
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    max_cells: int | None = typer.Option(
        None, "--max-cells", help="Refuse plans with more cells than this (default 500,000: simulate.MAX_CELLS)."
    ),
) -> None:
    """Run competitive simulations: does a strategy help when competitors adopt it too?

    For every bench item, strategy and adopter rate, the engine answers the query three ways:
    nobody adopts (base), only competitors adopt (rivals), the target and competitors adopt
    (treated). Re-running the same command resumes the same run. Cells whose LLM calls fail are
    recorded and the rest go on; the exit code is then 1 and re-running retries only those. One
    process runs a run at a time: a second identical command stops at once.

    Examples:
        geoaudit simulate --bench demo --strategies identity,statistics-grounded --adopters 0,0.5,1
        geoaudit simulate --bench ~/geo-bench/test.jsonl --strategies all --seeds 3 --samples 5 \\
            --model ollama/qwen2.5:7b --api-base http://localhost:11434
        geoaudit simulate --bench cseo/retail-00000-of-00001.parquet --k 10 --adopters 0,1
        geoaudit simulate --bench demo --strategies all --model hosted_vllm/Qwen2.5-7B-Instruct \\
            --api-base http://gpu1:8000/v1 --api-base http://gpu2:8000/v1 --concurrency 64 --workers 2
    """
    from geoaudit.engine import EngineConfig
    from geoaudit.errors import ConfigError
    from geoaudit.simulate import MAX_CELLS, Simulation, SimulationConfig, parse_rates, parse_seeds

    if max_cells is not None and max_cells < 1:
        raise ConfigError(f"--max-cells must be at least 1, got {max_cells}")

    s = settings(
        model=model,
        rewrite_model=rewrite_model,
        api_base=api_base,
        concurrency=concurrency,
        cache=False if no_cache else None,
        strategies_dir=strategies_dir,
        router_file=router,
        workers=workers,
    )
    engine = EngineConfig(
        k=k,
        order=order,
        attribution=attribution,
        samples=samples,
        temperature=temperature,
        max_tokens=max_tokens,
        stages=stages,
        source_budget_chars=source_budget,
    )
    config = SimulationConfig(
        bench=bench,
        strategies=tuple(x.strip() for x in strategies.split(",") if x.strip()),
        rates=parse_rates(adopters),
        seeds=parse_seeds(seeds),
        limit=limit,
        engine=engine,
        model=s.model,
        rewrite_model=s.rewrite_model or "",
        domain=domain,
        answers=answers,
        primary=primary,
    )
    with Simulation(s, config, command="geoaudit " + " ".join(sys.argv[1:]), max_cells=max_cells or MAX_CELLS) as sim:
        _simulate(sim, config, engine, samples, json_out)


def _simulate(sim: Any, config: Any, engine: Any, samples: int, json_out: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from geoaudit.errors import BackendError

    err_console.print(
        f"run [bold]{sim.run_id}[/]: {sim.planned_cells:,} cells = {len(sim.bench.items)} items x {len(config.seeds)} "
        f"seeds x (1 base + {len(sim.strategies)} strategies x {len(config.rates)} rates x 2 conditions), "
        f"{samples} sample(s) each; engine {sim.gateway.model}, attribution {engine.resolve_attribution(sim.gateway.model)}"
        + (
            f"; {len(sim.gateway.endpoints.deployments)} endpoints (litellm Router), {sim.gateway.slots} slots"
            if sim.gateway.endpoints.routed
            else ""
        )
        + (f"; {sim.settings.workers} worker processes" if sim.settings.workers > 1 else ""),
        highlight=False,
    )
    with Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cells"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[calls]}"),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task("cells", total=None, calls="")

        def on_progress(state) -> None:  # type: ignore[no-untyped-def]
            u = sim.gateway.usage
            cost = "" if u.local_calls == u.calls else f", ${u.cost:.4f} so far"
            failed = f", [red]{state.failed} failed[/]" if state.failed else ""
            bar.update(
                task,
                total=state.planned,
                completed=state.done,
                calls=f"{u.calls} calls, {u.cached} cached{cost}{failed}",
            )

        result = sim.run_sync(on_progress)
    summary = {
        "run": result.run.id,
        "path": str(result.run.dir),
        "planned_cells": result.planned_cells,
        "computed_cells": result.computed_cells,
        "resumed_cells": result.resumed_cells,
        **result.run.counts(),
        "status": result.run.meta["status"],
    }
    if json_out:
        console.print_json(json.dumps(summary))
    else:
        console.print(
            f"run {result.run.id}: {summary['rows']} result rows ({result.computed_cells} cells computed, "
            f"{result.resumed_cells} already done, {result.failed_cells} failed) in {result.run.dir}",
            highlight=False,
        )
        console.print(f"next: geoaudit stats {result.run.id}   |   geoaudit report {result.run.id}", highlight=False)
    print_usage(sim.gateway)
    if sim.rewrite_gateway is not sim.gateway:
        print_usage(sim.rewrite_gateway)
    if result.failed_cells:
        first = result.run.failed_cells()[0]["error"]
        raise BackendError(
            f"{result.failed_cells} of {result.planned_cells} cells failed (their LLM calls gave up; e.g. {first}); "
            "their rows are missing, not scored",
            hint="check --model/--api-base, then run the same command again to retry only those",
        )


@runs_app.command("list")
def runs_list_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List simulation runs in the data directory.

    Examples:
        geoaudit runs list
    """
    from geoaudit.runs import list_runs

    runs = list_runs(settings())
    if json_out:
        console.print_json(json.dumps(runs, default=str))
        return
    if not runs:
        console.print("no runs yet; start one with `geoaudit simulate` (or `geoaudit demo`)", highlight=False)
        return
    table = Table(
        title="runs", caption="cells: done/planned; failed: cells whose LLM calls failed (a re-run retries them)"
    )
    for col in ("id", "status", "bench", "strategies", "model", "cells", "failed", "rows", "created"):
        table.add_column(col, no_wrap=col in {"id", "cells"}, overflow="fold")
    for r in runs:
        table.add_row(
            r["id"],
            str(r["status"]),
            str(r["bench"]),
            ",".join(r["strategies"] or []),
            str(r["model"]),
            f"{r['cells']}/{r['planned_cells']}",
            str(r["failed_cells"] or ""),
            str(r["rows"]),
            str(r["created_at"] or "")[:16],
        )
    console.print(table)


@runs_app.command("show")
def runs_show_cmd(run: str = typer.Argument(..., help="Run id (or unique prefix).")) -> None:
    """Show a run's configuration, command line, versions and progress.

    Examples:
        geoaudit runs show run-1a2b3c
    """
    from geoaudit.runs import open_run

    with open_run(settings(), run) as r:
        meta = r.meta
        failures = r.failed_cells()[:20]
        console.print_json(
            json.dumps(
                {"id": r.id, "path": str(r.dir), **r.counts(), **meta, "failed_cell_errors": failures}, default=str
            )
        )


@runs_app.command("export")
def runs_export_cmd(
    run: str = typer.Argument(..., help="Run id (or unique prefix)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv, parquet or jsonl."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: <run>.<format>)."),
) -> None:
    """Export a run's results: one row per item x condition (samples averaged).

    Examples:
        geoaudit runs export run-1a2b3c --format parquet -o results.parquet
    """
    from geoaudit.runs import export_rows, open_run

    check_output_file(out, "--out")
    with open_run(settings(), run) as r:
        path = out or Path(f"{r.id}.{fmt}")
        n = export_rows(r, path, fmt)
    console.print(f"wrote {n} rows to {path}", highlight=False)
