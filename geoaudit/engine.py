"""The simulated generative engine: sources in, a cited answer out, every citation accounted for.

Pipeline of one call (:func:`aanswer`)::

    candidates --select/order (given | retrieved by BM25 | seeded shuffle), top k-->
    sources --truncate to the character budget (recorded per source), number 1..k-->
    prompt (versioned data file, instructions + question before the sources: prefix-stable)
    --gateway, n samples, sample i with its own derived seed (cached)-->
    raw text --split into sentences, parse [n] citations-->
    attribution (citations | overlap | hybrid; how each sentence got its sources is recorded)
    --> Answer

Parsing and attribution of the raw text are :mod:`geoaudit.citations`; the engine owns what the
model is shown (configuration, prompt, source selection and order) and the calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from geoaudit.citations import AnswerSample, make_sample
from geoaudit.documents import Document
from geoaudit.errors import ConfigError, InputError
from geoaudit.llm import Gateway, LLMRequest, LLMResponse, run_sync
from geoaudit.metrics import PAWC_VARIANTS
from geoaudit.options import ENGINE_K, ENGINE_MAX_TOKENS, ENGINE_SOURCE_BUDGET, ENGINE_TEMPERATURE
from geoaudit.resources import prompts_dir

ORDERS = ("given", "retrieved", "shuffled")
#: What the engine can measure, in pipeline order: relevance (each source alone: how well it
#: predicts the query), selection (which source the model would cite first, given all of them in
#: display order) and answer (sampled answers, with attribution: what the answer absorbs).
STAGES = ("relevance", "selection", "answer")
DEFAULT_READINGS_VERSION = "readings-v2"
ATTRIBUTIONS = ("auto", "citations", "overlap", "hybrid")
DEFAULT_PROMPT_VERSION = "auto"
#: ``auto`` resolves to these: small embedded models need a worked example to produce cited answers.
PROMPT_FOR_REMOTE = "answer-v1"
PROMPT_FOR_LOCAL = "answer-local-v1"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class EngineConfig:
    """Everything that shapes an answer, recorded with every result (:meth:`describe`).

    Attributes:
        k: how many sources the engine shows (GEO uses 5).
        order: ``given`` (first k as given, e.g. search-result order), ``retrieved`` (top k by
            retriever score over the candidates), ``shuffled`` (first k as given, displayed in a
            permutation drawn from the call's seed).
        attribution: ``citations`` (only what the model wrote), ``overlap`` (post hoc, by token
            overlap), ``hybrid`` (explicit valid citations where present, overlap elsewhere), or
            ``auto``: hybrid for embedded ``local/...`` models (which rarely cite), citations otherwise.
        overlap_threshold: minimum share of a sentence's content words found in a source for
            overlap attribution (0..1).
        samples: answers drawn per query (the GEO paper draws 5).
        temperature: sampling temperature (GEO paper 0.7; its released code 0.5).
        max_tokens: answer length cap (small by default: the embedded model writes ~90 tokens/s).
        source_budget_chars: characters of each source's text shown to the model (None: all).
        pawc_variant: default PAWC/word/position formula, ``paper`` (GEO eq. 2-3) or ``code``
            (GEO ``src/utils.py``); see :mod:`geoaudit.metrics`.
        prompt_version: answer prompt file ``geoaudit/prompts/<version>.toml``, or ``auto``:
            ``answer-local-v1`` (with one worked example turn) for embedded ``local/...`` models,
            ``answer-v1`` otherwise. The concrete version is recorded with every answer.
        stages: which of :data:`STAGES` a call measures, or ``auto``: all three for the embedded
            model, answer only for others. The relevance reading needs prompt log-probabilities,
            which geoaudit reads only in-process; the selection reading works on endpoints that
            return top log-probabilities (OpenAI, vLLM, llama.cpp server), when asked for.
        readings_version: prompt file of the selection and relevance readings.
        relevance_scope: ``all`` reads every shown source's query likelihood (and the target's
            share among them: ``relevance``); ``target`` reads only the page under study (its
            ``query_loglik``, which competitors cannot change) at a fraction of the cost.
    """

    k: int = ENGINE_K
    order: str = "given"
    attribution: str = "auto"
    overlap_threshold: float = 0.6
    samples: int = 1
    temperature: float = ENGINE_TEMPERATURE
    max_tokens: int = ENGINE_MAX_TOKENS
    source_budget_chars: int | None = ENGINE_SOURCE_BUDGET
    pawc_variant: str = "paper"
    prompt_version: str = DEFAULT_PROMPT_VERSION
    stages: tuple[str, ...] | str = "auto"
    readings_version: str = DEFAULT_READINGS_VERSION
    relevance_scope: str = "all"

    def __post_init__(self) -> None:
        if isinstance(self.stages, str) and self.stages != "auto":
            object.__setattr__(self, "stages", tuple(x.strip() for x in self.stages.split(",") if x.strip()))
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        if self.stages != "auto":
            bad = [x for x in self.stages if x not in STAGES]
            if bad or not self.stages:
                raise ConfigError(
                    f"unknown or no engine stages {', '.join(bad) or '(none)'}", hint=f"use some of {', '.join(STAGES)}"
                )
            object.__setattr__(self, "stages", tuple(x for x in STAGES if x in self.stages))
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if self.order not in ORDERS:
            raise ConfigError(f"unknown source order {self.order!r}", hint=f"use one of {', '.join(ORDERS)}")
        if self.attribution not in ATTRIBUTIONS:
            raise ConfigError(
                f"unknown attribution mode {self.attribution!r}", hint=f"use one of {', '.join(ATTRIBUTIONS)}"
            )
        if not 0.0 <= self.overlap_threshold <= 1.0:
            raise ConfigError(f"overlap_threshold must be between 0 and 1, got {self.overlap_threshold}")
        if self.samples < 1:
            raise ConfigError(f"samples must be at least 1, got {self.samples}")
        if not 0 <= self.temperature < float("inf"):  # also refuses NaN, which compares false
            raise ConfigError(f"temperature must be a finite number, not negative, got {self.temperature}")
        if self.relevance_scope not in ("all", "target"):
            raise ConfigError(f"relevance_scope must be 'all' or 'target', got {self.relevance_scope!r}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.source_budget_chars is not None and self.source_budget_chars < 1:
            raise ConfigError("source_budget_chars must be positive (or None for no truncation)")
        if self.pawc_variant not in PAWC_VARIANTS:
            raise ConfigError(
                f"unknown PAWC variant {self.pawc_variant!r}", hint=f"use one of {', '.join(PAWC_VARIANTS)}"
            )

    def resolve_attribution(self, model: str) -> str:
        """The concrete attribution mode for ``model`` (resolves ``auto``)."""
        if self.attribution != "auto":
            return self.attribution
        return "hybrid" if is_embedded(model) else "citations"

    def resolve_prompt_version(self, model: str) -> str:
        """The concrete answer prompt for ``model`` (resolves ``auto``)."""
        if self.prompt_version != "auto":
            return self.prompt_version
        return PROMPT_FOR_LOCAL if is_embedded(model) else PROMPT_FOR_REMOTE

    def resolve_stages(self, model: str) -> tuple[str, ...]:
        """The concrete stages for ``model`` (resolves ``auto``)."""
        if self.stages != "auto":
            return tuple(self.stages)
        return STAGES if is_embedded(model) else ("answer",)

    def resolved(self, model: str) -> EngineConfig:
        """A copy with ``auto`` attribution, prompt version and stages resolved for ``model``."""
        return replace(
            self,
            attribution=self.resolve_attribution(model),
            prompt_version=self.resolve_prompt_version(model),
            stages=self.resolve_stages(model),
        )

    def describe(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict (provenance)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def is_embedded(model: str) -> bool:
    """Whether ``model`` runs in-process (``local/...``), which also allows deterministic readings."""
    return model.startswith("local/") or model == "smollm2"


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` of a call with ``seed``: distinct per (seed, index), reproducible.

    A hash rather than ``seed + index`` so that (seed 0, sample 1) and (seed 1, sample 0) differ.
    """
    digest = hashlib.sha256(f"geoaudit-sample:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------- the prompt


@dataclass(frozen=True)
class AnswerPrompt:
    """A versioned answer prompt loaded from ``geoaudit/prompts/<version>.toml``."""

    version: str
    template: str
    source_template: str
    source_separator: str = "\n"
    untitled: str = "(untitled)"
    truncation_marker: str = " ..."
    description: str = ""
    #: Optional system message, and one worked example (user turn, assistant turn) sent before the question.
    #: Collapse each source's whitespace to single spaces (one line per source, for small models).
    flatten_sources: bool = False
    system: str = ""
    example_user: str = ""
    example_assistant: str = ""

    def messages(self, user: str, *, example: bool = True) -> tuple[tuple[str, str], ...]:
        """The chat turns of one answer request: system, worked example (unless ``example`` is
        False), then ``user``."""
        turns: list[tuple[str, str]] = []
        if self.system:
            turns.append(("system", self.system))
        if example and self.example_user and self.example_assistant:
            turns += [("user", self.example_user), ("assistant", self.example_assistant)]
        turns.append(("user", user))
        return tuple(turns)


_P = TypeVar("_P")


def _load_prompt_file(version: str, family: str, cls: type[_P]) -> tuple[Path, _P]:
    """Read ``prompts/<version>.toml`` into ``cls``; ``family`` ("answer", "readings") names the
    versions listed when the file does not exist.

    Raises:
        ConfigError: no such file, a version field that does not match the name, or a missing field.
    """
    path = prompts_dir() / f"{version}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in prompts_dir().glob(f"{family}-*.toml"))
        raise ConfigError(f"no {family} prompt {version!r}", hint=f"known versions: {', '.join(known) or 'none'}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != version:
        raise ConfigError(f"{path}: its version field {data.get('version')!r} does not match the file name")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return path, cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@lru_cache(maxsize=16)
def load_answer_prompt(version: str = PROMPT_FOR_REMOTE) -> AnswerPrompt:
    """Load the answer prompt ``version`` (``auto`` means the remote-model default).

    Raises:
        ConfigError: no such prompt file, or it lacks a field or placeholder.
    """
    path, prompt = _load_prompt_file(PROMPT_FOR_REMOTE if version == "auto" else version, "answer", AnswerPrompt)
    for placeholder in ("{query}", "{sources}"):
        if placeholder not in prompt.template:
            raise ConfigError(f"{path}: template lacks {placeholder}")
    return prompt


@dataclass(frozen=True)
class SourceView:
    """How one source was shown to the model: identity, retrieval score, truncation."""

    id: str
    title: str
    url: str
    content_hash: str
    chars: int
    shown_chars: int
    truncated: bool
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def truncate_text(text: str, budget: int | None) -> tuple[str, bool]:
    """``text`` cut to at most ``budget`` characters, at a word boundary when one is near.

    Returns (shown text, whether it was cut). The cut backs off to the last whitespace if that
    keeps at least 80% of the budget, so words are not split in the middle.
    """
    text = text.strip()
    if budget is None or len(text) <= budget:
        return text, False
    cut = text[:budget]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= int(budget * 0.8):
        cut = cut[:space]
    return cut.rstrip(), True


def format_sources(
    sources: Sequence[Document], config: EngineConfig, scores: Sequence[float] | None = None
) -> tuple[str, list[SourceView], list[str]]:
    """The numbered sources block, what each source looked like, and each source's shown text."""
    prompt = load_answer_prompt(config.prompt_version)
    blocks: list[str] = []
    views: list[SourceView] = []
    shown: list[str] = []
    for i, doc in enumerate(sources):
        text, cut = truncate_text(
            " ".join(doc.text.split()) if prompt.flatten_sources else doc.text, config.source_budget_chars
        )
        title = " ".join(doc.title.split())[:200] or prompt.untitled
        blocks.append(
            prompt.source_template.format(n=i + 1, title=title, text=text + (prompt.truncation_marker if cut else ""))
        )
        views.append(
            SourceView(
                id=doc.id,
                title=doc.title,
                url=doc.url,
                content_hash=doc.content_hash,
                chars=len(doc.text.strip()),
                shown_chars=len(text),
                truncated=cut,
                score=None if scores is None else float(scores[i]),
            )
        )
        shown.append(text)
    return prompt.source_separator.join(blocks), views, shown


def build_prompt(
    query: str, sources: Sequence[Document], config: EngineConfig, scores: Sequence[float] | None = None
) -> tuple[str, list[SourceView], list[str]]:
    """The full answer prompt for ``query`` over ``sources`` (display order), plus source views."""
    block, views, shown = format_sources(sources, config, scores)
    template = load_answer_prompt(config.prompt_version).template
    # str.replace, not format: a query or source may contain braces.
    prompt = template.replace("{sources}", "\x00SOURCES\x00").replace("{query}", query.strip())
    return prompt.replace("\x00SOURCES\x00", block), views, shown


@dataclass
class Answer:
    """The engine's answer to one query over one ordered set of sources, with provenance.

    Attributes:
        query: the question.
        sources: ids of the shown documents in display order (source i is cited as ``[i+1]``).
        samples: the ``config.samples`` sampled answers.
        attribution: the concrete attribution mode used (never ``auto``).
        prompt_version: the answer prompt version.
        config: the engine configuration.
        model: the resolved model string.
        seed: the call's seed (samples use :func:`sample_seed` of it).
        source_info: how each source was shown (title, url, hash, truncation, retrieval score).
        notes: readable remarks (e.g. fewer candidates than k).
    """

    query: str
    sources: list[str]
    samples: list[AnswerSample]
    attribution: str
    prompt_version: str
    config: EngineConfig
    model: str = ""
    seed: int = 0
    source_info: list[SourceView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The deterministic readings of the call (relevance, selection), when those stages ran.
    readings: Readings | None = None

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    @property
    def no_citation_samples(self) -> int:
        return sum(1 for s in self.samples if s.no_citation)

    def index_of(self, doc_id: str) -> int:
        """Display index (0-based) of document ``doc_id``; ValueError if it was not shown."""
        return self.sources.index(doc_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "sources": list(self.sources),
            "samples": [s.to_dict() for s in self.samples],
            "attribution": self.attribution,
            "prompt_version": self.prompt_version,
            "config": self.config.describe(),
            "model": self.model,
            "seed": self.seed,
            "source_info": [v.to_dict() for v in self.source_info],
            "notes": list(self.notes),
            "readings": None if self.readings is None else self.readings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        return cls(
            query=data["query"],
            sources=list(data["sources"]),
            samples=[AnswerSample.from_dict(s) for s in data["samples"]],
            attribution=data["attribution"],
            prompt_version=data["prompt_version"],
            config=EngineConfig.from_dict(data.get("config") or {}),
            model=data.get("model", ""),
            seed=int(data.get("seed", 0)),
            source_info=[SourceView(**v) for v in data.get("source_info", [])],
            notes=list(data.get("notes", [])),
            readings=Readings.from_dict(data["readings"]) if data.get("readings") else None,
        )


def select_sources(
    query: str, docs: Sequence[Document], config: EngineConfig, *, seed: int = 0, retriever: Any = None
) -> tuple[list[Document], list[float] | None, list[str]]:
    """Pick and order the top-k sources: (sources in display order, retrieval scores or None, notes).

    Raises:
        InputError: no candidate documents.
    """
    if not docs:
        raise InputError("no documents to answer from", hint="give at least one document with --docs")
    notes: list[str] = []
    if len(docs) < config.k:
        notes.append(f"only {len(docs)} document{'s' if len(docs) != 1 else ''} given; showing all (k={config.k})")
    scores: list[float] | None = None
    if config.order == "retrieved":
        if retriever is None:
            from geoaudit.retrieval import BM25Retriever

            retriever = BM25Retriever()
        ranked = retriever.rank(query, docs)[: config.k]
        chosen = [docs[r.index] for r in ranked]
        scores = [r.score for r in ranked]
    else:
        chosen = list(docs[: config.k])
        if config.order == "shuffled":
            rng = random.Random(sample_seed(seed, -1))  # a stream of its own, apart from sample seeds
            rng.shuffle(chosen)
    return chosen, scores, notes


def _usage(resp: LLMResponse) -> dict[str, Any]:
    return {
        "model": resp.model,
        "prompt_tokens": resp.prompt_tokens,
        "completion_tokens": resp.completion_tokens,
        "cost": resp.cost,
        "finish_reason": resp.finish_reason,
    }


def answer_requests(
    query: str,
    sources: Sequence[Document],
    config: EngineConfig,
    *,
    seed: int = 0,
    scores: Sequence[float] | None = None,
) -> tuple[list[LLMRequest], list[SourceView], list[str]]:
    """The gateway requests of one answer (one per sample), the source views and shown texts."""
    prompt, views, shown = build_prompt(query, sources, config, scores)
    turns = load_answer_prompt(config.prompt_version).messages(prompt)
    version = load_answer_prompt(config.prompt_version).version
    reqs = [
        LLMRequest(
            messages=turns,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=sample_seed(seed, i),
            prompt_version=version,
            purpose="answer",
        )
        for i in range(config.samples)
    ]
    return reqs, views, shown


# --------------------------------------------------------------------------- readings


@dataclass(frozen=True)
class ReadingsPrompt:
    """The versioned prompt pieces of the deterministic readings (``geoaudit/prompts/<version>.toml``)."""

    version: str
    selection_prefill: str
    selection_instruction: str
    relevance_context: str
    relevance_continuation: str
    description: str = ""
    #: Whether the selection reading keeps the answer prompt's worked example turn.
    selection_example: bool = True


@lru_cache(maxsize=8)
def load_readings_prompt(version: str = DEFAULT_READINGS_VERSION) -> ReadingsPrompt:
    """Load the readings prompt ``version``.

    Raises:
        ConfigError: no such file, or a field or placeholder is missing.
    """
    path, prompt = _load_prompt_file(version, "readings", ReadingsPrompt)
    if "{text}" not in prompt.relevance_context or "{query}" not in prompt.relevance_continuation:
        raise ConfigError(f"{path}: relevance_context needs {{text}} and relevance_continuation {{query}}")
    return prompt


@dataclass
class Readings:
    """Deterministic readings of one call, per shown source (display order).

    Attributes:
        selection: share of the next-token probability, right where the engine starts citing,
            that goes to each source's number: p_i / Σ_j p_j over the shown sources (sums to 1).
        selection_mass: Σ_j p_j, the probability that the next token is a valid source number at
            all (low values mean the model was not about to cite; the shares are then less telling).
        relevance: softmax over the shown sources of ``query_loglik`` (sums to 1): each source's
            share of query likelihood among its competitors.
        query_loglik: mean per-token log P(query | source) of each source read on its own
            (Sachan et al. 2022; independent of position and competitors).
        version: the readings prompt version.
    """

    selection: list[float] | None = None
    selection_mass: float | None = None
    relevance: list[float] | None = None
    query_loglik: list[float | None] | None = None
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Readings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _source_text(doc: Document, config: EngineConfig) -> str:
    """A source's text as the model is shown it (flattened, cut to the budget)."""
    prompt = load_answer_prompt(config.prompt_version)
    text, _ = truncate_text(
        " ".join(doc.text.split()) if prompt.flatten_sources else doc.text, config.source_budget_chars
    )
    return text


def selection_request(query: str, sources: Sequence[Document], config: EngineConfig, model: str) -> LLMRequest:
    """The ``choices`` request whose next-token distribution over "1".."k" is the selection reading.

    The turns are exactly the answer prompt's; the embedded model continues an assistant turn begun
    with the readings prompt's prefill, other backends get its instruction after the question.
    """
    rp = load_readings_prompt(config.readings_version)
    user, _, _ = build_prompt(query, sources, config)
    turns = load_answer_prompt(config.prompt_version).messages(user, example=rp.selection_example)
    prefill = ""
    if is_embedded(model):
        prefill = rp.selection_prefill
    else:
        turns = (*turns[:-1], (turns[-1][0], turns[-1][1] + "\n\n" + rp.selection_instruction))
    return LLMRequest(
        messages=turns,
        kind="choices",
        prefill=prefill,
        options=tuple(str(i + 1) for i in range(len(sources))),
        prompt_version=f"{config.prompt_version}+{rp.version}",
        purpose="selection",
    )


def relevance_request(query: str, doc: Document, config: EngineConfig) -> LLMRequest:
    """The ``likelihood`` request of log P(query | source) for one source on its own."""
    rp = load_readings_prompt(config.readings_version)
    title = " ".join(doc.title.split())[:200] or "(untitled)"
    # str.replace, not format: page text may contain braces.
    context = rp.relevance_context.replace("{title}", title).replace("{text}", _source_text(doc, config))
    return LLMRequest(
        messages=(("user", context),),
        kind="likelihood",
        continuation=rp.relevance_continuation.replace("{query}", " ".join(query.split())),
        prompt_version=rp.version,
        purpose="relevance",
    )


def _softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


async def aread(
    gateway: Gateway,
    query: str,
    sources: Sequence[Document],
    config: EngineConfig,
    *,
    target: int | None = None,
) -> Readings:
    """The relevance and selection readings of ``query`` over ``sources`` (display order), for the
    stages of the resolved ``config`` that are readings. Identical requests are cache hits, so a
    source unchanged between two conditions is read once. With ``relevance_scope="target"`` only
    source ``target`` (0-based) gets a relevance reading (no shares then)."""
    model = gateway.model
    config = config.resolved(model)
    out = Readings(version=config.readings_version)
    calls: list[LLMRequest] = []
    relevant = list(range(len(sources)))
    if config.relevance_scope == "target":
        relevant = [target] if target is not None and 0 <= target < len(sources) else []
    if "relevance" in config.stages:
        calls += [relevance_request(query, sources[i], config) for i in relevant]
    if "selection" in config.stages:
        calls.append(selection_request(query, sources, config, model))
    if not calls:
        return out
    responses = await gateway.amap(calls)
    if "relevance" in config.stages and relevant:
        lls: list[float | None] = [None] * len(sources)
        for i, resp in zip(relevant, responses[: len(relevant)]):
            r = resp.reading or {}
            lls[i] = float(r["logprob"]) / max(1, int(r["tokens"]))
        out.query_loglik = lls
        if len(relevant) == len(sources):
            out.relevance = _softmax([v for v in lls if v is not None])
    if "selection" in config.stages:
        r = responses[-1].reading or {}
        probs = [math.exp(float(r["logprobs"].get(str(i + 1), float("-inf")))) for i in range(len(sources))]
        mass = sum(probs)
        out.selection_mass = mass
        out.selection = [p / mass for p in probs] if mass > 0 else [0.0] * len(sources)
    return out


async def agenerate(
    gateway: Gateway,
    query: str,
    sources: Sequence[Document],
    config: EngineConfig | None = None,
    *,
    seed: int = 0,
    scores: Sequence[float] | None = None,
    notes: Sequence[str] = (),
    target: int | None = None,
) -> Answer:
    """Answer ``query`` from ``sources`` exactly as given (display order, all of them, no top-k cut).

    Runs the stages of the resolved ``config``: the readings (:func:`aread`) and, with stage
    ``answer``, ``config.samples`` sampled answers (``samples`` is empty without it). The
    simulation uses this to control the order itself (e.g. the target moved to position 1).

    Raises:
        InputError: empty query or no sources.
        BackendError / UnknownModelError: from the gateway.
    """
    config = config or EngineConfig()
    if not query.strip():
        raise InputError("the query is empty")
    if not sources:
        raise InputError("no sources to answer from")
    model = gateway.model
    config = config.resolved(model)
    mode = config.attribution
    reqs, views, shown = answer_requests(query, sources, config, seed=seed, scores=scores)
    if "answer" not in config.stages:
        reqs = []
    readings_task = asyncio.ensure_future(aread(gateway, query, sources, config, target=target))
    try:
        responses = await gateway.amap(reqs)
    finally:
        readings = await readings_task
    samples = [
        make_sample(
            r.text,
            shown,
            mode,
            config.overlap_threshold,
            seed=req.seed,
            usage=_usage(r),
            cached=r.cached,
        )
        for req, r in zip(reqs, responses)
    ]
    return Answer(
        query=query,
        sources=[d.id for d in sources],
        samples=samples,
        attribution=mode,
        prompt_version=config.prompt_version,
        config=config,
        model=model,
        seed=seed,
        source_info=views,
        notes=list(notes),
        readings=readings,
    )


async def aanswer(
    gateway: Gateway,
    query: str,
    docs: Sequence[Document],
    config: EngineConfig | None = None,
    *,
    seed: int = 0,
    retriever: Any = None,
) -> Answer:
    """Select and order the top-k of ``docs`` (``config.order``), then :func:`agenerate`.

    Raises:
        InputError: empty query or no documents.
    """
    config = config or EngineConfig()
    chosen, scores, notes = select_sources(query, docs, config, seed=seed, retriever=retriever)
    return await agenerate(gateway, query, chosen, config, seed=seed, scores=scores, notes=notes)


def answer(
    gateway: Gateway,
    query: str,
    docs: Sequence[Document],
    config: EngineConfig | None = None,
    *,
    seed: int = 0,
    retriever: Any = None,
) -> Answer:
    """Synchronous :func:`aanswer` (works inside Jupyter's running loop too)."""
    return run_sync(aanswer(gateway, query, docs, config, seed=seed, retriever=retriever))


def generate(
    gateway: Gateway,
    query: str,
    sources: Sequence[Document],
    config: EngineConfig | None = None,
    *,
    seed: int = 0,
) -> Answer:
    """Synchronous :func:`agenerate`."""
    return run_sync(agenerate(gateway, query, sources, config, seed=seed))


__all__ = [
    "ATTRIBUTIONS",
    "ORDERS",
    "STAGES",
    "Answer",
    "AnswerPrompt",
    "EngineConfig",
    "Readings",
    "ReadingsPrompt",
    "SourceView",
    "aanswer",
    "agenerate",
    "answer",
    "answer_requests",
    "aread",
    "build_prompt",
    "format_sources",
    "generate",
    "is_embedded",
    "load_answer_prompt",
    "load_readings_prompt",
    "relevance_request",
    "sample_seed",
    "select_sources",
    "selection_request",
    "truncate_text",
]
