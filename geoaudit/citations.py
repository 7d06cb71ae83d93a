"""The text side of answers: citation parsing, sentence splitting and source attribution.

Pure functions over strings, no LLM and no I/O, shared by the engine (which parses every answer),
the metrics (which count words) and the guards. Citations are 1-based in the text and 0-based
everywhere in the data (``Sentence.citations``, ``AnswerSample.citation_order``). ``[0]`` and
numbers above the number of sources are counted as hallucinated citations and never credited to a
source (the GEO code credits ``[0]`` to the last source through a negative index; geoaudit does not).

Attribution modes (:func:`attribute`): ``citations`` (only what the model wrote), ``overlap`` (post
hoc, by content-word overlap with the shown source texts) and ``hybrid`` (explicit valid citations
where a sentence has any, overlap elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from geoaudit.errors import ConfigError
from geoaudit.tokens import content_words, words

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
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "vs",
        "e.g",
        "i.e",
        "cf",
        "fig",
        "figs",
        "al",
        "approx",
        "dept",
        "est",
        "no",
        "nos",
        "vol",
        "pp",
        "ca",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "gen",
        "col",
        "lt",
        "sgt",
        "rev",
        "hon",
    ]
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
        nxt = block[m.end() : m.end() + 2].lstrip("\"'\u201c\u2018([")
        if not nxt or not (nxt[0].isupper() or nxt[0].isdigit()):
            continue
        punct_end = _PUNCT_RE.match(block, m.start()).end()  # type: ignore[union-attr]  # no copy of the rest
        if _is_abbreviation(block[start : m.start()], block[m.start() : punct_end]):
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
            if out and not words(strip_citations(piece)):
                out[-1] = f"{out[-1]} {piece}"
            else:
                out.append(piece)
    return out


# --------------------------------------------------------------------------- attribution


def overlap_scores(sentence: str, source_tokens: Sequence[set[str]]) -> list[float]:
    """Share of the sentence's content words found in each source: |T_s ∩ T_c| / |T_s| (0 if T_s empty)."""
    tokens = content_words(strip_citations(sentence))
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
        support: the largest share of the sentence's content words found in any one shown source
            (:func:`overlap_scores`), whatever the attribution mode; None when it has no content
            words. Below :data:`UNSUPPORTED_BELOW` the sentence is unsupported by every source.
    """

    text: str
    citations: list[int] = field(default_factory=list)
    how: str = "none"
    explicit: list[int] = field(default_factory=list)
    hallucinated: list[str] = field(default_factory=list)
    raw: str = ""
    support: float | None = None


def parse_answer(raw: str, n_sources: int) -> list[Sentence]:
    """Sentences of ``raw`` with their explicit citations parsed (no attribution yet)."""
    out = []
    for piece in split_sentences(raw):
        valid, bad = find_citations(piece, n_sources)
        out.append(Sentence(text=strip_citations(piece), explicit=valid, hallucinated=bad, raw=piece))
    return out


def attribute(sentences: Sequence[Sentence], shown_texts: Sequence[str], mode: str, threshold: float) -> list[Sentence]:
    """Fill ``citations``/``how`` of every sentence according to the attribution ``mode``.

    citations: explicit valid citations only. overlap: every sentence is attributed to the
    source(s) with the highest content-word overlap at or above ``threshold`` (ties: all), ignoring
    what the model wrote. hybrid: explicit valid citations where the sentence has any, overlap
    elsewhere (also for sentences whose only citations are hallucinated).
    """
    if mode not in ("citations", "overlap", "hybrid"):
        raise ConfigError(f"attribution mode must be resolved (citations/overlap/hybrid), got {mode!r}")
    src_tokens = [content_words(t) for t in shown_texts]
    out = []
    for s in sentences:
        cites: list[int] = []
        how = "none"
        scores = overlap_scores(s.text, src_tokens)
        support = max(scores) if scores and content_words(strip_citations(s.text)) else None
        if mode in ("citations", "hybrid") and s.explicit:
            cites, how = list(s.explicit), "explicit"
        elif mode in ("overlap", "hybrid"):
            cites = overlap_sources(scores, threshold)
            how = "overlap" if cites else "none"
        out.append(Sentence(s.text, cites, how, list(s.explicit), list(s.hallucinated), s.raw, support))
    return out


#: A sentence with less than this share of its content words in every shown source is
#: "unsupported": most of what it says appears in no source (likely invented by the model).
UNSUPPORTED_BELOW = 1 / 3


def support_shares(sentences: Sequence[Sentence]) -> dict[str, float | int]:
    """Engine-quality figures of answer sentences: how many are attributed to a source, and how many
    are unsupported by every source (support < :data:`UNSUPPORTED_BELOW`).

    Returns ``{"sentences": n, "attributable": share attributed, "unsupported": share unsupported}``
    over the sentences that have content words.
    """
    scored = [s for s in sentences if s.support is not None]
    n = len(scored)
    if not n:
        return {"sentences": 0, "attributable": float("nan"), "unsupported": float("nan")}
    return {
        "sentences": n,
        "attributable": sum(1 for s in scored if s.citations) / n,
        "unsupported": sum(1 for s in scored if (s.support or 0.0) < UNSUPPORTED_BELOW) / n,
    }


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
    def from_dict(cls, data: dict[str, Any]) -> AnswerSample:
        d = dict(data)
        d["sentences"] = [Sentence(**s) for s in d.get("sentences", [])]
        return cls(**d)


def make_sample(
    raw: str,
    shown_texts: Sequence[str],
    mode: str,
    threshold: float,
    *,
    seed: int | None = None,
    usage: dict[str, Any] | None = None,
    cached: bool = False,
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
