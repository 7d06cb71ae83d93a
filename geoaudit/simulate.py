"""Competitive GEO simulations: does a strategy still help when competitors adopt it too?

The protocol (C-SEO Bench's question, on any bench). For each item, strategy S, adopter rate a and
seed:

* competitors C_a: ``round(a * (k - 1))`` of the non-target shown documents adopt S. They are the
  first of a seeded permutation of the non-target documents, so adopter sets are *nested* across
  rates (the 25 % adopters are among the 50 % adopters) and shared by all strategies;
* three conditions, each answered by the engine with ``n`` samples:
  ``base`` (nobody adopts; shared by every S and a, computed once per item and seed),
  ``rivals`` (only C_a adopt; at a = 0 this *is* the base condition and reuses it),
  ``treated`` (the target and C_a adopt);
* per item, advantage = treated − rivals ("should I adopt, given rivals did?") and
  net = treated − base ("where does the whole market end up?"), for every metric of
  :mod:`geoaudit.metrics`, plus C-SEO Bench's Δrank (:func:`geoaudit.metrics.delta_rank`), stored on
  treated rows as ``delta_rank`` (vs base: the paper-compatible value; C-SEO's unilateral mode is
  a = 0 and its full-adoption mode a = 1) and ``delta_rank_adv`` (vs rivals).

Sampling: every condition draws its answers with a seed of its own, derived from (run seed, item,
condition, strategy, rate). ``identity`` therefore re-samples unchanged documents: an honest A/A
control whose spread is pure sampling noise (the released GEO code reused the cached baseline, so
its identity delta was 0 by construction and said nothing about noise).

``rank`` (kind rank) rewrites nothing: adopters are moved to the top of the engine's source order
in their original relative order (C-SEO Bench's ``seo_baseline`` / ``seo_baseline_game_theory``);
unilaterally that puts the target first.

Results go to the run store (:mod:`geoaudit.runs`): one directory per run with the full
configuration and one result row per (item, strategy, rate, seed, condition, sample). The run id
is a hash of the configuration (models and their endpoints included), so re-running the same
command resumes the same run: finished cells are skipped, each cell's rows are written in one
transaction (a kill -9 loses at most the cells in flight, whose LLM calls are in the gateway cache
anyway). One process writes a run at a time: a second one stops at once with ``RunBusyError``.

A cell whose LLM calls fail after their retries (``BackendError``: the endpoint is down, or gave
only unusable replies; a rewrite the backend did not produce counts too) is recorded as failed with
its error and the other cells go on; the run then ends ``failed`` with the count in
``SimulationResult.failed_cells`` and ``run.meta["failed_cells"]``, and the next invocation
retries exactly the cells not done. Plans above :data:`MAX_CELLS` are refused before anything is
allocated unless the caller raises the limit.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from geoaudit.bench import Bench, BenchItem, load_bench
from geoaudit.config import Settings
from geoaudit.documents import Document, now_iso
from geoaudit.engine import Answer, EngineConfig, agenerate
from geoaudit.errors import BackendError, ConfigError
from geoaudit.llm import Gateway
from geoaudit.metrics import PAIRED_METRICS, READING_METRICS, ROW_METRICS, answer_metrics, delta_rank, directions
from geoaudit.options import SIMULATE_RATES, SIMULATE_STRATEGIES
from geoaudit.rewrite import RewriteResult, RewriteStore, arewrite
from geoaudit.runs import Cell, Run
from geoaudit.strategies import Strategy, load_strategies

#: sim2: the engine measures stages (relevance and selection readings beside sampled answers) and
#: the run declares its primary metric; a sim1 run is still readable but is never resumed by sim2.
RUN_VERSION = "sim2"
#: Largest plan run without the caller raising the limit (``max_cells``, ``--max-cells``): the plan is
#: held in memory (~400 bytes a cell) and every cell costs at least one LLM call.
MAX_CELLS = 500_000
#: Largest seed count ``parse_seeds`` expands (before any list is built).
MAX_SEED_COUNT = 100_000


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a run (its hash is the run id)."""

    bench: str
    strategies: tuple[str, ...] = SIMULATE_STRATEGIES
    rates: tuple[float, ...] = SIMULATE_RATES
    seeds: tuple[int, ...] = (0,)
    limit: int | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)
    model: str = ""
    rewrite_model: str = ""
    rewrite_seed: int = 0
    bench_seed: int = 0
    domain: str | None = None
    #: The metric the run's verdict is about, declared before the run: ``auto`` is the selection
    #: reading when the engine has that stage, PAWC otherwise (:meth:`primary_metric`).
    primary: str = "auto"
    #: Sampled answers in every condition (``all``) or only in the base condition (``base``), where
    #: they calibrate the engine (attributable and unsupported shares) at a fraction of the cost;
    #: ``auto``: base when the primary metric is a reading, all when it is read from answers
    #: (:meth:`answers_mode`).
    answers: str = "auto"
    #: Endpoints of the engine and rewrite models (None: litellm's default, or in-process). Part of
    #: the run id: the same model name on another server is another model. With replicas, the first
    #: endpoint (replicas of one model are the same model; the list is in the run's meta).
    api_base: str | None = None
    rewrite_api_base: str | None = None

    def __post_init__(self) -> None:
        bad = [r for r in self.rates if not (isinstance(r, (int, float)) and 0.0 <= float(r) <= 1.0)]
        if bad or not self.rates:
            raise ConfigError(
                f"adopter rates must be fractions in [0, 1], got {', '.join(map(str, bad or self.rates)) or 'none'}",
                hint="e.g. --adopters 0,0.25,0.5,1",
            )
        if not self.seeds:
            raise ConfigError("at least one seed is needed")
        if not self.strategies:
            raise ConfigError("at least one strategy is needed")
        if self.answers not in ("auto", "all", "base"):
            raise ConfigError(f"answers must be 'auto', 'all' or 'base', got {self.answers!r}")
        if self.primary != "auto":
            from geoaudit.metrics import METRICS

            if self.primary not in METRICS:
                raise ConfigError(f"unknown primary metric {self.primary!r}", hint=f"known: {', '.join(METRICS)}")

    @property
    def k(self) -> int:
        """How many sources the engine shows (one value: the engine's)."""
        return self.engine.k

    def primary_metric(self, model: str) -> str:
        """The declared primary metric for ``model``'s engine (resolves ``auto``)."""
        if self.primary != "auto":
            return self.primary
        return "selection" if "selection" in self.engine.resolve_stages(model) else "pawc"

    def answers_mode(self, model: str) -> str:
        """Where ``model``'s engine samples answers (resolves ``auto``): only in the base condition
        when the verdict is about a reading (answers then only calibrate the engine, at a fraction
        of the cost: on the embedded model they are most of it), in every condition otherwise."""
        if self.answers != "auto":
            return self.answers
        return "base" if self.primary_metric(model) in READING_METRICS else "all"

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["engine"] = self.engine.describe()
        return d

    def run_id(self, bench_fingerprint: str) -> str:
        config = self.describe()
        # Endpoints enter the hash only when set (a run on litellm's default endpoint keeps its id).
        for name in ("api_base", "rewrite_api_base"):
            if config[name] is None:
                del config[name]
        blob = json.dumps({"v": RUN_VERSION, "config": config, "bench": bench_fingerprint}, sort_keys=True)
        return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def parse_rates(text: str) -> tuple[float, ...]:
    """``"0,0.25,0.5,1"`` -> (0.0, 0.25, 0.5, 1.0); percentages like ``50%`` are accepted.

    Raises:
        ConfigError: a value is not a number in [0, 1].
    """
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError:
            raise ConfigError(f"adopter rate {part!r} is not a number", hint="e.g. --adopters 0,0.5,1") from None
        if not 0.0 <= value <= 1.0 or math.isnan(value):
            raise ConfigError(f"adopter rate {part} is outside [0, 1]", hint="rates are fractions, e.g. 0.25")
        out.append(value)
    if not out:
        raise ConfigError("no adopter rates given", hint="e.g. --adopters 0,0.5,1")
    return tuple(sorted(set(out)))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"3"`` -> (0, 1, 2) (a count); ``"0,7,9"`` -> (0, 7, 9) (a list)."""
    try:
        parts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"seeds must be a count (3) or a list (0,1,2), got {text!r}") from None
    if not parts or any(p < 0 for p in parts):
        raise ConfigError(f"seeds must be a count (3) or a list (0,1,2), got {text!r}")
    if len(parts) == 1 and "," not in text:
        if parts[0] < 1:
            raise ConfigError(
                "a seed count must be at least 1", hint="--seeds 3 runs seeds 0,1,2; --seeds 0, lists seed 0"
            )
        if parts[0] > MAX_SEED_COUNT:
            raise ConfigError(
                f"a seed count of {parts[0]:,} is above the limit of {MAX_SEED_COUNT:,}",
                hint="seeds repeat the whole run; a few (3-10) are usual",
            )
        return tuple(range(parts[0]))
    return tuple(dict.fromkeys(parts))


def planned_cell_count(items: int, seeds: int, strategies: int, rates: int) -> int:
    """Cells of a plan: per item and seed, one base cell plus (rivals, treated) per strategy and rate."""
    return items * seeds * (1 + strategies * rates * 2)


def derived_seed(*parts: Any) -> int:
    """A reproducible 31-bit seed from any parts (independent streams per condition)."""
    h = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def adopters(item: BenchItem, shown: Sequence[int], rate: float, seed: int) -> list[int]:
    """Indices (into ``item.documents``) of the competitors that adopt at ``rate``.

    ``round(rate * (k - 1))`` of the non-target shown documents, the first of a permutation seeded
    by (seed, item): nested across rates, identical across strategies.
    """
    others = [i for i in shown if i != item.target]
    rng = random.Random(derived_seed("adopters", seed, item.id))
    perm = others[:]
    rng.shuffle(perm)
    # round() is banker's rounding; adopter counts use round-half-up so 0.5 * 3 = 1.5 -> 2.
    m = math.floor(rate * len(others) + 0.5)
    return sorted(perm[:m])


# --------------------------------------------------------------------------- the simulation


@dataclass
class Progress:
    """What a progress display needs; updated as cells finish."""

    planned: int = 0
    #: Cells finished, failed ones included (``failed`` of them).
    done: int = 0
    skipped: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)


@dataclass
class SimulationResult:
    run: Run
    planned_cells: int
    computed_cells: int
    resumed_cells: int
    bench: Bench
    notes: list[str]
    #: Cells of this invocation whose LLM calls failed (recorded in the run; a re-run retries them).
    failed_cells: int = 0


def _display(item: BenchItem, k: int, order: str, seed: int, docs: Sequence[Document]) -> list[int]:
    """Indices into ``item.documents`` of the shown sources, in display order, for one condition."""
    n = len(docs)
    if order == "retrieved":
        from geoaudit.retrieval import BM25Retriever

        ranked = BM25Retriever().rank(item.query, list(docs))[:k]
        return [r.index for r in ranked]
    shown = list(range(min(k, n)))
    if item.target not in shown:
        shown[-1] = item.target  # the bench's target is always shown
    if order == "shuffled":
        random.Random(derived_seed("order", seed, item.id)).shuffle(shown)
    return shown


def _reading_metrics(answer: Answer, target_pos: int | None) -> dict[str, float | None]:
    """The target's relevance and selection readings (0 when it was not shown at all)."""
    r = answer.readings
    out: dict[str, float | None] = {}
    if r is None:
        return out
    if r.selection is not None:
        out["selection"] = r.selection[target_pos] if target_pos is not None else 0.0
        out["selection_mass"] = r.selection_mass
    if r.relevance is not None:
        out["relevance"] = r.relevance[target_pos] if target_pos is not None else 0.0
    if r.query_loglik is not None:
        out["query_loglik"] = r.query_loglik[target_pos] if target_pos is not None else None
    return out


def _move_to_top(shown: list[int], movers: Sequence[int]) -> list[int]:
    """C-SEO Bench's SEO baseline: adopters first, in their original relative order."""
    movers_set = set(movers)
    return [i for i in shown if i in movers_set] + [i for i in shown if i not in movers_set]


class Simulation:
    """Plans and runs the cells of one simulation; see the module docstring for the protocol."""

    def __init__(
        self,
        settings: Settings,
        config: SimulationConfig,
        *,
        gateway: Gateway | None = None,
        rewrite_gateway: Gateway | None = None,
        command: str | None = None,
        max_cells: int = MAX_CELLS,
    ) -> None:
        self.settings = settings
        self.config = config
        registry = load_strategies(settings=settings)
        self.strategies: list[Strategy] = registry.resolve(list(config.strategies))
        self.bench = load_bench(
            config.bench,
            k=config.k,
            limit=config.limit,
            seed=config.bench_seed,
            domain=config.domain,
            settings=settings,
        )
        self.planned_cells = planned_cell_count(
            len(self.bench.items), len(config.seeds), len(self.strategies), len(config.rates)
        )
        if self.planned_cells > max_cells:
            raise ConfigError(
                f"this run plans {self.planned_cells:,} cells ({len(self.bench.items):,} items x {len(config.seeds):,} "
                f"seeds x (1 + {len(self.strategies)} strategies x {len(config.rates)} rates x 2)), above the limit "
                f"of {max_cells:,}",
                hint="use fewer seeds, items (--limit), strategies or rates, or raise the limit with --max-cells",
            )
        self.gateway = gateway or Gateway(settings.replace(model=config.model or settings.model))
        rw_model = config.rewrite_model or settings.rewrite_model or self.gateway.model
        self.rewrite_gateway = rewrite_gateway or (
            self.gateway if rw_model == self.gateway.model else Gateway(settings.replace(model=rw_model))
        )
        # Gateways made here are closed by close(); a caller's own stay open.
        self._own_gateways = [
            gw for gw, given in ((self.gateway, gateway), (self.rewrite_gateway, rewrite_gateway)) if given is None
        ]
        fingerprint = hashlib.sha256(
            json.dumps(
                [(it.id, it.query, it.target, [d.content_hash for d in it.documents]) for it in self.bench.items]
            ).encode()
        ).hexdigest()
        model = self.gateway.model
        resolved = SimulationConfig(
            **{
                **{f: getattr(config, f) for f in config.__dataclass_fields__},
                "model": model,
                "rewrite_model": self.rewrite_gateway.model,
                "api_base": self.gateway.api_base,
                "rewrite_api_base": self.rewrite_gateway.api_base,
                # Declared before anything runs, and part of the run id.
                "engine": replace(config.engine, stages=config.engine.resolve_stages(model)),
                "primary": config.primary_metric(model),
                "answers": config.answers_mode(model),
            }
        )
        self.stages: tuple[str, ...] = tuple(resolved.engine.stages)
        self.config = resolved
        self.run_id = resolved.run_id(fingerprint)
        run_dir = settings.runs_dir / self.run_id
        # An unknown provider fails here, before a run directory exists. Checking imports litellm
        # (seconds), so a run that exists already is checked only if it has cells left to compute.
        self._model_checked = False
        if not (run_dir / "run.db").is_file():
            self._check_models()
        self.run_dir = run_dir
        self.command = command or " ".join(sys.argv)
        self._rewrites: dict[tuple[str, str, str], asyncio.Task[RewriteResult]] = {}
        self._base: dict[tuple[str, int], asyncio.Task[tuple[Answer, list[int]]]] = {}
        self._shown: dict[tuple[str, int], list[int]] = {}
        self._item_rewrites: dict[str, set[tuple[str, str, str]]] = {}
        #: Cells started at a time (None: 2,000 or 64 per slot, whichever is more).
        self.window: int | None = None

    def _check_models(self) -> None:
        if not self._model_checked:
            for gw in dict.fromkeys((self.gateway, self.rewrite_gateway)):
                gw.check_model()
            self._model_checked = True

    # -- planning
    def cells(self) -> list[Cell]:
        """Every (item, strategy, rate, seed, condition) cell this run computes, in plan order."""
        out: list[Cell] = []
        for item in self.bench.items:
            for seed in self.config.seeds:
                out.append(Cell(item.id, "", None, seed, "base"))
                for s in self.strategies:
                    for rate in self.config.rates:
                        # At rate 0 the rivals condition is the base condition; its rows reuse the base answer.
                        out.append(Cell(item.id, s.name, rate, seed, "rivals"))
                        out.append(Cell(item.id, s.name, rate, seed, "treated"))
        return out

    # -- work units
    async def _rewrite(self, item: BenchItem, strategy: Strategy, idx: int) -> RewriteResult:
        doc = item.documents[idx]
        key = (doc.content_hash, strategy.name, item.query if strategy.query_aware else "")
        self._item_rewrites.setdefault(item.id, set()).add(key)
        task = self._rewrites.get(key)
        if task is None:
            task = self._rewrites[key] = asyncio.ensure_future(
                arewrite(
                    self.rewrite_gateway,
                    strategy,
                    doc,
                    query=item.query,
                    seed=self.config.rewrite_seed,
                    store=self.rewrite_store,
                )
            )
        return await asyncio.shield(task)  # shared by cells: one cell's cancellation must not cancel it

    async def _condition_docs(
        self, item: BenchItem, strategy: Strategy | None, adopting: Sequence[int]
    ) -> tuple[list[Document], dict[int, RewriteResult]]:
        docs = list(item.documents)
        results: dict[int, RewriteResult] = {}
        if strategy is None or strategy.kind == "rank":
            return docs, results
        rewritten = await asyncio.gather(*(self._rewrite(item, strategy, i) for i in adopting))
        broken = next((r for r in rewritten if r.backend_failed), None)
        if broken is not None:  # an unrewritten page would be scored as if the strategy had been applied
            raise BackendError(f"rewrite with {strategy.name} failed ({broken.reason})")
        for i, res in zip(adopting, rewritten):
            results[i] = res
            if res.ok:
                docs[i] = res.as_document(item.documents[i])
        return docs, results

    async def _answer(
        self, item: BenchItem, docs: list[Document], shown: list[int], seed: int, *, base: bool = False
    ) -> Answer:
        sources = [docs[i] for i in shown]
        engine = self.config.engine
        if self.config.answers == "base" and not base:
            # Answers only where the engine is calibrated (the base condition); readings everywhere.
            engine = replace(engine, stages=tuple(x for x in self.stages if x != "answer") or ("selection",))
        target = shown.index(item.target) if item.target in shown else None
        return await agenerate(self.gateway, item.query, sources, engine, seed=seed, target=target)

    def _base_shown(self, item: BenchItem, seed: int) -> list[int]:
        """The sources shown in the base condition (no LLM call: rewrites can start before any answer)."""
        key = (item.id, seed)
        shown = self._shown.get(key)
        if shown is None:
            docs = list(item.documents)
            shown = self._shown[key] = _display(item, self.config.k, self.config.engine.order, seed, docs)
        return list(shown)

    async def _base_answer(self, item: BenchItem, seed: int) -> tuple[Answer, list[int]]:
        key = (item.id, seed)
        task = self._base.get(key)
        if task is None:

            async def compute() -> tuple[Answer, list[int]]:
                shown = self._base_shown(item, seed)
                ans = await self._answer(
                    item, list(item.documents), shown, derived_seed("answer", seed, item.id, "base"), base=True
                )
                return ans, shown

            task = self._base[key] = asyncio.ensure_future(compute())
        return await asyncio.shield(task)  # shared by every cell of the item and seed

    async def _condition_answer(
        self, item: BenchItem, strategy: Strategy, cond: str, rate: float, seed: int
    ) -> tuple[Answer, list[int], dict[int, RewriteResult], list[int]]:
        """Answer of one non-base condition: (answer, shown indices, rewrites, adopting indices).

        Shared by a cell and by the treated cell that needs its rivals answer for Δrank: the same
        inputs give the same prompt and seed, so the second call is a cache (or in-flight) hit.
        """
        # The rewrites start at once, beside the base answer: they need only the display, and waiting
        # for the answer first left slots idle at the start of every item. The condition's own answer
        # waits for the base answer, so an item whose base answer fails asks nothing more of the model.
        base_shown = self._base_shown(item, seed)
        rivals = adopters(item, base_shown, rate, seed)
        adopting = sorted(rivals + [item.target]) if cond == "treated" else rivals
        if not adopting:  # rivals at rate 0: nobody adopts, which is the base condition
            base_answer, _ = await self._base_answer(item, seed)
            return base_answer, base_shown, {}, []
        docs_task = asyncio.ensure_future(self._condition_docs(item, strategy, adopting))
        docs_task.add_done_callback(lambda t: t.cancelled() or t.exception())  # if the base fails first
        await self._base_answer(item, seed)
        docs, results = await docs_task
        if self.config.engine.order == "retrieved":
            shown = _display(item, self.config.k, "retrieved", seed, docs)
        else:
            shown = list(base_shown)
        if strategy.kind == "rank":
            shown = _move_to_top(shown, adopting)
        answer = await self._answer(
            item, docs, shown, derived_seed("answer", seed, item.id, cond, strategy.name, f"{rate:.6g}")
        )
        return answer, shown, results, adopting

    async def _run_cell(self, c: Cell, on_done: Callable[[bool], None]) -> None:
        """Compute and store one cell; a BackendError is recorded as the cell's failure, not raised."""
        try:
            await self._compute_cell(c)
        except BackendError as exc:
            self.run.save_failed_cell(c, str(exc), exc.attempts, usage=self._usage())
            on_done(True)
            return
        on_done(False)

    def _usage(self) -> dict[str, Any]:
        """This invocation's LLM usage so far, over both gateways (saved with every cell)."""
        total: dict[str, Any] = {}
        for gw in dict.fromkeys((self.gateway, self.rewrite_gateway)):
            for k, v in gw.usage.as_dict().items():
                total[k] = total.get(k, 0) + v
        return total

    async def _compute_cell(self, c: Cell) -> None:
        item = self.bench.item(c.item)
        seed, cond, rate = c.seed, c.condition, c.rate
        strategy: Strategy | None = None
        rivals_task: asyncio.Future[tuple[Answer, list[int], dict[int, RewriteResult], list[int]]] | None = None
        if cond == "base":
            answer, shown = await self._base_answer(item, seed)
            results: dict[int, RewriteResult] = {}
            adopting: list[int] = []
        else:
            assert rate is not None  # only the base cell has no rate
            strategy = next(s for s in self.strategies if s.name == c.strategy)
            if cond == "treated" and rate and rate > 0:  # its Δrank needs the rivals answer: ask for both now
                rivals_task = asyncio.ensure_future(self._condition_answer(item, strategy, "rivals", rate, seed))
                # If this cell fails first, the rivals cell still owns that work (and its error).
                rivals_task.add_done_callback(lambda t: t.cancelled() or t.exception())
            answer, shown, results, adopting = await self._condition_answer(item, strategy, cond, rate, seed)
        base_answer, base_shown = await self._base_answer(item, seed)
        orig_rank = base_shown.index(item.target) + 1 if item.target in base_shown else None
        if strategy is not None and results:
            self.run.save_rewrites(
                [
                    {
                        "doc_id": item.documents[i].id,
                        "strategy": strategy.name,
                        "item": item.id,
                        "is_target": i == item.target,
                        "status": r.status,
                        "reason": r.reason,
                        "flags": r.flag_count,
                        "guards": r.guards,
                        "original": item.documents[i].text,
                        "rewritten": r.text,
                        "model": r.producer,
                        "key": r.key,
                    }
                    for i, r in results.items()
                ]
            )
        rows = self._rows(item, c, answer, shown, orig_rank, base_answer, base_shown, results, len(adopting))
        if rivals_task is not None:
            rivals_answer, rivals_shown, _, _ = await rivals_task
            for r, s_treated, s_rivals in zip(rows, answer.samples, rivals_answer.samples):
                r["delta_rank_adv"] = float(
                    delta_rank(
                        s_rivals.citation_order,
                        s_treated.citation_order,
                        rivals_shown.index(item.target) if item.target in rivals_shown else -1,
                        shown.index(item.target) if item.target in shown else -1,
                    )
                )
        elif cond == "treated":
            for r in rows:
                r["delta_rank_adv"] = r.get("delta_rank")
        self.run.save_cell(c, answer, rows, usage=self._usage())

    def _rows(
        self,
        item: BenchItem,
        c: Cell,
        answer: Answer,
        shown: list[int],
        orig_rank: int | None,
        base_answer: Answer,
        base_shown: list[int],
        results: dict[int, RewriteResult],
        n_adopting: int,
    ) -> list[dict[str, Any]]:
        """One row per answer sample (one row when no answers were sampled), target metrics as columns."""
        target_pos = shown.index(item.target) if item.target in shown else None
        base_pos = base_shown.index(item.target) if item.target in base_shown else -1
        rows = []
        target_rw = results.get(item.target)
        readings = _reading_metrics(answer, target_pos)
        samples: list[Any] = list(answer.samples) or [None]
        for i, sample in enumerate(samples):
            m: dict[str, Any] = {}
            if sample is not None and target_pos is not None:
                one = Answer(
                    query=answer.query,
                    sources=answer.sources,
                    samples=[sample],
                    attribution=answer.attribution,
                    prompt_version=answer.prompt_version,
                    config=answer.config,
                    model=answer.model,
                    seed=answer.seed,
                )
                m = answer_metrics(one, target_pos)
            elif sample is not None:  # the retriever did not show the target at all: it is invisible
                m = {name: 0.0 for name in ROW_METRICS}
                m["first_citation_rank"] = None
            m.update(readings)
            row: dict[str, Any] = {
                "item": item.id,
                "domain": item.domain,
                "tags": ",".join(item.tags),
                "strategy": c.strategy,
                "rate": c.rate,
                "seed": c.seed,
                "condition": c.condition,
                "sample": i,
                "target_orig_rank": orig_rank,
                "target_rank": target_pos + 1 if target_pos is not None else None,
                "adopters": n_adopting,
                "target_rewrite": target_rw.status
                if target_rw
                else ("moved" if c.strategy == "rank" and c.condition == "treated" else None),
            }
            for name in ROW_METRICS:
                v = m.get(name)
                row[name] = None if v is None else float(v)
            if c.condition == "treated" and sample is not None and base_answer.samples:
                base_sample = base_answer.samples[min(i, len(base_answer.samples) - 1)]
                row["delta_rank"] = float(
                    delta_rank(
                        base_sample.citation_order,
                        sample.citation_order,
                        base_pos,
                        target_pos if target_pos is not None else -1,
                    )
                )
            rows.append(row)
        return rows

    # -- driver
    async def arun(self, progress: Callable[[Progress], None] | None = None) -> SimulationResult:
        """Run the cells not done yet; see the module docstring.

        Raises:
            RunBusyError: another process is running this run (before any LLM call).
        """
        self.run.acquire()
        try:
            return await self._arun(progress)
        finally:
            self.run.release()

    async def _arun(self, progress: Callable[[Progress], None] | None) -> SimulationResult:
        planned = self.cells()
        done = self.run.done_cells()
        todo = [c for c in planned if c.id not in done]
        if todo:
            self._check_models()
        meta = self.run.meta
        self.run.begin_invocation()
        self.run.set_meta(
            config=self.config.describe(),
            command=self.command,
            status="running",
            error=None,
            created_at=meta.get("created_at", now_iso()),
            planned_cells=len(planned),
            bench={
                "name": self.bench.name,
                "source": self.bench.source,
                "format": self.bench.format,
                "items": len(self.bench.items),
                "skipped": self.bench.skipped,
                "notes": self.bench.notes,
            },
            strategies={
                s.name: {
                    "version": s.version,
                    "kind": s.kind,
                    "prompt_hash": s.prompt_hash,
                    "origin": s.origin,
                    "title": s.title,
                }
                for s in self.strategies
            },
            versions=_versions(),
            higher_is_better=directions(),
            paired_metrics=list(PAIRED_METRICS),
            engine=self.config.engine.resolved(self.gateway.model).describe(),
            attribution=self.config.engine.resolve_attribution(self.gateway.model),
            primary=self.config.primary,
            stages=list(self.stages),
            answers=self.config.answers,
            # Which endpoints served this invocation (replicas are provenance, not identity).
            endpoints={
                "engine": self.gateway.endpoints.describe(),
                "rewrite": self.rewrite_gateway.endpoints.describe(),
            },
            workers=self.settings.workers,
        )
        state = Progress(planned=len(planned), done=len(planned) - len(todo), skipped=len(planned) - len(todo))
        if progress:
            progress(state)

        def tick(failed: bool) -> None:
            state.done += 1
            state.failed += failed
            if progress:
                progress(state)

        # By item, its base cell first, so llama.cpp's prompt-prefix cache sees runs of similar
        # prompts and an item's shared work (base answer, rewrites) can be dropped when it is done.
        todo.sort(key=lambda c: (c.item, c.seed, c.condition != "base", c.strategy, c.rate or 0))
        tasks: set[asyncio.Future[None]] = set()
        try:
            await self._run_window(todo, tick, tasks)
        except BaseException as exc:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stopped = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))
            self.run.set_meta(
                status="interrupted" if stopped else "failed",
                finished_at=now_iso(),
                error=None if stopped else f"{type(exc).__name__}: {exc}",
                usage=self._final_usage(),
            )
            raise
        failed = self.run.failed_cells()
        self.run.set_meta(
            status="failed" if failed else "complete",
            finished_at=now_iso(),
            failed_cells=len(failed),
            error=f"{len(failed)} of {len(planned)} cells failed; e.g. {failed[0]['error']}" if failed else None,
            usage=self._final_usage(),
        )
        return SimulationResult(
            run=self.run,
            planned_cells=len(planned),
            computed_cells=len(todo) - len(failed),
            resumed_cells=len(planned) - len(todo),
            bench=self.bench,
            notes=list(self.bench.notes),
            failed_cells=len(failed),
        )

    async def _run_window(
        self,
        todo: list[Cell],
        tick: Callable[[bool], None],
        tasks: set[asyncio.Future[None]],
    ) -> None:
        """Run ``todo`` with at most :attr:`window` cells started at a time (``tasks``: those running).

        The window keeps far more calls ready than there are slots (the gateway serves them by
        priority), while memory stays bounded on runs of millions of cells: an item's base answer,
        display and rewrite tasks are dropped once its last cell is done.
        """
        window = self.window or max(2_000, 64 * self.gateway.slots)
        left: dict[tuple[str, int], int] = {}
        for c in todo:
            left[(c.item, c.seed)] = left.get((c.item, c.seed), 0) + 1
        items_left: dict[str, int] = {}
        for item_id, _ in left:
            items_left[item_id] = items_left.get(item_id, 0) + 1
        queue = iter(todo)
        finished = asyncio.get_running_loop().create_future()

        def launch() -> None:
            while len(tasks) < window:
                c = next(queue, None)
                if c is None:
                    break
                t = asyncio.ensure_future(self._run_cell(c, tick))
                t.add_done_callback(functools.partial(settle, (c.item, c.seed)))
                tasks.add(t)
            if not tasks and not finished.done():
                finished.set_result(None)

        def settle(key: tuple[str, int], t: asyncio.Future[None]) -> None:
            tasks.discard(t)
            if t.cancelled():
                return
            if t.exception() is not None:
                if not finished.done():
                    finished.set_exception(t.exception())  # type: ignore[arg-type]
                return
            left[key] -= 1
            if not left[key]:
                self._base.pop(key, None)
                self._shown.pop(key, None)
                items_left[key[0]] -= 1
                if not items_left[key[0]]:
                    for rk in self._item_rewrites.pop(key[0], ()):
                        self._rewrites.pop(rk, None)
            if not finished.done():
                launch()

        launch()
        await finished

    def _final_usage(self) -> dict[str, Any]:
        self.run.save_usage(self._usage())
        return self.run.usage()

    def run_sync(self, progress: Callable[[Progress], None] | None = None) -> SimulationResult:
        from geoaudit.llm import run_sync

        return run_sync(self.arun(progress))

    # Opened on first use: planning a simulation (its id, cells and configuration) writes nothing.
    @functools.cached_property
    def run(self) -> Run:
        """The run in the run store (created on first use)."""
        return Run(self.run_dir)

    @functools.cached_property
    def rewrite_store(self) -> RewriteStore:
        return RewriteStore(self.settings.ensure_data_dir() / self.settings.store_path.name)

    def close(self, *, keep_run: bool = False) -> None:
        """Close the run (unless ``keep_run``), the rewrite store and the gateways this simulation made."""
        if not keep_run and "run" in self.__dict__:
            self.run.close()
        if "rewrite_store" in self.__dict__:
            self.rewrite_store.close()
        for gw in self._own_gateways:
            gw.close()

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("geoaudit", "litellm", "llama-cpp-python", "bm25s", "scipy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def simulate(
    settings: Settings,
    config: SimulationConfig,
    *,
    progress: Callable[[Progress], None] | None = None,
    command: str | None = None,
    gateway: Gateway | None = None,
) -> SimulationResult:
    """Run (or resume) a simulation; the library entry point behind ``geoaudit simulate``.

    Failed cells do not raise: see ``SimulationResult.failed_cells``.

    Raises:
        ConfigError / UnknownStrategyError / InputError: before any work starts.
        RunBusyError: another process is running the same run.
    """
    sim = Simulation(settings, config, command=command, gateway=gateway)
    try:
        return sim.run_sync(progress)
    finally:
        sim.close(keep_run=True)  # the result's run is the caller's to read (and close)
