"""``geoaudit audit``: your page against your competitors, for your queries, in one report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from geoaudit.cli._app import (
    ApiBaseOpt,
    ConcurrencyOpt,
    NoCacheOpt,
    app,
    check_output_dir,
    console,
    err_console,
    settings,
)
from geoaudit.options import AuditOptions

_D = AuditOptions()


@app.command(
    "audit",
    epilog=(
        "Exit codes: 0 = report written; 1 = report written but incomplete (your page could not be used, no "
        "competitor could, or some cells' model calls failed: run the same command again to retry those); "
        "2 = bad usage or input (no query, no competitor, unknown strategy, a budget or --max-cost the plan exceeds)."
    ),
)
def audit_command(
    page: str = typer.Argument(
        ..., metavar="URL_OR_FILE", help="Your page: an http(s) URL or a local .html/.md/.txt file."
    ),
    query: list[str] | None = typer.Option(
        None, "--query", "-q", help="A question your page should answer (repeatable)."
    ),
    competitor: list[str] | None = typer.Option(
        None, "--competitor", "-c", help="A competitor page, URL or file (repeatable)."
    ),
    competitors: Path | None = typer.Option(
        None, "--competitors", help="Text file of competitor URLs or paths, one per line (# comments)."
    ),
    strategies: str | None = typer.Option(
        None,
        "--strategies",
        "-s",
        help="Comma-separated strategies (default: those that work on the model: identity, rank and the deterministic "
        "rewrites; plus grounded LLM rewrites on other models).",
    ),
    adopters: str = typer.Option(
        ",".join(f"{r:g}" for r in _D.rates),
        "--adopters",
        "-a",
        help="Shares of the competitors that adopt the same strategy.",
    ),
    budget: str = typer.Option(
        _D.budget,
        "--budget",
        "-b",
        help="quick, standard or thorough (seeds x samples), or the most model calls to plan, e.g. 2000.",
    ),
    seeds: int | None = typer.Option(None, "--seeds", help="Seeds (override the budget's choice)."),
    samples: int | None = typer.Option(
        None, "--samples", "-n", help="Answers per condition (override the budget's choice)."
    ),
    k: int = typer.Option(_D.k, "--k", help="Most sources the engine is shown (picked and ordered by BM25)."),
    source_budget: int | None = typer.Option(
        None,
        "--source-budget",
        help="Characters of each source the engine reads (default 600 embedded, 1500 otherwise).",
    ),
    max_cost: float | None = typer.Option(
        None, "--max-cost", help="Refuse to start when the estimated cost is above this (USD)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Fetch the pages, print the plan (calls, tokens, cost) and stop: no model call."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Report directory (default: <data dir>/reports/audit-<key>/)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Engine model (default: local/smollm2, embedded)."),
    rewrite_model: str | None = typer.Option(
        None, "--rewrite-model", help="Model that rewrites pages (default: --model)."
    ),
    api_base: str | None = ApiBaseOpt,
    concurrency: int | None = ConcurrencyOpt,
    no_cache: bool = NoCacheOpt,
    strategies_dir: Path | None = typer.Option(None, "--strategies-dir", help="Extra directory of strategy files."),
    allow_private: bool = typer.Option(
        False, "--allow-private", help="Allow private/loopback addresses (e.g. a local dev server)."
    ),
    ignore_robots: bool = typer.Option(
        False, "--ignore-robots", help="Do not honour robots.txt for geoaudit's requests (only for sites you own)."
    ),
    delay: float = typer.Option(_D.delay, "--delay", help="Seconds between requests to one host."),
    timeout: float = typer.Option(_D.timeout, "--timeout", help="Seconds per HTTP request."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the static AI-readiness checks of your page."),
    no_agent_fetch: bool = typer.Option(
        False, "--no-agent-fetch", help="In the checks, do not fetch your page as each AI agent."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print the plan (with --dry-run) or the result summary as JSON."
    ),
) -> None:
    """Audit your page for your queries against your competitors, and write one report for you.

    Fetches your page and the competitors (or reads local files), checks your page's AI readiness, simulates an answer engine over your page among the competitors for every query, with each strategy applied by your page and by a share of the competitors (0, 0.5, 1), tests the differences, and writes a self-contained HTML report: readiness findings, the engine's calibration, each strategy's verdict with its uncertainty, the recommended rewrite of your page ready to copy (with its diff, fabrication flags and the queries it helped and hurt), and which competitors take the engine's attention per query.

    Offline on the embedded model by default; any litellm model with --model (--dry-run first shows the planned calls, tokens and cost). The same command resumes the same run. Competitors that cannot be used (bad URL, unreachable, robots.txt, no text) are skipped and listed in the report; the rest of the audit goes on.

    Examples:

      geoaudit audit https://example.com/kettles -q "how fast does a kettle boil?" -c https://rival.example/kettles

      geoaudit audit drafts/kettles.html -q "best electric kettle" -q "kettle boil time" --competitors rivals.txt

      geoaudit audit https://example.com/kettles -q "..." --competitors rivals.txt --model openai/gpt-4o-mini --dry-run

      geoaudit audit http://127.0.0.1:8000/page -q "..." -c http://127.0.0.1:8000/other --allow-private --budget quick
    """
    from geoaudit.audit import plan_audit, read_competitors_file
    from geoaudit.simulate import parse_rates

    check_output_dir(out, "--out")
    names = tuple(x.strip() for x in (strategies or "").split(",") if x.strip())
    options = AuditOptions(
        strategies=names,
        rates=parse_rates(adopters),
        budget=budget,
        seeds=seeds,
        samples=samples,
        k=k,
        source_budget=source_budget,
        max_cost=max_cost,
        allow_private=allow_private,
        respect_robots=not ignore_robots,
        delay=delay,
        timeout=timeout,
        check=not no_check,
        fetch_as_agents=not no_agent_fetch,
    )
    rivals = list(competitor or [])
    if competitors is not None:
        rivals += read_competitors_file(competitors)
    s = settings(
        model=model,
        rewrite_model=rewrite_model,
        api_base=api_base,
        concurrency=concurrency,
        cache=False if no_cache else None,
        strategies_dir=strategies_dir,
    )
    if ignore_robots:
        err_console.print(
            "[bold yellow]WARNING: robots.txt is IGNORED for geoaudit's requests (--ignore-robots).[/] Only do this for sites you own."
        )

    if dry_run:
        plan = plan_audit(page, query or [], rivals, settings=s, options=options)
        if json_out:
            console.print_json(json.dumps(plan.to_dict(), default=str))
        else:
            console.print("geoaudit audit --dry-run: nothing was sent to a model", highlight=False)
            for line in plan.lines():
                console.print(f"  {line}", highlight=False, markup=False)
        from geoaudit.audit.runner import check_cost

        check_cost(plan, max_cost)
        if not plan.runnable:
            raise typer.Exit(1)
        return
    result = _run(page, query or [], rivals, s, options, out)
    _print_result(result, json_out)
    if not result.simulated:
        err_console.print(
            f"[bold red]audit incomplete:[/] {result.plan.problem}; the report lists the readiness findings "
            "and what was skipped",
            highlight=False,
        )
        raise typer.Exit(1)
    if result.failed_cells:
        err_console.print(
            f"[bold red]audit incomplete:[/] {result.failed_cells} of {result.planned_cells} cells failed "
            f"(e.g. {result.failed_example}); run the same command again to retry only those",
            highlight=False,
        )
        raise typer.Exit(1)


def _run(page: str, queries: list[str], rivals: list[str], s: Any, options: AuditOptions, out: Path | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from geoaudit.audit import audit

    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:

        def stage(name: str, info: Any) -> None:
            if not tasks:  # the inputs and options passed their checks: say what is being audited
                err_console.print(
                    f"geoaudit audit: {page}, {len(queries)} query(ies), {len(rivals)} competitor(s); "
                    f"engine {s.model} (data in {s.data_dir})",
                    highlight=False,
                )
            if name not in tasks:
                for other in tasks.values():  # a new stage means the previous one is over
                    t = bar.tasks[other]
                    bar.update(other, completed=t.total or 1, total=t.total or 1)
                tasks[name] = bar.add_task(name, total=info.get("total"))
            bar.update(tasks[name], total=info.get("total"), completed=info.get("done", 0))

        result = audit(
            page,
            queries,
            rivals,
            settings=s,
            options=options,
            out_dir=out,
            progress=stage,
            command="geoaudit " + " ".join(sys.argv[1:]),
        )
        for t in tasks.values():
            bar.update(t, completed=bar.tasks[t].total or 1, total=bar.tasks[t].total or 1)
    return result


def _print_result(result: Any, json_out: bool) -> None:
    plan = result.plan
    rec = result.recommendation
    if json_out:
        console.print_json(
            json.dumps(
                {
                    "report": str(result.report),
                    "run": result.run_id,
                    "simulated": result.simulated,
                    "recommendation": None
                    if rec is None
                    else {"strategy": rec.strategy, "established": rec.established, "why": rec.why},
                    "recommendation_note": result.recommendation_note,
                    "skipped": [i.to_dict() for i in plan.skipped],
                    "failed_cells": result.failed_cells,
                    "check": None if result.check is None else result.check.counts(),
                    "plan": plan.to_dict(),
                },
                default=str,
            )
        )
        return
    for item in plan.skipped:
        err_console.print(f"[yellow]skipped[/] {item.spec}: {item.reason}", highlight=False, markup=False)
    if result.check is not None:
        c = result.check.counts()
        console.print(
            f"AI readiness: {c['error']} error(s), {c['warning']} warning(s), {c['info']} info", highlight=False
        )
    if result.simulated:
        console.print(
            f"run {result.run_id}: {result.computed_cells} cells computed, {result.resumed_cells} already done, "
            f"{result.failed_cells} failed",
            highlight=False,
        )
        if result.stats is not None and result.stats.engine is not None:
            for line in result.stats.engine.lines():
                console.print(f"  {line}", highlight=False, markup=False)
        if rec is not None:
            console.print(f"recommended rewrite: {rec.strategy} — {rec.why}", highlight=False, markup=False)
        else:
            console.print(result.recommendation_note, highlight=False, markup=False)
        for q in result.competition:
            if q.ahead:
                names = ", ".join(s.title or s.url for s in q.ahead[:3])
                console.print(f"  “{q.query}”: ahead of your page: {names}", highlight=False, markup=False)
    for line in result.usage:
        err_console.print(f"[dim]{line}[/]", highlight=False)
    console.print(f"report: {result.report}", highlight=False, soft_wrap=True)
