"""Options shared by the library and the command line: one place for every default.

Each stage's options are a frozen dataclass here; library functions take them and CLI flags
read their defaults from them, so the two cannot drift (trafilatura's ``Extractor`` model). This
module imports nothing heavy: ``geoaudit --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoaudit.errors import ConfigError

# --------------------------------------------------------------------------- engine and simulate
# One default per fact: EngineConfig and SimulationConfig take their field defaults from here, and
# the `ask` / `simulate` flags read the same names, so library and CLI cannot disagree.

#: Sources the engine shows per query (GEO uses 5).
ENGINE_K = 5
#: Longest sampled answer, in tokens.
ENGINE_MAX_TOKENS = 200
#: Characters of each source's text shown to the engine.
ENGINE_SOURCE_BUDGET = 1500
#: Answer sampling temperature (GEO: 0.7).
ENGINE_TEMPERATURE = 0.7
#: What ``simulate`` runs when no strategies or adopter rates are named: the negative control, a
#: content strategy that invents nothing, and the positive control.
SIMULATE_STRATEGIES: tuple[str, ...] = ("identity", "quotation-grounded", "rank")
SIMULATE_RATES: tuple[float, ...] = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class DemoOptions:
    """What ``geoaudit demo`` runs by default.

    Attributes:
        items: demo queries (the bundled bench has 30; all of them by default, for power).
        strategies: identity (the negative control), rank (the positive control: C-SEO Bench's
            "best SEO", the one lever that works), then content strategies that cannot invent
            anything (deterministic and extractive), so they measure the strategy rather than a
            small model's failed rewrites: GEO's keyword-stuffing baseline (which moves query
            likelihood) and an answer-first summary. Two, not more: on a 2-core machine the
            embedded model reads ~310 prompt tokens/s, and the demo must finish in 10 minutes.
        rates: adopter rates (0 and 1: enough for the congestion control).
        source_budget: characters of each source shown to the engine.
        max_tokens: length cap of the engine's sampled answers (sampled in the base condition only).
        relevance_scope: the relevance stage reads only your page (its query likelihood), not
            every competitor's rewrite: the same conclusion at a fifth of the readings.
    """

    items: int = 30
    strategies: tuple[str, ...] = ("identity", "rank", "keyword-stuffing-rule", "answer-first")
    rates: tuple[float, ...] = (0.0, 1.0)
    source_budget: int = 250
    max_tokens: int = 80
    relevance_scope: str = "target"


DEMO = DemoOptions()


#: The audit's seeds x samples ladder, smallest first: a named budget picks a rung, a number of model
#: calls picks the largest rung whose planned calls fit (see :func:`geoaudit.audit.plan_audit`).
AUDIT_RUNGS: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (2, 2), (3, 2), (5, 3), (8, 3), (10, 5))
#: Named budgets: (seeds, samples).
AUDIT_BUDGETS: dict[str, tuple[int, int]] = {"quick": (1, 1), "standard": (2, 2), "thorough": (5, 3)}
#: LLM strategies an audit adds on a model that can rewrite (not the embedded one): the grounded
#: variants (they may only reuse the page's own facts) and GEO's rewrites that add no facts. GEO's
#: statistics / quotation / cite-sources invent facts, so they are not recommended by default.
AUDIT_LLM_STRATEGIES: tuple[str, ...] = (
    "statistics-grounded",
    "quotation-grounded",
    "cite-sources-grounded",
    "fluency",
    "easy-to-understand",
)


@dataclass(frozen=True)
class AuditOptions:
    """How ``geoaudit audit`` measures one page against its competitors.

    Attributes:
        strategies: strategy names; empty = the ones that work on the engine model: the controls
            ``identity`` and ``rank`` and every deterministic (rule) strategy that changes text, plus
            :data:`AUDIT_LLM_STRATEGIES` on a model other than the embedded one.
        rates: shares of the competitors that adopt the same strategy.
        budget: ``quick`` / ``standard`` / ``thorough`` (:data:`AUDIT_BUDGETS`), or a number: the most
            model calls the audit may plan (the largest seeds x samples rung of :data:`AUDIT_RUNGS`
            that fits).
        seeds, samples: override the budget's choice.
        k: most sources the engine shows (fewer when fewer pages are usable); the retriever (BM25)
            picks and orders them, so a rewrite that changes retrieval counts.
        source_budget: characters of each source shown to the engine (None: 600 on the embedded
            model, whose speed depends on it, 1500 elsewhere).
        max_tokens: longest sampled answer (None: 100 on the embedded model, 200 elsewhere).
        answers: ``all`` (sampled answers in every condition), ``base`` (only where they calibrate the
            engine), or ``auto``: base on the embedded model (its readings carry the verdict), all elsewhere.
        max_cost: refuse, before any call, a plan whose estimated cost (litellm's price map) is higher (USD).
        allow_private, respect_robots, delay, timeout: fetching (crawl and check), as ``crawl``.
        check: run the static AI-readiness checks on the page.
        fetch_as_agents: in the checks, fetch the page as each AI agent robots.txt allows.
    """

    strategies: tuple[str, ...] = ()
    rates: tuple[float, ...] = (0.0, 0.5, 1.0)
    budget: str = "standard"
    seeds: int | None = None
    samples: int | None = None
    k: int = 5
    source_budget: int | None = None
    max_tokens: int | None = None
    answers: str = "auto"
    max_cost: float | None = None
    allow_private: bool = False
    respect_robots: bool = True
    delay: float = 1.0
    timeout: float = 20.0
    check: bool = True
    fetch_as_agents: bool = True

    def __post_init__(self) -> None:
        budget = str(self.budget).strip()
        if budget not in AUDIT_BUDGETS and not (budget.isdigit() and int(budget) > 0):
            raise ConfigError(
                f"budget must be {', '.join(AUDIT_BUDGETS)} or a number of model calls, got {self.budget!r}",
                hint="e.g. --budget quick, or --budget 2000",
            )
        object.__setattr__(self, "budget", budget)
        for name in ("seeds", "samples", "k", "source_budget", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
        if self.k < 2:
            raise ConfigError("k must be at least 2: the engine compares your page with a competitor")
        if self.answers not in ("auto", "all", "base"):
            raise ConfigError(f"answers must be auto, all or base, got {self.answers!r}")
        if self.max_cost is not None and not self.max_cost >= 0:
            raise ConfigError(f"max-cost must be 0 or more (USD), got {self.max_cost!r}")
        if not self.rates or any(not 0.0 <= float(r) <= 1.0 for r in self.rates):
            raise ConfigError("adopter rates must be fractions in [0, 1]", hint="e.g. --adopters 0,0.5,1")
        for name in ("delay", "timeout"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be 0 or more seconds")


__all__ = [
    "AUDIT_BUDGETS",
    "AUDIT_LLM_STRATEGIES",
    "AUDIT_RUNGS",
    "DEMO",
    "ENGINE_K",
    "ENGINE_MAX_TOKENS",
    "ENGINE_SOURCE_BUDGET",
    "ENGINE_TEMPERATURE",
    "SIMULATE_RATES",
    "SIMULATE_STRATEGIES",
    "AuditOptions",
    "DemoOptions",
]
