"""What an audit's run says to the creator: per-query effects, the recommendation, who wins each query.

Pure reading of a finished (or partial) run: its result rows, stored answers and rewrites, and the
statistics of :func:`geoaudit.analysis.run_stats`. Per-query numbers are descriptive (the unit of
every test is the query, so one query has no test of its own); verdicts come from the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from geoaudit.audit.model import QueryCompetition, QueryEffect, Recommendation, RewriteText, SourceShare
from geoaudit.bench import BenchItem
from geoaudit.metrics import directions, mean_source_metrics
from geoaudit.report import fabrications, metric_label
from geoaudit.retrieval import BM25Retriever
from geoaudit.strategies import Strategy

if TYPE_CHECKING:
    import pandas as pd

    from geoaudit.analysis import StatsResult
    from geoaudit.engine import Answer
    from geoaudit.runs import Run

#: Differences smaller than this are "no change" (float noise of identical readings).
TOLERANCE = 1e-9


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def query_effects(rows: pd.DataFrame, strategy: str, primary: str, queries: Mapping[str, str]) -> list[QueryEffect]:
    """Per query: the mean advantage Δ of ``primary`` at each adopter rate, and the retrieval rank before/after.

    Δ = mean over seeds and samples of the treated rows − mean of the rivals rows (same item, rate):
    you adopt vs you do not, the same competitors adopting.
    """
    higher = directions().get(primary, True)
    sub = rows[rows["strategy"] == strategy]
    out: list[QueryEffect] = []
    if sub.empty or primary not in rows:
        return out
    treated = sub[sub["condition"] == "treated"].groupby(["item", "rate"])[primary].mean()
    rivals = sub[sub["condition"] == "rivals"].groupby(["item", "rate"])[primary].mean()
    base = rows[rows["condition"] == "base"]
    for item in queries:
        deltas: dict[float, float] = {}
        for (it, rate), t in treated.items():
            if it != item or (it, rate) not in rivals.index:
                continue
            d = _num(t - rivals[(it, rate)])
            if d is not None:
                deltas[float(rate)] = d
        if not deltas:
            continue
        good = [d if higher else -d for d in deltas.values()]
        ups, downs = any(g > TOLERANCE for g in good), any(g < -TOLERANCE for g in good)
        direction = "mixed" if ups and downs else "higher" if ups else "lower" if downs else "no change"
        b = base[base["item"] == item].sort_values(["seed", "sample"])
        t0 = sub[(sub["item"] == item) & (sub["condition"] == "treated")].sort_values(["rate", "seed", "sample"])
        before = _num(b["target_rank"].iloc[0]) if len(b) else None
        after = _num(t0["target_rank"].iloc[0]) if len(t0) else None
        out.append(
            QueryEffect(
                item,
                queries[item],
                dict(sorted(deltas.items())),
                direction,
                int(before) if before else None,
                int(after) if after else None,
            )
        )
    return out


def page_rewrites(
    run_rewrites: Sequence[Mapping[str, Any]], strategy: str, queries: Mapping[str, str], query_aware: bool
) -> list[RewriteText]:
    """The stored rewrites of your page with ``strategy``: one text when the strategy ignores the query,
    one per query otherwise (identical texts merged)."""
    by_text: dict[str, RewriteText] = {}
    for rec in run_rewrites:
        if rec["strategy"] != strategy or not rec["is_target"]:
            continue
        item = str(rec["item"])
        text = str(rec["rewritten"] or "")
        if text in by_text:
            prev = by_text[text]
            if item not in prev.items:
                by_text[text] = RewriteText(**{**prev.__dict__, "items": (*prev.items, item)})
            continue
        by_text[text] = RewriteText(
            strategy=strategy,
            query=queries.get(item, "") if query_aware else "",
            items=(item,),
            text=text,
            original=str(rec["original"] or ""),
            status=str(rec["status"]),
            reason=str(rec["reason"] or ""),
            producer=str(rec["model"] or ""),
            fabrications=fabrications(rec),
            guards=dict(rec.get("guards") or {}),
        )
    order = {item: i for i, item in enumerate(queries)}
    return sorted(by_text.values(), key=lambda r: min(order.get(i, 10**6) for i in r.items))


def recommend(
    stats: StatsResult | None,
    effects: Mapping[str, Sequence[QueryEffect]],
    rewrites: Mapping[str, Sequence[RewriteText]],
    strategies: Sequence[Strategy],
    primary: str,
) -> tuple[Recommendation | None, str]:
    """The content strategy to recommend, or None, with a sentence saying what it rests on.

    Candidates are the strategies that change your page's text (not the identity control, not rank,
    which moves a page without rewriting it) and produced at least one usable rewrite of it.
    Ranked by: a significant gain and no significant loss in the run's statistics ("established"),
    then the mean of the advantage estimates over the adopter rates (the per-query means when there
    are no statistics). A strategy with a significant loss is never recommended; one without an
    established gain only when its estimate is a gain and it helped on more queries than it hurt.
    """
    higher = directions().get(primary, True)
    label = metric_label(primary)
    scored: list[tuple[bool, float, Strategy]] = []
    rejected: list[tuple[float, Strategy]] = []
    harmful: list[str] = []
    for s in strategies:
        if not s.changes_text or s.name == "identity":
            continue
        texts = [r for r in rewrites.get(s.name, []) if r.status != "failed"]
        if not texts:
            continue
        established, worse, est = False, False, math.nan
        if stats is not None:
            rows = stats.rows_for(s.name, primary, "advantage")
            verdicts = set(rows["verdict"])
            worse = "worse" in verdicts
            established = "better" in verdicts and not worse
            vals = [v for v in (_num(x) for x in rows["estimate"]) if v is not None]
            est = sum(vals) / len(vals) if vals else math.nan
        if math.isnan(est):
            vals = [d for e in effects.get(s.name, []) for d in e.deltas.values()]
            est = sum(vals) / len(vals) if vals else math.nan
        if math.isnan(est):
            continue
        est = est if higher else -est
        if worse:
            harmful.append(s.name)
            continue
        helped = sum(1 for e in effects.get(s.name, []) if e.direction == "higher")
        hurt = sum(1 for e in effects.get(s.name, []) if e.direction == "lower")
        # Without a verdict, a candidate must at least help on more queries than it hurts.
        if established or (est > TOLERANCE and helped > hurt):
            scored.append((established, est, s))
        else:
            rejected.append((est, s))
    scored.sort(key=lambda x: (not x[0], -x[1]))
    if not scored:
        top = max(rejected, key=lambda x: x[0]) if rejected else None
        best = (
            f" (largest estimate: {top[1].name}, {top[0]:+.3g}, helping on no more queries than it hurt)" if top else ""
        )
        lowered = f" {', '.join(harmful)} significantly lowered it." if harmful else ""
        return None, (
            f"No rewrite is recommended: no content strategy raised your page's {label} in this audit{best}."
            f"{lowered} Keep the page as it is, or add queries and competitors for a more sensitive audit."
        )
    established, est, s = scored[0]
    if established:
        why = (
            f"{s.name} significantly raised your page's {label} against the competitors (adjusted for every test "
            "of the audit) and lowered it significantly at no adopter rate."
        )
    else:
        why = (
            f"{s.name} has the largest estimated gain in your page's {label} ({est:+.3g} on average over the adopter "
            "rates) and helped on more queries than it hurt, but the statistics do not establish it: treat it as the "
            "best candidate, not a proven improvement."
        )
    rec = Recommendation(
        s.name, s.title, established, why, est, tuple(rewrites.get(s.name, [])), tuple(effects.get(s.name, []))
    )
    return rec, why


def _shares(answer: Answer | None) -> dict[str, dict[str, float | None]]:
    """Per shown source id: the answer's readings and, when it has samples, PAWC and cited."""
    out: dict[str, dict[str, float | None]] = {}
    if answer is None:
        return out
    r = answer.readings
    metrics = mean_source_metrics(answer) if answer.samples else None
    for i, sid in enumerate(answer.sources):
        out[sid] = {
            "selection": r.selection[i] if r is not None and r.selection is not None else None,
            "relevance": r.relevance[i] if r is not None and r.relevance is not None else None,
            "pawc": _num(metrics[i]["pawc"]) if metrics else None,
            "cited": _num(metrics[i]["cited"]) if metrics else None,
        }
    return out


def _by_selection(s: SourceShare) -> float:
    return -1.0 if s.selection is None else float(s.selection)


def _by_pawc(s: SourceShare) -> float:
    return -1.0 if s.pawc is None else float(s.pawc)


def _answer_of(run: Run, rows: pd.DataFrame) -> Answer | None:
    if rows.empty:
        return None
    first = rows.sort_values(["seed", "sample"]).iloc[0]
    return run.answer(str(first["answer_id"])) if isinstance(first["answer_id"], str) else None


def competition(
    run: Run,
    rows: pd.DataFrame,
    items: Sequence[BenchItem],
    primary: str,
    recommended: str | None,
) -> list[QueryCompetition]:
    """Per query, every candidate page with its retrieval rank and the engine's readings in the base
    condition (first seed), best first, and the competitors ahead of your page.

    Ranked by the selection reading where the engine measured it, else by PAWC. "After" columns:
    the same with the recommended rewrite of your page, nobody else adopting (lowest adopter rate).
    """
    metric = "selection" if primary in ("selection", "relevance") else "pawc"
    out: list[QueryCompetition] = []
    for item in items:
        r = rows[rows["item"] == item.id]
        base = _answer_of(run, r[r["condition"] == "base"])
        after = None
        if recommended:
            t = r[(r["strategy"] == recommended) & (r["condition"] == "treated")]
            if not t.empty:
                after = _answer_of(run, t[t["rate"] == t["rate"].min()])
        now, then = _shares(base), _shares(after)
        if metric == "selection" and not any(v.get("selection") is not None for v in now.values()):
            metric = "pawc"
        ranked = BM25Retriever().rank(item.query, list(item.documents))
        rank_of = {item.documents[x.index].id: n + 1 for n, x in enumerate(ranked)}
        sources = []
        for pos, doc in enumerate(item.documents):
            m, a = now.get(doc.id, {}), then.get(doc.id, {})
            sources.append(
                SourceShare(
                    doc_id=doc.id,
                    url=doc.url,
                    title=doc.title,
                    is_page=pos == item.target,
                    retrieval_rank=rank_of.get(doc.id, len(item.documents)),
                    shown=doc.id in now,
                    selection=m.get("selection"),
                    relevance=m.get("relevance"),
                    pawc=m.get("pawc"),
                    cited=m.get("cited"),
                    selection_after=a.get("selection"),
                    pawc_after=a.get("pawc"),
                )
            )

        value = _by_selection if metric == "selection" else _by_pawc
        sources.sort(key=lambda s: (-value(s), s.retrieval_rank))
        page = next(s for s in sources if s.is_page)
        ahead = tuple(s for s in sources if not s.is_page and s.shown and value(s) > value(page) + TOLERANCE)
        out.append(QueryCompetition(item.id, item.query, metric, tuple(sources), ahead, base))
    return out
