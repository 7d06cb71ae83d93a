"""The simulated generative engine: sources in, a cited answer out, every citation accounted for.

Pipeline of one call (:func:`aanswer`)::

    candidates --select/order (given | retrieved by BM25 | seeded shuffle), top k-->
    sources --truncate to the character budget (recorded per source), number 1..k-->
    prompt (versioned data file, instructions + question before the sources: prefix-stable)
    --gateway, n samples, sample i with its own derived seed (cached)-->
    raw text --split into sentences, parse [n] citations-->
    attribution (citations | overlap | hybrid; how each sentence got its sources is recorded)
    --> Answer

Citations are 1-based in the text and 0-based everywhere in the data (``Sentence.citations``,
``AnswerSample.citation_order``). ``[0]`` and numbers above the number of sources are counted as
hallucinated citations and never credited to a source (the GEO code credits ``[0]`` to the last
source through a negative index; geoaudit does not).
"""

from __future__ import annotations

import hashlib
import random
import re
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

from geoaudit.documents import Document
from geoaudit.errors import ConfigError, InputError
from geoaudit.llm import Gateway, LLMRequest, LLMResponse, run_sync
from geoaudit.resources import prompts_dir

ORDERS = ("given", "retrieved", "shuffled")
ATTRIBUTIONS = ("auto", "citations", "overlap", "hybrid")
PAWC_VARIANTS = ("paper", "code")
DEFAULT_PROMPT_VERSION = "auto"
#: ``auto`` resolves to these: small embedded models need a worked example to produce cited answers.
PROMPT_FOR_REMOTE = "answer-v1"
PROMPT_FOR_LOCAL = "answer-local-v1"
HOW = ("explicit", "overlap", "none")


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
    """

    k: int = 5
    order: str = "given"
    attribution: str = "auto"
    overlap_threshold: float = 0.6
    samples: int = 1
    temperature: float = 0.7
    max_tokens: int = 200
    source_budget_chars: int | None = 1500
    pawc_variant: str = "paper"
    prompt_version: str = DEFAULT_PROMPT_VERSION

    def __post_init__(self) -> None:
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
        return "hybrid" if model.startswith("local/") or model == "smollm2" else "citations"

    def resolve_prompt_version(self, model: str) -> str:
        """The concrete answer prompt for ``model`` (resolves ``auto``)."""
        if self.prompt_version != "auto":
            return self.prompt_version
        return PROMPT_FOR_LOCAL if model.startswith("local/") or model == "smollm2" else PROMPT_FOR_REMOTE

    def resolved(self, model: str) -> "EngineConfig":
        """A copy with ``auto`` attribution and prompt version resolved for ``model``."""
        return replace(
            self, attribution=self.resolve_attribution(model), prompt_version=self.resolve_prompt_version(model)
        )

    def describe(self) -> dict[str, Any]:
        """All settings as a JSON-ready dict (provenance)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


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

    def messages(self, user: str) -> tuple[tuple[str, str], ...]:
        """The chat turns of one answer request: system, worked example, then ``user``."""
        turns: list[tuple[str, str]] = []
        if self.system:
            turns.append(("system", self.system))
        if self.example_user and self.example_assistant:
            turns += [("user", self.example_user), ("assistant", self.example_assistant)]
        turns.append(("user", user))
        return tuple(turns)


@lru_cache(maxsize=16)
def load_answer_prompt(version: str = PROMPT_FOR_REMOTE) -> AnswerPrompt:
    """Load the answer prompt ``version`` (``auto`` means the remote-model default).

    Raises:
        ConfigError: no such prompt file, or it lacks a field or placeholder.
    """
    if version == "auto":
        version = PROMPT_FOR_REMOTE
    path = prompts_dir() / f"{version}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in prompts_dir().glob("answer-*.toml"))
        raise ConfigError(f"no answer prompt {version!r}", hint=f"known versions: {', '.join(known) or 'none'}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != version:
        raise ConfigError(f"{path}: its version field {data.get('version')!r} does not match the file name")
    try:
        prompt = AnswerPrompt(**{k: v for k, v in data.items() if k in {f.name for f in fields(AnswerPrompt)}})
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
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
        text, cut = truncate_text(" ".join(doc.text.split()) if prompt.flatten_sources else doc.text, config.source_budget_chars)
        title = " ".join(doc.title.split())[:200] or prompt.untitled
        blocks.append(
            prompt.source_template.format(
                n=i + 1, title=title, text=text + (prompt.truncation_marker if cut else "")
            )
        )
        views.append(
            SourceView(
                id=doc.id, title=doc.title, url=doc.url, content_hash=doc.content_hash,
                chars=len(doc.text.strip()), shown_chars=len(text), truncated=cut,
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


# --------------------------------------------------------------------------- citations


# Possessive repeats (*+): a giving-back never helps these patterns, and without them an answer
# with "[source" and a long run of spaces was rescanned quadratically (issue 11).
_NUM = r"\d{1,6}(?:\s*+[-\u2013\u2014]\s*+\d{1,6})?"
_PREFIX = r"(?:(?:source|src|doc|document|ref)\s*+#?\s*+)?"
_PREFIX_RE = re.compile("^" + _PREFIX, re.IGNORECASE)
#: One bracketed citation group: [1], [1, 2], [1-3], [1–3], [1; 4], [Source 2].
CITATION_RE = re.compile(
    r"\[\s*+" + _PREFIX + r"(" + _NUM + r"(?:\s*+[,;]\s*+" + _PREFIX + _NUM + r")*+)\s*+\]", re.IGNORECASE
)
_MAX_RANGE = 20  # a "range" wider than this is not a citation range but junk like [1-400]


def parse_citation_group(inner: str, n_sources: int) -> tuple[list[int], list[str]]:
    """Parse the inside of one bracket group.

    Returns (valid 0-based source indices in written order, hallucinated citations as written).
    A range ``a-b`` expands to a..b (either direction); ``0`` and numbers above ``n_sources``
    are hallucinated; a range wider than 20 counts as one hallucinated citation.
    """
    valid: list[int] = []
    bad: list[str] = []
    for part in re.split(r"(?<!\s)\s*+[,;]\s*", inner.strip()):
        part = _PREFIX_RE.sub("", part).strip()
        m = re.fullmatch(r"(\d+)\s*[-\u2013\u2014]\s*(\d+)", part)
        if m:
            lo, hi = sorted((int(m.group(1)), int(m.group(2))))
            if hi - lo > _MAX_RANGE:
                bad.append(part)
                continue
            numbers = list(range(lo, hi + 1))
        elif part.isdigit():
            numbers = [int(part)]
        else:
            continue
        for n in numbers:
            if 1 <= n <= n_sources:
                valid.append(n - 1)
            else:
                bad.append(str(n))
    return valid, bad


def find_citations(text: str, n_sources: int) -> tuple[list[int], list[str]]:
    """All citations in ``text``: (distinct valid 0-based indices in first-written order, hallucinated)."""
    valid: list[int] = []
    bad: list[str] = []
    for m in CITATION_RE.finditer(text):
        v, b = parse_citation_group(m.group(1), n_sources)
        valid.extend(i for i in v if i not in valid)
        bad.extend(x for x in b if x not in bad)
    return valid, bad


def strip_citations(text: str) -> str:
    """``text`` without citation groups, with the spaces they leave tidied."""
    out = CITATION_RE.sub("", text)
    out = re.sub(r"(?<!\s)\s++([.,;:!?])", r"\1", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


# --------------------------------------------------------------------------- sentences

# Words whose trailing period does not end a sentence (lowercase, without the final period).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs e.g i.e cf fig figs al approx dept est no nos vol pp ca "
    "jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt rev hon".split()
)
_BOUNDARY_RE = re.compile(
    # end punctuation (from the start of its run: linear on "......"), closing quotes/brackets
    r"(?<![.!?\u2026])[.!?\u2026]++[\"'\u201d\u2019)\]]*+"
    r"((?:\s*+" + CITATION_RE.pattern + r"){0,16})"  # citations written after the period stay with it
    r"\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9\u00c0-\u024f])",  # next sentence starts with a capital or digit
    re.IGNORECASE,
)
_PUNCT_RE = re.compile(r"[.!?\u2026]++[\"'\u201d\u2019)\]]*+")
_LIST_MARK_RE = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*\u2022+]\s+|\d{1,3}[.)]\s+|[a-z][.)]\s+(?=[A-Z]))")
_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")


def _is_abbreviation(before: str, punct: str) -> bool:
    if not punct.startswith(".") or len(punct.rstrip("\"'\u201d\u2019)]")) > 1:
        return False
    token = re.sub(r"^[\"'(\[\u201c\u2018]+", "", before.split()[-1] if before.split() else "")
    low = token.lower()
    if low in _ABBREVIATIONS:
        return True
    if re.fullmatch(r"[A-Za-z]", token):  # an initial: "J. Smith"
        return True
    return bool(re.fullmatch(r"(?:[A-Za-z]\.)++[A-Za-z]", token))  # "U.S", "e.g" without last dot


def _split_block(block: str) -> list[str]:
    # Boundaries are found case-sensitively for the capital letter; CITATION_RE needs IGNORECASE
    # only for "Source", so the look-ahead is checked by hand.
    pieces: list[str] = []
    start = 0
    for m in _BOUNDARY_RE.finditer(block):
        nxt = block[m.end(): m.end() + 2].lstrip("\"'\u201c\u2018([")
        if not nxt or not (nxt[0].isupper() or nxt[0].isdigit()):
            continue
        punct_end = _PUNCT_RE.match(block, m.start()).end()  # type: ignore[union-attr]  # no copy of the rest
        if _is_abbreviation(block[start: m.start()], block[m.start(): punct_end]):
            continue
        cut = m.end()
        pieces.append(block[start:cut].strip())
        start = cut
    pieces.append(block[start:].strip())
    return [p for p in pieces if p]


def _blocks(text: str) -> list[str]:
    """Lines of the answer as blocks; a hard-wrapped line continues when the next starts lowercase."""
    blocks: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        line = _LIST_MARK_RE.sub("", line).replace("**", "").replace("__", "").strip()
        if not line:
            continue
        if blocks and line[0].islower() and not blocks[-1].endswith((".", "!", "?", ":", "]")):
            blocks[-1] += " " + line
        else:
            blocks.append(line)
    return blocks


def split_sentences(text: str) -> list[str]:
    """Split an answer into sentences, without nltk.

    Lines (paragraphs, list items, headings) are split first, list markers and ``**`` removed;
    inside a line a sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by a capital letter or a
    digit, except after common abbreviations (``Dr.``, ``e.g.``, ``vs.``), initials (``J.``) and
    dotted acronyms (``U.S.``). Citation groups right after the end punctuation (``... end. [2] Next``)
    stay with the sentence they follow; a piece that holds only citations joins the previous sentence.
    """
    out: list[str] = []
    for block in _blocks(text):
        for piece in _split_block(block):
            if out and not _WORD_RE.search(strip_citations(piece)):
                out[-1] = f"{out[-1]} {piece}"
            else:
                out.append(piece)
    return out


def words(text: str, min_chars: int = 1) -> list[str]:
    """Words of ``text`` (letters/digits, inner apostrophes and hyphens) of at least ``min_chars``."""
    return [w for w in _WORD_RE.findall(text) if len(w) >= min_chars]


# --------------------------------------------------------------------------- attribution

_STOPWORDS = frozenset(
    """the and for are but not you all any can had her was one our out has his how its may new now
    who did get him let she too use that with have this will your from they know want been good much
    some time very when come here just like long make many more only over such take than them well
    were what also into most other their there these those which would about after could every first
    where while being both does each should through under until because between however""".split()
)


def content_tokens(text: str) -> set[str]:
    """Lowercased words of 3+ characters without common English function words (overlap attribution)."""
    return {w for w in (t.lower() for t in words(text, 3)) if w not in _STOPWORDS}


def overlap_scores(sentence: str, source_tokens: Sequence[set[str]]) -> list[float]:
    """Share of the sentence's content words found in each source: |T_s ∩ T_c| / |T_s| (0 if T_s empty)."""
    tokens = content_tokens(strip_citations(sentence))
    if not tokens:
        return [0.0] * len(source_tokens)
    return [len(tokens & src) / len(tokens) for src in source_tokens]


def overlap_sources(scores: Sequence[float], threshold: float) -> list[int]:
    """Sources with the highest overlap, if it reaches ``threshold``; ties give all tied sources."""
    if not scores:
        return []
    best = max(scores)
    if best <= 0.0 or best < threshold:
        return []
    return [i for i, s in enumerate(scores) if abs(s - best) <= 1e-9]


@dataclass
class Sentence:
    """One answer sentence and the sources it is attributed to.

    Attributes:
        text: the sentence without citation marks (what words are counted on).
        citations: attributed sources, 0-based, distinct, in written order (explicit) or index order (overlap).
        how: ``explicit`` (the model's valid citations), ``overlap`` (post hoc), ``none``.
        explicit: the valid citations the model wrote in this sentence (0-based), whatever the mode.
        hallucinated: citations the model wrote that name no shown source, as written ("0", "7", "1-400").
        raw: the sentence as the model wrote it.
    """

    text: str
    citations: list[int] = field(default_factory=list)
    how: str = "none"
    explicit: list[int] = field(default_factory=list)
    hallucinated: list[str] = field(default_factory=list)
    raw: str = ""


def parse_answer(raw: str, n_sources: int) -> list[Sentence]:
    """Sentences of ``raw`` with their explicit citations parsed (no attribution yet)."""
    out = []
    for piece in split_sentences(raw):
        valid, bad = find_citations(piece, n_sources)
        out.append(Sentence(text=strip_citations(piece), explicit=valid, hallucinated=bad, raw=piece))
    return out


def attribute(
    sentences: Sequence[Sentence], shown_texts: Sequence[str], mode: str, threshold: float
) -> list[Sentence]:
    """Fill ``citations``/``how`` of every sentence according to the attribution ``mode``.

    citations: explicit valid citations only. overlap: every sentence is attributed to the
    source(s) with the highest content-word overlap at or above ``threshold`` (ties: all), ignoring
    what the model wrote. hybrid: explicit valid citations where the sentence has any, overlap
    elsewhere (also for sentences whose only citations are hallucinated).
    """
    if mode not in ("citations", "overlap", "hybrid"):
        raise ConfigError(f"attribution mode must be resolved (citations/overlap/hybrid), got {mode!r}")
    src_tokens = [content_tokens(t) for t in shown_texts] if mode != "citations" else []
    out = []
    for s in sentences:
        cites: list[int] = []
        how = "none"
        if mode in ("citations", "hybrid") and s.explicit:
            cites, how = list(s.explicit), "explicit"
        elif mode in ("overlap", "hybrid"):
            cites = overlap_sources(overlap_scores(s.text, src_tokens), threshold)
            how = "overlap" if cites else "none"
        out.append(Sentence(s.text, cites, how, list(s.explicit), list(s.hallucinated), s.raw))
    return out


def citation_order(sentences: Sequence[Sentence]) -> list[int]:
    """Distinct attributed sources in order of first appearance (C-SEO Bench's "Citation Order", 0-based)."""
    order: list[int] = []
    for s in sentences:
        for c in s.citations:
            if c not in order:
                order.append(c)
    return order


# --------------------------------------------------------------------------- answers


@dataclass
class AnswerSample:
    """One sampled answer, parsed and attributed.

    Attributes:
        raw: the model's text.
        sentences: the sentences, each with its attributed sources and how they were obtained.
        hallucinated_citations: citations naming no shown source (``[0]``, ``[7]`` of 5), per sentence distinct.
        valid_citation_count: valid explicit citations the model wrote (per sentence distinct).
        citation_order: distinct attributed sources by first appearance (0-based).
        seed: the sample's derived seed (:func:`sample_seed`).
        usage: prompt/completion tokens and cost of the call.
        cached: whether the reply came from the cache.
    """

    raw: str
    sentences: list[Sentence]
    hallucinated_citations: int
    valid_citation_count: int
    citation_order: list[int]
    seed: int | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def no_citation(self) -> bool:
        """No sentence is attributed to any source (after attribution)."""
        return not any(s.citations for s in self.sentences)

    def render(self, *, marks: bool = True) -> str:
        """The answer as sentences with their attributed citations written ``[n]`` (1-based)."""
        parts = []
        for s in self.sentences:
            cites = "".join(f"[{c + 1}]" for c in s.citations) if marks else ""
            parts.append(f"{s.text}{' ' if cites else ''}{cites}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnswerSample":
        d = dict(data)
        d["sentences"] = [Sentence(**s) for s in d.get("sentences", [])]
        return cls(**d)


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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Answer":
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
        )


def make_sample(
    raw: str, shown_texts: Sequence[str], mode: str, threshold: float, *,
    seed: int | None = None, usage: dict[str, Any] | None = None, cached: bool = False,
) -> AnswerSample:
    """Parse and attribute one raw answer over sources whose shown texts are ``shown_texts``."""
    sentences = attribute(parse_answer(raw, len(shown_texts)), shown_texts, mode, threshold)
    return AnswerSample(
        raw=raw,
        sentences=sentences,
        hallucinated_citations=sum(len(s.hallucinated) for s in sentences),
        valid_citation_count=sum(len(s.explicit) for s in sentences),
        citation_order=citation_order(sentences),
        seed=seed,
        usage=usage or {},
        cached=cached,
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
    query: str, sources: Sequence[Document], config: EngineConfig, *, seed: int = 0,
    scores: Sequence[float] | None = None,
) -> tuple[list[LLMRequest], list[SourceView], list[str]]:
    """The gateway requests of one answer (one per sample), the source views and shown texts."""
    prompt, views, shown = build_prompt(query, sources, config, scores)
    turns = load_answer_prompt(config.prompt_version).messages(prompt)
    version = load_answer_prompt(config.prompt_version).version
    reqs = [
        LLMRequest(
            messages=turns, temperature=config.temperature, max_tokens=config.max_tokens,
            seed=sample_seed(seed, i), prompt_version=version, purpose="answer",
        )
        for i in range(config.samples)
    ]
    return reqs, views, shown


async def agenerate(
    gateway: Gateway, query: str, sources: Sequence[Document], config: EngineConfig | None = None, *,
    seed: int = 0, scores: Sequence[float] | None = None, notes: Sequence[str] = (),
) -> Answer:
    """Answer ``query`` from ``sources`` exactly as given (display order, all of them, no top-k cut).

    The simulation uses this to control the order itself (e.g. the target moved to position 1).

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
    responses = await gateway.amap(reqs)
    samples = [
        make_sample(
            r.text, shown, mode, config.overlap_threshold,
            seed=req.seed, usage=_usage(r), cached=r.cached,
        )
        for req, r in zip(reqs, responses)
    ]
    return Answer(
        query=query, sources=[d.id for d in sources], samples=samples, attribution=mode,
        prompt_version=config.prompt_version, config=config, model=model, seed=seed,
        source_info=views, notes=list(notes),
    )


async def aanswer(
    gateway: Gateway, query: str, docs: Sequence[Document], config: EngineConfig | None = None, *,
    seed: int = 0, retriever: Any = None,
) -> Answer:
    """Select and order the top-k of ``docs`` (``config.order``), then :func:`agenerate`.

    Raises:
        InputError: empty query or no documents.
    """
    config = config or EngineConfig()
    chosen, scores, notes = select_sources(query, docs, config, seed=seed, retriever=retriever)
    return await agenerate(gateway, query, chosen, config, seed=seed, scores=scores, notes=notes)


def answer(
    gateway: Gateway, query: str, docs: Sequence[Document], config: EngineConfig | None = None, *,
    seed: int = 0, retriever: Any = None,
) -> Answer:
    """Synchronous :func:`aanswer` (works inside Jupyter's running loop too)."""
    return run_sync(aanswer(gateway, query, docs, config, seed=seed, retriever=retriever))


def generate(
    gateway: Gateway, query: str, sources: Sequence[Document], config: EngineConfig | None = None, *,
    seed: int = 0,
) -> Answer:
    """Synchronous :func:`agenerate`."""
    return run_sync(agenerate(gateway, query, sources, config, seed=seed))


__all__ = [
    "ATTRIBUTIONS", "ORDERS", "PAWC_VARIANTS", "Answer", "AskResult", "aask", "ask", "AnswerPrompt", "AnswerSample", "EngineConfig",
    "Sentence", "SourceView", "aanswer", "agenerate", "answer", "attribute", "build_prompt",
    "citation_order", "content_tokens", "find_citations", "generate", "load_answer_prompt", "make_sample",
    "overlap_scores", "overlap_sources", "parse_answer", "parse_citation_group", "sample_seed",
    "select_sources", "split_sentences", "strip_citations", "truncate_text", "words",
]


# --------------------------------------------------------------------------- one-call convenience


@dataclass
class AskResult:
    """An answer with every source's metrics (and judgements, when asked): what ``geoaudit ask`` shows."""

    answer: Answer
    metrics: list[dict[str, Any]]
    variant: str
    judgements: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        info = self.answer.source_info
        return {
            "answer": self.answer.to_dict(),
            "pawc_variant": self.variant,
            "sources": [
                {"index": i + 1, "id": v.id, "title": v.title, "url": v.url, "truncated": v.truncated,
                 "shown_chars": v.shown_chars, "chars": v.chars, "score": v.score, "metrics": self.metrics[i]}
                for i, v in enumerate(info)
            ],
            "summary": {
                "samples": len(self.answer.samples),
                "no_citation_samples": self.answer.no_citation_samples,
                "hallucinated_citations": sum(s.hallucinated_citations for s in self.answer.samples),
                "valid_citations": sum(s.valid_citation_count for s in self.answer.samples),
            },
            "judgements": None if self.judgements is None else [j.to_dict() for j in self.judgements],
        }


async def aask(
    gateway: Gateway, query: str, docs: Sequence[Document], config: EngineConfig | None = None, *,
    seed: int = 0, retriever: Any = None, judge: bool = False, judge_config: Any = None,
) -> AskResult:
    """Answer, compute every source's metrics (averaged over samples) and optionally judge them."""
    from geoaudit import judge as judge_mod  # judge and metrics build on this module
    from geoaudit.metrics import mean_source_metrics

    config = config or EngineConfig()
    ans = await aanswer(gateway, query, docs, config, seed=seed, retriever=retriever)
    metrics = mean_source_metrics(ans, config.pawc_variant)
    judgements = await judge_mod.ajudge_all(gateway, ans, judge_config, seed=seed) if judge else None
    if judgements is not None:
        for row, j in zip(metrics, judgements):
            row["subjective_impression"] = j.subjective_impression
    return AskResult(ans, metrics, config.pawc_variant, judgements)


def ask(
    gateway: Gateway, query: str, docs: Sequence[Document], config: EngineConfig | None = None, *,
    seed: int = 0, retriever: Any = None, judge: bool = False, judge_config: Any = None,
) -> AskResult:
    """Synchronous :func:`aask`."""
    return run_sync(aask(gateway, query, docs, config, seed=seed, retriever=retriever, judge=judge,
                         judge_config=judge_config))
