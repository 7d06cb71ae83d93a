"""Running an audit: check the page, simulate the strategies, read the run, write the report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from geoaudit.analysis import run_stats
from geoaudit.audit.findings import competition, page_rewrites, query_effects, recommend
from geoaudit.audit.model import AuditPlan, AuditResult, Stage
from geoaudit.audit.plan import engine_config, plan_audit
from geoaudit.check import CheckOptions, CheckReport, check
from geoaudit.config import Settings
from geoaudit.documents import HTML_SUFFIXES, now_iso
from geoaudit.errors import ConfigError, InputError
from geoaudit.options import AuditOptions
from geoaudit.simulate import Simulation, SimulationConfig


def default_report_dir(settings: Settings, plan: AuditPlan) -> Path:
    """Where an audit's report goes unless told: ``<data dir>/reports/audit-<key>/``."""
    return settings.data_dir / "reports" / f"audit-{plan.key}"


def check_cost(plan: AuditPlan, max_cost: float | None) -> None:
    """Refuse, before any call, a plan whose estimated cost is above ``max_cost`` (or cannot be estimated).

    Raises:
        ConfigError: the estimate is higher than ``max_cost``, or unknown while a cap is set.
    """
    if max_cost is None or not plan.runnable:
        return
    if plan.cost is None:
        raise ConfigError(
            f"--max-cost ${max_cost:g} is set but this audit's cost cannot be estimated ({plan.cost_note})",
            hint="drop --max-cost to run anyway, or use a model litellm has a price for",
        )
    if plan.cost > max_cost:
        raise ConfigError(
            f"this audit may cost up to ${plan.cost:.4f} ({plan.total_calls:,} model calls at most), above --max-cost ${max_cost:g}",
            hint="use --budget quick, fewer queries, competitors or strategies, or raise --max-cost",
        )


def _check_page(plan: AuditPlan, settings: Settings, o: AuditOptions, progress: Stage | None) -> CheckReport:
    target = plan.page.url if plan.page.kind == "url" and plan.page.url else plan.page.spec
    if progress:
        progress("check", {"done": 0, "total": 1})
    report = check(
        [target],
        settings=settings,
        options=CheckOptions(
            allow_private=o.allow_private,
            respect_robots=o.respect_robots,
            delay=o.delay,
            timeout=o.timeout,
            fetch_as_agents=o.fetch_as_agents,
        ),
    )
    if progress:
        progress("check", {"done": 1, "total": 1})
    return report


def audit(
    page: str,
    queries: Sequence[str],
    competitors: Sequence[str],
    *,
    settings: Settings,
    options: AuditOptions | None = None,
    out_dir: Path | str | None = None,
    progress: Stage | None = None,
    command: str | None = None,
) -> AuditResult:
    """Audit ``page`` for ``queries`` against ``competitors`` and write the creator's report.

    Steps: fetch the pages (:func:`~geoaudit.audit.plan.plan_audit`); run the static AI-readiness
    checks on your page (:func:`geoaudit.check.check`); simulate the strategies at the adopter rates
    (:class:`geoaudit.simulate.Simulation`: a run in the run store, so the same call resumes it);
    compute the statistics (:func:`geoaudit.analysis.run_stats`); read per-query effects, the
    recommended rewrite and who wins each query (:mod:`geoaudit.audit.findings`); write
    ``<out_dir>/index.html`` (default ``<data dir>/reports/audit-<key>/``).

    When the simulation cannot run (your page unusable, no usable competitor) the report is still
    written with the readiness findings and the reasons; ``result.simulated`` is then False.
    Cells whose model calls failed are recorded in the run (``result.failed_cells``) and retried by
    the next call; the report covers the finished ones.

    Raises:
        InputError / ConfigError / UnknownStrategyError / UnknownModelError: bad inputs or options,
            before any model call (a --max-cost the plan exceeds included).
        RunBusyError: the same audit is running in another process.
    """
    o = options or AuditOptions()
    started = time.perf_counter()
    plan = plan_audit(page, queries, competitors, settings=settings, options=o, progress=progress)
    check_cost(plan, o.max_cost)
    result = AuditResult(plan=plan, command=command or "", generated_at=now_iso())
    if not o.check:
        result.check_note = "the audit ran with the checks switched off"
    elif plan.page.kind == "file" and Path(plan.page.spec).suffix.lower() not in HTML_SUFFIXES:
        result.check_note = "the readiness checks read web pages and .html files; this page is a text or markdown draft"
    else:
        result.check = _check_page(plan, settings, o, progress)
    if plan.runnable:
        _simulate(result, settings, o, progress, command)
    else:
        result.stats_problem = plan.problem
    if progress:
        progress("report", {})
    from geoaudit.audit.render import write_audit_report

    result.seconds = time.perf_counter() - started
    result.report = write_audit_report(result, Path(out_dir) if out_dir else default_report_dir(settings, plan))
    return result


def _simulate(
    result: AuditResult, settings: Settings, o: AuditOptions, progress: Stage | None, command: str | None
) -> None:
    plan = result.plan
    assert plan.bench is not None
    config = SimulationConfig(
        bench=str(plan.bench),
        strategies=plan.strategies,
        rates=plan.rates,
        seeds=tuple(range(plan.seeds)),
        engine=engine_config(plan),
        model=plan.model,
        rewrite_model=settings.rewrite_model or "",
        answers=plan.answers,
    )
    sim = Simulation(
        settings, config, command=command or f"geoaudit audit {plan.page.spec} ({len(plan.queries)} queries)"
    )
    try:
        sim.run.acquire()  # RunBusyError now, before the run's meta says this is an audit
        sim.run.set_meta(
            audit={
                "key": plan.key,
                "page": plan.page.to_dict(),
                "queries": list(plan.queries),
                "competitors": [c.to_dict() for c in plan.competitors],
                "budget": plan.budget,
            }
        )
        res = sim.run_sync(
            (lambda st: progress("simulate", {"done": st.done, "total": st.planned})) if progress else None
        )
        run = res.run
        result.run_id, result.run_dir = run.id, run.dir
        result.planned_cells, result.resumed_cells = res.planned_cells, res.resumed_cells
        result.computed_cells, result.failed_cells = res.computed_cells, res.failed_cells
        if res.failed_cells:
            result.failed_example = str(run.failed_cells()[0]["error"])
        meta = run.meta
        result.run_status = str(meta.get("status", ""))
        result.run_usage = str((meta.get("usage") or {}).get("summary") or "")
        result.usage = [gw.usage.summary() for gw in dict.fromkeys((sim.gateway, sim.rewrite_gateway))]
        result.strategy_info = dict(meta.get("strategies") or {})
        if progress:
            progress("stats", {})
        rows = run.rows()
        try:
            result.stats = run_stats(run, rows=rows)
        except InputError as exc:
            result.stats_problem = exc.message
        queries = {item.id: item.query for item in sim.bench.items}
        stored = run.rewrites()
        primary = str(meta.get("primary") or plan.primary)
        for s in sim.strategies:
            if not rows.empty and s.name in set(rows["strategy"]):
                result.effects[s.name] = query_effects(rows, s.name, primary, queries)
            if s.changes_text and s.name != "identity":
                result.rewrites[s.name] = page_rewrites(stored, s.name, queries, s.query_aware)
        result.recommendation, result.recommendation_note = recommend(
            result.stats, result.effects, result.rewrites, sim.strategies, primary
        )
        rec = result.recommendation.strategy if result.recommendation else None
        result.competition = competition(run, rows, sim.bench.items, primary, rec) if not rows.empty else []
        result.notes += list(sim.bench.notes)
    finally:
        sim.close()
