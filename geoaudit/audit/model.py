"""What ``geoaudit audit`` plans and produces: inputs, the plan, per-query effects, the recommendation.

Plain dataclasses, so a notebook can keep and inspect an audit; :mod:`geoaudit.audit.render` turns
an :class:`AuditResult` into the creator's HTML report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geoaudit.documents import Document

if TYPE_CHECKING:
    from geoaudit.analysis import StatsResult
    from geoaudit.check import CheckReport
    from geoaudit.engine import Answer

#: ``progress(stage, info)``: stage is ``crawl``, ``check``, ``simulate``, ``stats`` or ``report``;
#: info may hold ``done`` and ``total``.
Stage = Callable[[str, Mapping[str, Any]], None]
#: Whose page an input is: ``page`` (yours) or ``competitor``.
InputRole = Literal["page", "competitor"]
#: How an input was given: ``url`` or ``file``.
InputKind = Literal["url", "file"]
#: Characters per token assumed by the plan's token estimate (English text, GPT-style tokenizers).
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class AuditInput:
    """One page the audit was given (your page or a competitor) and what became of it.

    Attributes:
        spec: as given (a URL or a path).
        role: ``page`` (yours) or ``competitor``.
        kind: ``url`` or ``file``.
        used: whether the page entered the bench; ``reason`` says why not.
        url: the normalised URL (file URI for a local file) the engine sees the page under.
        title, words: what the extractor found.
        doc_id: the page's document id in the bench.
    """

    spec: str
    role: InputRole
    kind: InputKind
    used: bool
    reason: str = ""
    url: str = ""
    title: str = ""
    words: int = 0
    doc_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class AuditPlan:
    """What an audit will do and spend, decided before any model call (``geoaudit audit --dry-run``).

    Calls and tokens are upper bounds: identical requests are answered once (the simulation and the
    LLM cache de-duplicate them), so a run usually makes fewer. Tokens are estimated at
    :data:`CHARS_PER_TOKEN` characters per token; the cost comes from litellm's offline price map.
    """

    key: str
    page: AuditInput
    competitors: tuple[AuditInput, ...]
    queries: tuple[str, ...]
    model: str
    rewrite_model: str
    embedded: bool
    strategies: tuple[str, ...]
    rates: tuple[float, ...]
    seeds: int
    samples: int
    budget: str
    k: int
    source_budget: int
    max_tokens: int
    answers: str
    stages: tuple[str, ...]
    primary: str
    cells: int = 0
    #: Model calls by purpose (rewrite, relevance, selection, answer): at most this many.
    calls: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Estimated USD; None when litellm has no price for a model that is called.
    cost: float | None = 0.0
    cost_note: str = ""
    bench: Path | None = None
    #: Why the simulation cannot run (your page unusable, no usable competitor); "" when it can.
    problem: str = ""
    warnings: tuple[str, ...] = ()
    documents: tuple[Document, ...] = field(default=(), repr=False, compare=False)

    @property
    def runnable(self) -> bool:
        return not self.problem

    @property
    def inputs(self) -> list[AuditInput]:
        return [self.page, *self.competitors]

    @property
    def skipped(self) -> list[AuditInput]:
        return [i for i in self.inputs if not i.used]

    @property
    def used_competitors(self) -> list[AuditInput]:
        return [c for c in self.competitors if c.used]

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def lines(self) -> list[str]:
        """The plan in plain lines (what ``--dry-run`` prints)."""
        out = [
            f"your page: {self.page.spec}"
            + (f" ({self.page.words:,} words)" if self.page.used else f" — NOT USABLE: {self.page.reason}")
        ]
        used = self.used_competitors
        out.append(f"competitors: {len(used)} usable of {len(self.competitors)} given")
        for c in self.competitors:
            if not c.used:
                out.append(f"  skipped {c.spec}: {c.reason}")
        out.append(f"queries: {len(self.queries)}")
        if self.problem:
            out.append(f"cannot simulate: {self.problem}")
            return out
        out += [
            f"engine: {self.model} (stages {', '.join(self.stages)}; primary metric {self.primary}); "
            f"rewrites: {self.rewrite_model}",
            f"strategies: {', '.join(self.strategies)}",
            f"adopter rates: {', '.join(f'{r:g}' for r in self.rates)}; budget {self.budget}: {self.seeds} seed(s) x "
            f"{self.samples} sample(s); answers sampled in {'every condition' if self.answers == 'all' else 'the base condition only'}",
            f"sources shown: up to {self.k}, picked and ordered by BM25 retrieval; {self.source_budget} characters each",
            f"cells: {self.cells:,}",
            "model calls, at most (identical requests are made once): "
            + (", ".join(f"{k} {v:,}" for k, v in self.calls.items() if v) or "none")
            + f"; total {self.total_calls:,}",
            f"tokens, estimated at {CHARS_PER_TOKEN} characters per token: {self.prompt_tokens:,} prompt + "
            f"{self.completion_tokens:,} completion",
            "cost: "
            + (f"at most ${self.cost:.4f}" if self.cost is not None else "unknown")
            + (f" ({self.cost_note})" if self.cost_note else ""),
        ]
        out += [f"note: {w}" for w in self.warnings]
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("documents", "page", "competitors")}
        out["page"] = self.page.to_dict()
        out["competitors"] = [c.to_dict() for c in self.competitors]
        out["bench"] = str(self.bench) if self.bench else None
        out["total_calls"] = self.total_calls
        return out


@dataclass(frozen=True)
class QueryEffect:
    """How one strategy moved your page's primary metric on one query (descriptive: no test per query).

    ``deltas``: per adopter rate, the mean advantage Δ (treated − rivals: you adopt vs you do not,
    the same competitors adopting), averaged over seeds and samples. ``direction``: ``higher`` /
    ``lower`` (better / worse for you at every rate where it moved), ``mixed`` or ``no change``.
    ``rank_before`` / ``rank_after``: your page's position among the retrieved sources before and with
    the strategy (nobody else adopting); None when the retriever did not show it.
    """

    item: str
    query: str
    deltas: dict[float, float]
    direction: str
    rank_before: int | None = None
    rank_after: int | None = None


@dataclass(frozen=True)
class RewriteText:
    """One rewrite of your page: the text to publish, what it replaced, and what the guards found."""

    strategy: str
    #: The query it was written for ("" when the strategy ignores the query: one text for every query).
    query: str
    items: tuple[str, ...]
    text: str
    original: str
    status: str
    reason: str
    producer: str
    fabrications: dict[str, list[str]] = field(default_factory=dict)
    guards: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recommendation:
    """The strategy whose rewrite of your page the audit recommends, with the evidence for it.

    ``established``: the run's statistics found a significant gain (after correction) at some
    adopter rate and a significant loss at none; otherwise the recommendation rests on a positive
    estimate only and says so.
    """

    strategy: str
    title: str
    established: bool
    why: str
    estimate: float
    rewrites: tuple[RewriteText, ...]
    effects: tuple[QueryEffect, ...]


@dataclass(frozen=True)
class SourceShare:
    """One candidate page on one query: retrieval and the engine's readings (base condition).

    ``selection`` / ``relevance``: the engine's readings for it (embedded model); ``pawc`` / ``cited``:
    from its sampled answers (means over samples); None where not measured or not shown.
    ``selection_after`` / ``pawc_after``: the same with the recommended rewrite of your page (nobody
    else adopting).
    """

    doc_id: str
    url: str
    title: str
    is_page: bool
    retrieval_rank: int
    shown: bool
    selection: float | None = None
    relevance: float | None = None
    pawc: float | None = None
    cited: float | None = None
    selection_after: float | None = None
    pawc_after: float | None = None


@dataclass(frozen=True)
class QueryCompetition:
    """Who takes the engine's attention on one query: every candidate, best first by ``metric``."""

    item: str
    query: str
    metric: str
    sources: tuple[SourceShare, ...]
    #: Competitors ahead of your page by ``metric`` (all shown competitors when your page was not shown).
    ahead: tuple[SourceShare, ...] = ()
    answer: Answer | None = None


@dataclass
class AuditResult:
    """Everything one audit found (see :func:`geoaudit.audit.audit`)."""

    plan: AuditPlan
    check: CheckReport | None = None
    #: Why the readiness checks did not run (switched off, a markdown draft), when ``check`` is None.
    check_note: str = ""
    run_id: str | None = None
    run_dir: Path | None = None
    run_status: str = ""
    command: str = ""
    stats: StatsResult | None = None
    #: Why there are no statistics (too few rows, the simulation did not run).
    stats_problem: str = ""
    recommendation: Recommendation | None = None
    #: Why nothing is recommended, or what the recommendation rests on.
    recommendation_note: str = ""
    effects: dict[str, list[QueryEffect]] = field(default_factory=dict)
    competition: list[QueryCompetition] = field(default_factory=list)
    #: Rewrites of your page per strategy (every text-changing strategy).
    rewrites: dict[str, list[RewriteText]] = field(default_factory=dict)
    strategy_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: Path | None = None
    planned_cells: int = 0
    computed_cells: int = 0
    resumed_cells: int = 0
    failed_cells: int = 0
    failed_example: str = ""
    usage: list[str] = field(default_factory=list)
    run_usage: str = ""
    seconds: float = 0.0
    generated_at: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def simulated(self) -> bool:
        return self.run_id is not None
