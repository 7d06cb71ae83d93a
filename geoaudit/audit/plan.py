"""Planning an audit: the bench it builds, the strategies it runs, and what it will call and cost.

Nothing here calls a model: :func:`plan_audit` crawls the pages (no LLM), writes the bench and
sizes the run, so ``geoaudit audit --dry-run`` can show the plan and stop before spending anything.

The bench has one item per query; every item holds your page (the target) and every usable
competitor. The engine picks and orders the sources with its BM25 retriever (``order="retrieved"``),
so a rewrite that changes how well your page matches the query changes where it is shown, and the
page's retrieval rank is recorded per row (``target_rank``). Its path is fixed by the inputs (your
page, the competitors, the queries, in order), so the same command builds the same bench and, when
the pages have not changed, resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoaudit.audit.inputs import Gathered, gather_inputs
from geoaudit.audit.model import CHARS_PER_TOKEN, AuditInput, AuditPlan, Stage
from geoaudit.config import EMBEDDED_MODEL, Settings
from geoaudit.documents import Document, atomic_write_text
from geoaudit.engine import EngineConfig, is_embedded, load_answer_prompt
from geoaudit.errors import ConfigError, InputError
from geoaudit.llm import Gateway, import_litellm
from geoaudit.options import AUDIT_BUDGETS, AUDIT_LLM_STRATEGIES, AUDIT_RUNGS, AuditOptions
from geoaudit.rewrite import DEFAULT_CHUNK_CHARS, plan_chunks
from geoaudit.simulate import SimulationConfig, planned_cell_count
from geoaudit.strategies import Strategy, StrategyRegistry, load_strategies

#: Embedded-model defaults: its speed is set by the prompt length (k sources x this budget).
EMBEDDED_SOURCE_BUDGET = 600
EMBEDDED_MAX_TOKENS = 100
REMOTE_SOURCE_BUDGET = 1500
REMOTE_MAX_TOKENS = 200


def clean_queries(queries: Sequence[str]) -> tuple[str, ...]:
    """The queries with whitespace collapsed, blanks and duplicates dropped, order kept.

    Raises:
        InputError: no query is left.
    """
    out = tuple(dict.fromkeys(" ".join(q.split()) for q in queries if q and q.strip()))
    if not out:
        raise InputError(
            "no query given", hint='give the questions your page should answer: --query "..." (repeatable)'
        )
    return out


def audit_key(page: str, competitors: Sequence[str], queries: Sequence[str]) -> str:
    """A short id of the audit's inputs: the same page, competitors and queries give the same key."""
    blob = json.dumps(
        {
            "page": page.strip(),
            "competitors": [c.strip() for c in competitors],
            "queries": list(clean_queries(queries)),
        },
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:10]


def resolve_model(settings: Settings) -> tuple[str, str]:
    """(engine model, rewrite model) as the gateway will name them."""
    model = EMBEDDED_MODEL if settings.model == "smollm2" else settings.model
    rewrite = settings.rewrite_model or model
    return model, EMBEDDED_MODEL if rewrite == "smollm2" else rewrite


def default_strategies(registry: StrategyRegistry, model: str) -> list[Strategy]:
    """The strategies that work on ``model``: the controls (identity, rank) and every deterministic
    strategy that changes text; on a model other than the embedded one also
    :data:`~geoaudit.options.AUDIT_LLM_STRATEGIES` (SmolLM2-135M's rewrites mostly fail the guards)."""
    out = [s for s in registry.all() if s.name in ("identity", "rank") or (s.kind == "rule" and s.changes_text)]
    if not is_embedded(model):
        out += [registry.get(n) for n in AUDIT_LLM_STRATEGIES if n in registry]
    return out


def choose_strategies(settings: Settings, model: str, names: Sequence[str]) -> list[Strategy]:
    """``names`` resolved (``all`` allowed), or :func:`default_strategies` when empty.

    Raises:
        UnknownStrategyError: a name no strategy file defines. ConfigError: a bad strategy file.
    """
    registry = load_strategies(settings=settings)
    if names:
        return registry.resolve(list(names))
    return default_strategies(registry, model)


def check_models(settings: Settings, models: Sequence[str]) -> None:
    """Fail now, before any fetch, on a model no backend can route (no call is made).

    Raises:
        UnknownModelError / ConfigError: see :meth:`geoaudit.llm.Gateway.check_model`.
    """
    for m in dict.fromkeys(models):
        with Gateway(settings.replace(model=m, cache=False)) as gw:
            gw.check_model()


def bench_rows(
    queries: Sequence[str],
    page: Document,
    competitors: Sequence[Document],
    page_url: str,
    competitor_urls: Sequence[str],
) -> list[dict[str, Any]]:
    """One geoaudit-JSONL bench row per query: your page first (the target), then the competitors.

    The order only matters to the record: the engine retrieves and orders the sources itself.
    """
    docs = [{"url": page_url, "title": page.title, "text": page.text}]
    docs += [{"url": u, "title": d.title, "text": d.text} for d, u in zip(competitors, competitor_urls, strict=True)]
    return [
        {"id": f"q{i + 1}", "query": q, "domain": "", "tags": [], "target": 0, "documents": docs}
        for i, q in enumerate(queries)
    ]


def _budget_rung(budget: str, estimate: Any) -> tuple[int, int]:
    """(seeds, samples) of a named budget, or the largest rung whose planned calls fit a number."""
    if budget in AUDIT_BUDGETS:
        return AUDIT_BUDGETS[budget]
    limit = int(budget)
    fitting = [rung for rung in AUDIT_RUNGS if sum(estimate(*rung)[0].values()) <= limit]
    if not fitting:
        need = sum(estimate(*AUDIT_RUNGS[0])[0].values())
        raise ConfigError(
            f"a budget of {limit:,} model calls is below the smallest audit of these inputs ({need:,} calls at most)",
            hint="raise --budget, or use fewer queries, competitors or strategies",
        )
    return fitting[-1]


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for the tokens on ``model`` from litellm's price map (offline); 0 for the embedded model,
    None when litellm has no price for it."""
    if not prompt_tokens and not completion_tokens:
        return 0.0
    if is_embedded(model):
        return 0.0
    litellm = import_litellm()
    entry = litellm.model_cost.get(model)
    if entry is not None and "input_cost_per_token" not in entry and "output_cost_per_token" not in entry:
        # litellm's Router registers every unpriced deployment with an empty entry, which
        # cost_per_token then prices at 0: that is "unknown", not "free".
        return None
    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    except Exception:  # litellm raises its own "not mapped" errors for unpriced models and endpoints
        return None
    return float(p) + float(c)


def estimate_calls(
    docs: Sequence[Document],
    queries: Sequence[str],
    strategies: Sequence[Strategy],
    rates: Sequence[float],
    seeds: int,
    samples: int,
    *,
    engine: EngineConfig,
    model: str,
    answers: str,
) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Upper bounds of the model calls by purpose, and (prompt, completion) tokens per purpose.

    Per query and seed the simulation answers 1 base condition plus, per strategy, rivals and treated
    at every rate (rivals at rate 0 is the base answer): ``n_cond = 1 + S (2R - [0 in rates])``.
    Selection readings: one per condition; sampled answers: ``samples`` per answered condition;
    relevance readings: one per (query, distinct page text) with at most one rewritten text per
    page and text-changing strategy; LLM rewrites: one call per chunk of every page and LLM strategy
    (per query when the strategy reads the query). Identical requests are made once, so these are
    upper bounds.
    """
    stages = engine.resolve_stages(model)
    n_items, n_docs = len(queries), len(docs)
    k = min(engine.k, n_docs)
    n_rates = len(rates)
    n_cond = 1 + len(strategies) * (2 * n_rates - (1 if 0.0 in rates else 0))
    text_strategies = [s for s in strategies if s.changes_text]
    budget = engine.source_budget_chars or 10**9
    shown = [min(len(d.text), budget) + len(d.title) + 24 for d in docs]
    avg_shown = sum(shown) / max(1, len(shown))
    prompt = load_answer_prompt(engine.resolve_prompt_version(model))
    fixed = len(prompt.template) + len(prompt.system) + len(prompt.example_user) + len(prompt.example_assistant)
    avg_query = sum(len(q) for q in queries) / max(1, n_items)
    answer_prompt = int((fixed + 2 * avg_query + k * avg_shown) / CHARS_PER_TOKEN)

    calls: dict[str, int] = {"rewrite": 0, "relevance": 0, "selection": 0, "answer": 0}
    tokens: dict[str, tuple[int, int]] = {}
    for s in strategies:
        if not s.needs_model:
            continue
        per_doc = [
            plan_chunks(d.text, max_chars=DEFAULT_CHUNK_CHARS, keep_structure=s.constraints.keep_structure)
            for d in docs
        ]
        times = n_items if s.query_aware else 1
        n = sum(1 for chunks in per_doc for c in chunks if c.rewritable) * times
        chars = sum(len(c.text) for chunks in per_doc for c in chunks if c.rewritable) * times
        calls["rewrite"] += n
        p, c = tokens.get("rewrite", (0, 0))
        growth = min(max(s.constraints.max_length_ratio, 1.0), 2.5)
        tokens["rewrite"] = (
            p + int((chars + n * (len(s.system) + len(s.user))) / CHARS_PER_TOKEN),
            c + int(chars * growth / CHARS_PER_TOKEN),
        )
    if "relevance" in stages:
        calls["relevance"] = n_items * n_docs * (1 + len(text_strategies))
        tokens["relevance"] = (int(calls["relevance"] * (avg_shown + avg_query + 40) / CHARS_PER_TOKEN), 0)
    if "selection" in stages:
        calls["selection"] = n_items * seeds * n_cond
        tokens["selection"] = (calls["selection"] * (answer_prompt + 20), calls["selection"])
    if "answer" in stages:
        answered = n_cond if answers == "all" else 1
        calls["answer"] = n_items * seeds * samples * answered
        tokens["answer"] = (calls["answer"] * answer_prompt, calls["answer"] * engine.max_tokens)
    return calls, tokens


def engine_config(plan: AuditPlan) -> EngineConfig:
    """The engine every condition of the audit is answered with."""
    return EngineConfig(
        k=plan.k,
        order="retrieved",
        samples=plan.samples,
        max_tokens=plan.max_tokens,
        source_budget_chars=plan.source_budget,
    )


def bench_path(settings: Settings, key: str) -> Path:
    return settings.data_dir / "audits" / f"audit-{key}.jsonl"


def plan_audit(
    page: str,
    queries: Sequence[str],
    competitors: Sequence[str],
    *,
    settings: Settings,
    options: AuditOptions | None = None,
    progress: Stage | None = None,
) -> AuditPlan:
    """Fetch the inputs, build the bench and size the run; call no model.

    Args:
        page: your page, an http(s) URL or a local file (.html, .md, .txt).
        queries: the questions your page should be the answer to (one bench item each).
        competitors: competitor pages, URLs or local files (a directory or glob: every file in it).
        settings: model, endpoints, data directory (the bench goes to ``<data dir>/audits/``).
        options: strategies, rates, budget, fetching; see :class:`~geoaudit.options.AuditOptions`.
        progress: ``progress(stage, info)`` while crawling.

    Returns the plan; when the simulation cannot run (your page unusable, no usable competitor)
    ``plan.problem`` says why and nothing is sized.

    Raises:
        InputError: no query, no competitor given, or your page is not a URL or an existing file.
        ConfigError / UnknownStrategyError: bad options or strategy names (before any fetch).
    """
    o = options or AuditOptions()
    qs = clean_queries(queries)
    if not [c for c in competitors if c.strip()]:
        raise InputError("no competitor given", hint="add --competitor URL (repeatable) or --competitors FILE")
    model, rewrite_model = resolve_model(settings)
    embedded = is_embedded(model)
    strategies = choose_strategies(settings, model, o.strategies)
    check_models(settings, [model] + ([rewrite_model] if any(s.needs_model for s in strategies) else []))
    # The same rules a simulation resolves its primary metric and answers by.
    rules = SimulationConfig(bench="audit", answers=o.answers)
    answers = rules.answers_mode(model)
    if answers == "base" and not embedded:
        raise ConfigError(
            "answers=base needs the embedded model, whose readings carry the verdict",
            hint="use answers=all (the default) on other models",
        )
    rates = tuple(sorted({float(r) for r in o.rates}))
    source_budget = o.source_budget or (EMBEDDED_SOURCE_BUDGET if embedded else REMOTE_SOURCE_BUDGET)
    max_tokens = o.max_tokens or (EMBEDDED_MAX_TOKENS if embedded else REMOTE_MAX_TOKENS)
    primary = rules.primary_metric(model)
    key = audit_key(page, competitors, qs)

    got: Gathered = gather_inputs(page, competitors, settings=settings, options=o, progress=progress)
    base: dict[str, Any] = dict(
        key=key,
        page=got.page,
        competitors=tuple(got.competitors),
        queries=qs,
        model=model,
        rewrite_model=rewrite_model,
        embedded=embedded,
        strategies=tuple(s.name for s in strategies),
        rates=rates,
        seeds=0,
        samples=0,
        budget=o.budget,
        k=0,
        source_budget=source_budget,
        max_tokens=max_tokens,
        answers=answers,
        stages=tuple(rules.engine.resolve_stages(model)),
        primary=primary,
        warnings=tuple(got.warnings),
    )
    if got.page_doc is None:
        return AuditPlan(**base, problem=f"your page could not be used: {got.page.reason}")
    if not got.competitor_docs:
        return AuditPlan(**base, problem="no competitor page could be used (each one's reason is listed with it)")

    used = [c for c in got.competitors if c.used]
    docs = [got.page_doc, *got.competitor_docs]
    k = min(o.k, len(docs))
    engine = EngineConfig(k=k, order="retrieved", max_tokens=max_tokens, source_budget_chars=source_budget)

    def estimate(seeds: int, samples: int) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
        return estimate_calls(docs, qs, strategies, rates, seeds, samples, engine=engine, model=model, answers=answers)

    seeds, samples = _budget_rung(o.budget, estimate)
    seeds, samples = o.seeds or seeds, o.samples or samples
    calls, tokens = estimate(seeds, samples)
    engine_tokens = [tokens.get(p, (0, 0)) for p in ("relevance", "selection", "answer")]
    ep, ec = sum(t[0] for t in engine_tokens), sum(t[1] for t in engine_tokens)
    rp, rc = tokens.get("rewrite", (0, 0))
    engine_cost, rewrite_cost = price(model, ep, ec), price(rewrite_model, rp, rc)
    unpriced = [m for m, c in ((model, engine_cost), (rewrite_model, rewrite_cost)) if c is None]
    cost = None if unpriced else (engine_cost or 0.0) + (rewrite_cost or 0.0)
    if unpriced:
        note = f"litellm has no price for {', '.join(dict.fromkeys(unpriced))}"
    elif embedded and (not calls["rewrite"] or is_embedded(rewrite_model)):
        note = "the embedded model runs on this machine: no charge"
    else:
        note = "litellm's offline price map, at the token estimate above"

    path = bench_path(settings, key)
    settings.ensure_data_dir()
    rows = bench_rows(qs, got.page_doc, got.competitor_docs, got.page.url, [c.url for c in used])
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    # The page and each competitor as the bench names them (the engine's source ids).
    from geoaudit.bench import load_bench

    items = load_bench(path, k=k, settings=settings).items
    ids = [d.id for d in items[0].documents]
    page_in = _with_id(got.page, ids[0])
    comps = [_with_id(c, ids[1 + used.index(c)]) if c.used else c for c in got.competitors]
    return AuditPlan(
        **{**base, "page": page_in, "competitors": tuple(comps), "seeds": seeds, "samples": samples, "k": k},
        cells=planned_cell_count(len(qs), seeds, len(strategies), len(rates)),
        calls=calls,
        prompt_tokens=ep + rp,
        completion_tokens=ec + rc,
        cost=cost,
        cost_note=note,
        bench=path,
        documents=tuple(docs),
    )


def _with_id(item: AuditInput, doc_id: str) -> AuditInput:
    from dataclasses import replace

    return replace(item, doc_id=doc_id)
