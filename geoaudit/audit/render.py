"""The audit report: one self-contained HTML file for the creator of the audited page.

Built from the researcher report's blocks (:mod:`geoaudit.report`: escaping, style sheet, verdict
wording, charts, diffs, answer views, the engine calibration) and the check report's sections
(:func:`geoaudit.check.html_sections`), so every report geoaudit writes escapes and words things the
same way. Everything from a page, a query, a rewrite or an answer is escaped text; the page has a
Content-Security-Policy that forbids scripts and every fetch, and uses no JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoaudit.analysis import fmt_num, fmt_pct, fmt_rate, is_missing
from geoaudit.audit.model import AuditResult, QueryCompetition, QueryEffect, RewriteText
from geoaudit.check import SEVERITY_CSS, html_sections
from geoaudit.documents import atomic_write_text
from geoaudit.errors import InputError
from geoaudit.report import (
    CSP,
    REPORT_CSS,
    answer_html,
    diff_html,
    engine_section,
    flag_text,
    html_table,
    metric_label,
    stats_table,
    strategy_verdict,
    svg_delta_chart,
    trend_sentence,
)
from geoaudit.report import (
    escape as _e,
)

#: The report's policy, plus what a page without forms or links to itself never needs.
AUDIT_CSP = CSP + "; base-uri 'none'; form-action 'none'"

_CSS = """
.ev { color: #555; font-size: 0.88em; } .counts span { margin-right: 1em; }
.readiness section h2 { font-size: 1.15em; border-bottom: 1px solid #e4e4e4; }
textarea.copy { width: 100%; font: 0.88em/1.45 ui-monospace, SFMono-Regular, Menlo, monospace; padding: 8px;
                border: 1px solid #bbb; background: #fcfcfc; resize: vertical; }
.up { color: #08660f; } .down { color: #a11; } .flat { color: #777; }
tr.mine td { background: #fff8d6; font-weight: 600; }
"""

_DIRECTION = {
    "higher": ("up", "helped"),
    "lower": ("down", "hurt"),
    "mixed": ("flat", "mixed"),
    "no change": ("flat", "no change"),
}


def _num(x: Any, *, signed: bool = False) -> str:
    return "–" if x is None or is_missing(x) else fmt_num(x, signed=signed)


def _query_label(q: str) -> str:
    return f"“{q}”"


# ------------------------------------------------------------------------------------------ sections


def _summary(r: AuditResult) -> str:
    plan, st = r.plan, r.stats
    items: list[str] = []
    if r.check is not None:
        c = r.check.counts()
        worst = [f for f in r.check.findings if f.severity in ("error", "warning")]
        top = "; ".join(f"{f.title}" for f in worst[:3])
        items.append(
            f"<li><strong>AI readiness:</strong> {c['error']} error(s), {c['warning']} warning(s) on your page "
            f'and its site{": " + _e(top) if top else ""}. <a href="#readiness">Details</a>.</li>'
        )
    else:
        items.append(
            f"<li><strong>AI readiness:</strong> not checked ({_e(r.check_note or 'the checks did not run')}).</li>"
        )
    if not r.simulated:
        items.append(
            f'<li><strong>Simulation:</strong> <span class="v-worse">not run</span>: {_e(r.stats_problem or plan.problem)}</li>'
        )
    else:
        rec = r.recommendation
        if rec is not None:
            cls = "v-better" if rec.established else "v-mixed"
            items.append(
                f'<li><strong>Recommended rewrite:</strong> <span class="{cls}">{_e(rec.strategy)}</span> — '
                f'{_e(rec.why)} <a href="#rewrite">The text, ready to copy</a>.</li>'
            )
        else:
            items.append(f"<li><strong>Recommended rewrite:</strong> none. {_e(r.recommendation_note)}</li>")
        lost = [q for q in r.competition if q.ahead]
        if r.competition:
            metric = metric_label(r.competition[0].metric)
            names = sorted({s.title or s.url for q in lost for s in q.ahead[:1]})
            items.append(
                f"<li><strong>Competitors:</strong> on {len(lost)} of {len(r.competition)} queries a competitor gets more of the "
                f"engine's {_e(metric)} than your page"
                + (f" (first among them: {_e(', '.join(names[:4]))})" if names else "")
                + '. <a href="#competitors">Per query</a>.</li>'
            )
        if st is not None and st.engine is not None and st.engine.failed():
            n = int(st.provenance.get("n_queries") or 0)
            items.append(
                f'<li class="warn"><strong>Engine:</strong> the engine did not pass {len(st.engine.failed())} of its '
                f"controls in this audit (with {n} quer{'y' if n == 1 else 'ies'} a control can fail for lack of "
                'power alone): read every verdict below as unreliable (<a href="#engine">calibration</a>).</li>'
            )
        n_queries = int(st.provenance.get("n_queries") or 0) if st is not None else len(plan.queries)
        if n_queries < 5:
            items.append(
                f'<li class="warn"><strong>Too few queries for a verdict:</strong> with {n_queries} no test can '
                "reach one (at least 5 queries whose result changed are needed); the numbers describe this audit. "
                "Add the questions your page should answer with more --query options.</li>"
            )
        if r.failed_cells:
            items.append(
                f'<li class="warn"><strong>Incomplete:</strong> {r.failed_cells} of {r.planned_cells} cells failed '
                f"(e.g. {_e(r.failed_example)}); run the same command again to retry only those.</li>"
            )
    return (
        '<section id="summary"><h2>Summary</h2><div class="verdict-box"><ul>' + "".join(items) + "</ul>"
        f'<p class="note">The engine here is simulated ({_e(plan.model)} answering from the pages you gave), not ChatGPT, '
        "Perplexity or Google: the numbers say how this engine responds to your page and to each rewrite. In C-SEO Bench "
        "(Puerto et al., 2025) most content-rewriting strategies were largely ineffective and moving up in the ranking "
        "mattered more; read any gain below with that in mind.</p></div></section>"
    )


def _inputs(r: AuditResult) -> str:
    rows = []
    for i in r.plan.inputs:
        role = "your page" if i.role == "page" else "competitor"
        found = (
            f'{_e(i.title) or "(untitled)"} <span class="note">· {i.words:,} words</span>'
            if i.used
            else f'<span class="v-worse">skipped</span>: {_e(i.reason)}'
        )
        rows.append([(_e(role), ""), (f"<code>{_e(i.spec)}</code>", ""), (found, "")])
    skipped = r.plan.skipped
    note = f'<p class="note">{len(skipped)} input(s) skipped; the audit went on with the rest.</p>' if skipped else ""
    warns = "".join(f'<p class="note">{_e(w)}</p>' for w in r.plan.warnings)
    return (
        '<section id="inputs"><h2>What was audited</h2>'
        f'<p class="note">Queries: {_e(" · ".join(_query_label(q) for q in r.plan.queries))}</p>'
        + html_table(["role", "given", "what the extractor found, or why it was skipped"], rows)
        + note
        + warns
        + "</section>"
    )


def _readiness(r: AuditResult) -> str:
    if r.check is None:
        return (
            '<section id="readiness"><h2>AI readiness of your page</h2><p class="note">Not checked: '
            f"{_e(r.check_note or 'the checks did not run')}.</p></section>"
        )
    order = {"error": 0, "warning": 1, "info": 2}
    found = sorted((f for f in r.check.findings if f.severity != "pass"), key=lambda f: order.get(f.severity, 3))
    rows = [
        [
            (_severity_badge(f.severity), ""),
            (f"<code>{_e(f.id)}</code>", ""),
            (_e(f.message) + (f'<div class="ev">{_e(f.help)}</div>' if f.help else ""), ""),
        ]
        for f in found
    ]
    passed = sum(1 for f in r.check.findings if f.severity == "pass")
    table = (
        html_table(["severity", "check", "finding and what to do"], rows)
        if rows
        else '<p class="note">Nothing to fix: every check passed.</p>'
    )
    warn = "".join(f'<p class="note">{_e(w)}</p>' for w in r.check.warnings)
    return (
        '<section id="readiness"><h2>AI readiness of your page</h2>'
        '<p class="note">Static checks, no model: can AI crawlers reach the page (robots.txt per agent and role, '
        "meta robots, what each agent is served), llms.txt, structured data, and what an extractor gets out of it. "
        f"{passed} check(s) passed; the others, most severe first:</p>{table}{warn}"
        f'<details class="readiness"><summary>Every check, each AI agent, and what an extractor sees</summary>'
        f'<p class="note">Agents: {_e(r.check.agents_source)}.</p>{html_sections(r.check)}</details></section>'
    )


def _severity_badge(severity: str) -> str:
    """A check severity as the check report shows it."""
    return f'<span class="sev sev-{_e(severity)}">{_e(severity)}</span>'


def _delta_cells(e: QueryEffect | None, rates: Sequence[float]) -> list[tuple[str, str]]:
    cells = []
    for rate in rates:
        d = None if e is None else e.deltas.get(float(rate))
        cls = "num" if d is None else f"num {'up' if d > 1e-9 else 'down' if d < -1e-9 else 'flat'}"
        cells.append((_e(_num(d, signed=True)), cls))
    return cells


def _strategies(r: AuditResult) -> str:
    st, plan = r.stats, r.plan
    primary = str(st.options["metrics"][0]) if st is not None else plan.primary
    out = [
        '<section id="strategies"><h2>Strategies: does rewriting raise your page, as competitors adopt too?</h2>',
        f'<p class="note">For each strategy and share of competitors adopting it, the engine answered every query three '
        f"ways: nobody adopts (base), only those competitors adopt (rivals), and your page adopts as well (treated). "
        f"Δ = treated − rivals of your page's {_e(metric_label(primary))} (<code>{_e(primary)}</code>): what adopting "
        f"gains you, the same competitors adopting. identity changes nothing (its spread is pure noise); rank moves your "
        f"page to the top of the sources without rewriting it (classic SEO).</p>",
    ]
    if st is None:
        out.append(f'<p class="warn">No statistics: {_e(r.stats_problem)}</p>')
    else:
        n = int(st.provenance.get("n_queries") or 0)
        if n < 5:
            out.append(
                f'<p class="warn">With {n} quer{"y" if n == 1 else "ies"} no test can reach a verdict (at least 5 '
                "queries whose result changed are needed): the numbers below describe this audit, and a verdict "
                "needs more queries. Add the questions your page should answer with more --query options.</p>"
            )
        series, items = [], []
        for s in st.provenance["strategies"]:
            rows = st.rows_for(s, primary, "advantage")
            if rows.empty:
                continue
            pts = [
                (float(x["rate"]), x["estimate"], x["estimate_ci_low"], x["estimate_ci_high"], bool(x["significant"]))
                for _, x in rows.sort_values("rate").iterrows()
            ]
            series.append({"name": s, "points": pts, "identity": s == "identity"})
            cls, sentence = strategy_verdict(rows, primary)
            trend = trend_sentence(rows)
            title = (st.provenance["strategy_info"].get(s) or {}).get("title") or s
            items.append(
                f'<li><strong class="{cls}">{_e(s)}</strong> <span class="note">({_e(title)})</span>: '
                f"{_e(sentence)}{' ' + _e(trend) if trend else ''}</li>"
            )
        if any(not is_missing(pt[1]) for x in series for pt in x["points"]):
            level = st.rows_for(metric=primary)["ci_level"].iloc[0]
            out.append(
                '<div class="charts">'
                + svg_delta_chart(
                    series,
                    title=f"{primary}: what adopting gains your page",
                    y_label=f"Δ {primary} (treated − rivals)",
                    band_label=f"band: {fmt_pct(level, signed=False)} CI",
                )
                + "</div>"
            )
        out.append("<ul>" + "".join(items) + "</ul>")
        table = st.rows_for(metric=primary, comparison="advantage")
        if len(table):
            out.append(stats_table(table, st.options["correction"], omit=("metric", "comparison")))
    if r.effects:
        rates = plan.rates
        head = (
            ["strategy", "query"]
            + [f"Δ at {fmt_rate(x)} adopting" for x in rates]
            + ["your page", "retrieval rank before → with it"]
        )
        rows_html = []
        for s, effects in r.effects.items():
            for e in effects:
                cls, word = _DIRECTION.get(e.direction, ("flat", e.direction))
                ranks = f"{e.rank_before or '–'} → {e.rank_after or '–'}"
                rows_html.append(
                    [
                        (_e(s), ""),
                        (_e(_query_label(e.query)), ""),
                        *_delta_cells(e, rates),
                        (f'<span class="{cls}">{_e(word)}</span>', ""),
                        (_e(ranks), "num"),
                    ]
                )
        few = st is None or int(st.provenance.get("n_queries") or 0) < 5  # then these numbers are all there is
        out.append(
            f'<details{" open" if few else ""}><summary>Per query, every strategy</summary><p class="note">Descriptive: the mean Δ per '
            "query over seeds and samples (no test per query). Retrieval rank: your page's position among the "
            "sources the BM25 retriever showed the engine (– = not shown), before and with the strategy, nobody "
            "else adopting.</p>" + html_table(head, rows_html) + "</details>"
        )
    out.append("</section>")
    return "\n".join(out)


def _rewrite_block(t: RewriteText, *, rows: int = 18) -> str:
    lines = min(max(6, t.text.count("\n") + 2), 40) if t.text else rows
    for_query = f" for the query {_e(_query_label(t.query))}" if t.query else " (the same text for every query)"
    guards = t.guards or {}
    facts = (
        f"status {t.status}{' (' + t.reason + ')' if t.reason else ''}; produced by {t.producer or '?'}; "
        f"length ratio {_num(guards.get('length_ratio'))}, words changed {fmt_pct(guards.get('word_change'), signed=False)}"
    )
    flags = ""
    if t.fabrications:
        flags = (
            '<div class="flags"><strong>Added, not in your original — check before publishing:</strong><ul>'
            + "".join(f"<li>{_e(flag_text(k))}: {_e(', '.join(v[:10]))}</li>" for k, v in t.fabrications.items())
            + "</ul></div>"
        )
    else:
        flags = '<p class="note">No numbers, quotations, named sources or URLs were added that your original lacks.</p>'
    left, right = diff_html(t.original, t.text)
    return (
        f'<h3>Rewrite{for_query}</h3><p class="note">{_e(facts)}</p>{flags}'
        f'<textarea class="copy" readonly rows="{lines}" aria-label="rewritten page">{_e(t.text)}</textarea>'
        f'<details><summary>Changes against your original (deleted / added)</summary><div class="diff">'
        f"<div><h4>Original</h4>{left}</div><div><h4>Rewritten ({_e(t.strategy)})</h4>{right}</div></div></details>"
    )


def _rewrite(r: AuditResult) -> str:
    out = ['<section id="rewrite"><h2>Recommended rewrite of your page</h2>']
    rec = r.recommendation
    if not r.simulated:
        out.append(f'<p class="note">Not simulated: {_e(r.stats_problem or r.plan.problem)}</p></section>')
        return "".join(out)
    if rec is None:
        out.append(f'<p class="note">{_e(r.recommendation_note)}</p>')
    else:
        cls = "v-better" if rec.established else "v-mixed"
        out.append(
            f'<p><strong class="{cls}">{_e(rec.strategy)}</strong> <span class="note">({_e(rec.title)})</span>: '
            f"{_e(rec.why)}</p>"
        )
        if any(t.query for t in rec.rewrites):
            out.append(
                '<p class="note">This strategy tailors the page to one query: each query got its own text. Publish the '
                "one for the query that matters most to you.</p>"
            )
        for t in rec.rewrites:
            out.append(_rewrite_block(t))
        helped = [e for e in rec.effects if e.direction == "higher"]
        hurt = [e for e in rec.effects if e.direction == "lower"]
        out.append(
            f"<h3>Which queries it helped and hurt</h3><p>Helped on {len(helped)}, hurt on {len(hurt)}, of "
            f"{len(rec.effects)} queries"
            + (f"; hurt: {_e(', '.join(_query_label(e.query) for e in hurt))}" if hurt else "")
            + ".</p>"
        )
        rows = []
        for e in rec.effects:
            cls, word = _DIRECTION.get(e.direction, ("flat", e.direction))
            rows.append(
                [
                    (_e(_query_label(e.query)), ""),
                    *_delta_cells(e, r.plan.rates),
                    (f'<span class="{cls}">{_e(word)}</span>', ""),
                    (_e(f"{e.rank_before or '–'} → {e.rank_after or '–'}"), "num"),
                ]
            )
        out.append(
            html_table(
                ["query"]
                + [f"Δ at {fmt_rate(x)} adopting" for x in r.plan.rates]
                + ["", "retrieval rank before → with it"],
                rows,
            )
        )
    others = [(s, ts) for s, ts in r.rewrites.items() if ts and (rec is None or s != rec.strategy)]
    if others:
        out.append("<h3>The other strategies' rewrites</h3>")
        for s, ts in others:
            flagged = sum(1 for t in ts if t.fabrications)
            failed = sum(1 for t in ts if t.status == "failed")
            out.append(
                f"<details><summary>{_e(s)}: {len(ts)} text(s)"
                + (f", {failed} failed the guards (your original was used)" if failed else "")
                + (f", {flagged} with added facts to check" if flagged else "")
                + "</summary>"
                + "".join(_rewrite_block(t) for t in ts)
                + "</details>"
            )
    out.append("</section>")
    return "\n".join(out)


def _competition_table(q: QueryCompetition) -> str:
    measured = [
        (name, attr)
        for name, attr in (("selection", "selection"), ("relevance", "relevance"), ("PAWC", "pawc"), ("cited", "cited"))
        if any(getattr(s, attr) is not None for s in q.sources)
    ]
    after_attr = "selection_after" if q.metric == "selection" else "pawc_after"
    after = any(getattr(s, after_attr) is not None for s in q.sources)
    head = (
        ["#", "page", "retrieval rank"]
        + [n for n, _ in measured]
        + ([f"{q.metric} after the rewrite"] if after else [])
    )
    rows, classes = [], []
    for n, s in enumerate(q.sources):
        name = f"{_e(s.title) or '(untitled)'}<br><code>{_e(s.url)}</code>" + (
            " <strong>← your page</strong>" if s.is_page else ""
        )
        shown = str(s.retrieval_rank) if s.shown else f"{s.retrieval_rank} (not shown)"
        cells = [(_e(n + 1), "num"), (name, ""), (_e(shown), "num")]
        cells += [(_e(_num(getattr(s, attr))), "num") for _, attr in measured]
        if after:
            cells.append((_e(_num(getattr(s, after_attr))), "num"))
        rows.append(cells)
        classes.append("mine" if s.is_page else "")
    return html_table(head, rows, classes)


def _competitors(r: AuditResult) -> str:
    if not r.competition:
        return ""
    rec = r.recommendation.strategy if r.recommendation else None
    metric = r.competition[0].metric
    out = [
        '<section id="competitors"><h2>Who takes the engine\'s attention, per query</h2>',
        f'<p class="note">Every page you gave, best first by {_e(metric_label(metric))}, in the base condition (nobody '
        "rewrote anything; first seed). Retrieval rank: the BM25 retriever's order over all the pages (the engine sees "
        f"the top {r.plan.k}). Selection: share of the engine's next-token probability, where it starts citing, that "
        "goes to the page's number; relevance: its share of query likelihood; PAWC and cited: from the engine's sampled "
        "answers (– where not measured)"
        + (
            f". After the rewrite: the same with your page rewritten by {_e(rec)}, no competitor adopting"
            if rec
            else ""
        )
        + ".</p>",
    ]
    for q in r.competition:
        page = next((s for s in q.sources if s.is_page), None)
        if q.ahead:
            lead = (
                "Ahead of your page: "
                + ", ".join(
                    f"{s.title or s.url} ({_num(s.selection if q.metric == 'selection' else s.pawc)})" for s in q.ahead
                )
                + "."
            )
        elif page is not None and page.shown:
            lead = "Your page leads this query."
        else:
            lead = "Your page was not among the sources shown to the engine."
        out.append(f"<h3>{_e(_query_label(q.query))}</h3><p>{_e(lead)}</p>" + _competition_table(q))
        if q.answer is not None and q.answer.samples:
            pos = q.answer.sources.index(page.doc_id) if page is not None and page.doc_id in q.answer.sources else None
            out.append(
                "<details><summary>The engine's answer (base condition)</summary>"
                + answer_html(q.answer, pos, "Base: nobody rewrote anything")
                + "</details>"
            )
    out.append("</section>")
    return "\n".join(out)


def _method(r: AuditResult) -> str:
    plan = r.plan
    items: list[tuple[str, str]] = [
        (
            "audit",
            f"key {plan.key}; your page, {len(plan.used_competitors)} competitor(s), {len(plan.queries)} quer"
            f"{'y' if len(plan.queries) == 1 else 'ies'}; generated {r.generated_at} in {r.seconds:.0f} s",
        ),
        ("command", r.command or "(library call)"),
    ]
    if r.simulated:
        items += [
            (
                "run",
                f"{r.run_id} ({r.run_status}; {r.planned_cells} cells: {r.computed_cells} computed now, "
                f"{r.resumed_cells} already done, {r.failed_cells} failed) in {r.run_dir}. The same command resumes this "
                "run; `geoaudit stats` and `geoaudit report` read it too.",
            ),
            (
                "engine",
                f"{plan.model}; stages {', '.join(plan.stages)}; primary metric {plan.primary}, declared before the run",
            ),
            (
                "rewrites",
                f"{plan.rewrite_model} for LLM strategies; rule strategies are deterministic transforms of the page's "
                "own text (no model)",
            ),
            (
                "sources",
                f"up to k = {plan.k} of the {len(plan.used_competitors) + 1} pages, picked and ordered by BM25 over "
                f"their full text; the engine reads the first {plan.source_budget} characters of each",
            ),
            (
                "strategies",
                "; ".join(f"{s} v{(r.strategy_info.get(s) or {}).get('version', '?')}" for s in plan.strategies),
            ),
            (
                "adopter rates",
                ", ".join(fmt_rate(x) for x in plan.rates) + " of the competitors adopt the same strategy "
                "(nested sets, drawn per seed)",
            ),
            (
                "budget",
                f"{plan.budget}: {plan.seeds} seed(s) x {plan.samples} sample(s); answers sampled in "
                f"{'every condition' if plan.answers == 'all' else 'the base condition (engine calibration) only'}",
            ),
            (
                "planned before the run",
                f"at most {plan.total_calls:,} model calls, ~{plan.prompt_tokens:,} prompt + "
                f"{plan.completion_tokens:,} completion tokens, cost "
                + (f"≤ ${plan.cost:.4f}" if plan.cost is not None else "unknown")
                + f" ({plan.cost_note})",
            ),
            ("LLM usage (this run, all invocations)", r.run_usage or "not recorded"),
        ]
    if r.stats is not None:
        items += [("statistics", " ".join(r.stats.method_lines()))]
    if r.check is not None:
        o = r.check.options
        items.append(
            (
                "readiness checks",
                f"{o.get('requests', '?')} HTTP request(s) as {o.get('user_agent', '')}, at least "
                f"{o.get('delay', '?')} s apart per host; agents: {r.check.agents_source}",
            )
        )
    items += [(f"note {n + 1}", x) for n, x in enumerate(r.notes)]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<section id="method"><h2>How this was measured</h2><dl class="meta">{dl}</dl></section>'


# ------------------------------------------------------------------------------------------ the page


def render_audit_html(result: AuditResult) -> str:
    """The audit report as one self-contained HTML string (no scripts, no external resources)."""
    plan = result.plan
    title = plan.page.title or plan.page.spec
    nav = [("summary", "summary"), ("inputs", "inputs"), ("readiness", "AI readiness")]
    if result.stats is not None:
        nav.append(("engine", "engine calibration"))
    if result.simulated:
        nav.append(("strategies", "strategies"))
    nav.append(("rewrite", "recommended rewrite"))
    if result.competition:
        nav.append(("competitors", "competitors"))
    nav.append(("method", "how this was measured"))
    body = [
        f"<header><h1>Audit: {_e(title)}</h1>",
        f'<p class="sub">{_e(plan.page.url or plan.page.spec)} · {len(plan.queries)} quer{"y" if len(plan.queries) == 1 else "ies"} · '
        f"{len(plan.used_competitors)} competitor(s) · engine {_e(plan.model)} · {_e(result.generated_at)}</p>",
        '<nav class="note">Contents: ' + " · ".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in nav) + "</nav></header>",
        _summary(result),
        _inputs(result),
        _readiness(result),
        engine_section(result.stats) if result.stats is not None else "",
        _strategies(result) if result.simulated else "",
        _rewrite(result),
        _competitors(result),
        _method(result),
        '<footer class="note"><p>Generated by geoaudit audit. All page, query, rewrite and answer text above is quoted as '
        "data; nothing in it was executed.</p></footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(AUDIT_CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Audit: {_e(title)} — geoaudit</title>\n<style>{REPORT_CSS}{SEVERITY_CSS}{_CSS}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_audit_report(result: AuditResult, out_dir: Path | str) -> Path:
    """Write ``out_dir/index.html`` atomically; returns its path.

    Raises:
        InputError: ``out_dir`` exists and is not a directory.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"{out} exists and is not a directory", hint="give a directory for the report, e.g. -o reports/audit/"
        )
    return atomic_write_text(out / "index.html", render_audit_html(result))
