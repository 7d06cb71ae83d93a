"""Guards computed for every rewrite: how much changed, what survived, what was invented, and whether it failed.

Every function here is pure (text in, numbers/lists out) and states its rule in its docstring. The
rules are deliberately simple and explainable; they are flags for a human or a report, not a fact
checker. "New" always means: present in the rewrite and absent from the original, after the
normalisation described in each function.

The texts are untrusted (a crawled page, a model's reply), so every pattern here runs in time
linear in its input (``tests/test_regex_linearity.py`` checks their structure), :func:`check`
reads at most :data:`GUARD_MAX_CHARS` characters of each text, and the two pairwise measures
(:func:`word_change`, :func:`sentence_survival`) switch to aligned windows when an exact answer
would cost more than their budget. A report says so in ``notes`` when either happened.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from geoaudit.tokens import content_tokens, words

#: Characters of each text (original and rewrite) :func:`check` reads; the rest is not checked
#: (and the report's ``notes`` say so). 100,000 characters is about 15,000 words: longer than
#: nearly any article, short enough that the guards of one rewrite stay well under a second.
GUARD_MAX_CHARS = 100_000
#: Work (difflib's inner-loop steps, a few million a second) one word-change figure may cost.
WORD_CHANGE_BUDGET = 3_000_000
#: (original sentence, rewrite window) pairs one exact survival computation may compare.
SURVIVAL_MAX_PAIRS = 2_000_000

_SENT_SPLIT_RE = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n+")


# --------------------------------------------------------------------------- sentences
# Words and content tokens are geoaudit.tokens' (the tokenizer attribution and the metrics use).


def sentences(text: str) -> list[str]:
    """Sentences: split after . ! ? followed by space and a capital/digit, and at line breaks.

    Markdown markers at line starts (``#``, ``-``, ``*``, ``>``, ``1.``) are stripped.
    """
    out = []
    for s in _SENT_SPLIT_RE.split(text):
        s = re.sub(r"^\s*(?:#{1,6}|[-*+>]|\d+[.)])\s+", "", s).strip()
        if s:
            out.append(s)
    return out


# --------------------------------------------------------------------------- change and survival


def length_ratio(original: str, rewritten: str) -> float:
    """Length ratio = words(rewritten) / words(original); 1.0 when both are empty, inf when only the original is."""
    n_orig, n_new = len(words(original)), len(words(rewritten))
    if n_orig == 0:
        return 1.0 if n_new == 0 else float("inf")
    return n_new / n_orig


def sentence_survival(original: str, rewritten: str, *, threshold: float = 0.5) -> float:
    """Fraction of the original's sentences whose content survives in the rewrite.

    A sentence with content-token set A survives when some rewritten sentence, or two adjacent
    rewritten sentences joined (models split and merge sentences), has token set B with
    |A ∩ B| / |A| >= ``threshold``. Sentences without content tokens are ignored; an original
    with none gives 1.0.

    When ``len(original sentences) x len(windows)`` exceeds :data:`SURVIVAL_MAX_PAIRS`, the
    fraction is estimated on evenly spaced original sentences, as many as the budget allows (each
    still compared with every window), so no assumption about where a sentence went is made.
    """
    return _survival(original, rewritten, threshold)[0]


def _survival(original: str, rewritten: str, threshold: float) -> tuple[float, int, int]:
    """:func:`sentence_survival`, and how many of how many original sentences it looked at."""
    orig = [t for t in (content_tokens(s) for s in sentences(original)) if t]
    if not orig:
        return 1.0, 0, 0
    new_sents = [content_tokens(s) for s in sentences(rewritten)]
    windows = new_sents + [a | b for a, b in itertools.pairwise(new_sents)]
    if not windows:
        return 0.0, len(orig), len(orig)
    n = min(len(orig), max(1, SURVIVAL_MAX_PAIRS // len(windows)))
    sample = orig if n == len(orig) else [orig[i * len(orig) // n] for i in range(n)]
    survived = sum(1 for a in sample if any(len(a & b) / len(a) >= threshold for b in windows))
    return survived / len(sample), len(sample), len(orig)


def word_change(original: str, rewritten: str) -> float:
    """Share of words changed: 1 - difflib ratio over the two word sequences (0 = identical).

    difflib's ratio is 2M / (len(a) + len(b)), M the words its matching blocks share. Its work
    grows fast on repetitive text (cubic when one word repeats between short matches), so it is
    counted as it runs; past :data:`WORD_CHANGE_BUDGET` the sequences are cut into position-aligned
    windows (4, 16, 64, ... until all of them together fit the budget) and M is summed over the
    window pairs. Within the budget, which ordinary pages are, the figure is difflib's exact one.
    """
    return _word_change(original, rewritten)[0]


class _OverBudget(Exception):
    pass


def _matched_words(a: Sequence[str], b: Sequence[str], budget: list[float]) -> int:
    """Words in difflib's matching blocks of ``a`` and ``b``, charging its work to ``budget[0]``."""
    import difflib
    from collections import Counter

    in_b = Counter(b)  # len(b2j[w]): difflib's inner loop visits at most these (there is no junk)

    class Counting(difflib.SequenceMatcher[str]):
        def find_longest_match(self, alo: int = 0, ahi: int | None = None, blo: int = 0, bhi: int | None = None) -> Any:
            ahi = len(a) if ahi is None else ahi
            budget[0] -= (ahi - alo) + sum(in_b[w] for w in a[alo:ahi])
            if budget[0] < 0:
                raise _OverBudget
            return super().find_longest_match(alo, ahi, blo, bhi)

    return sum(block.size for block in Counting(a=a, b=b, autojunk=False).get_matching_blocks())


def _word_change(original: str, rewritten: str) -> tuple[float, int]:
    """:func:`word_change` and the number of windows it used (1 = exact)."""
    a, b = [w.lower() for w in words(original)], [w.lower() for w in words(rewritten)]
    if not a and not b:
        return 0.0, 1
    k, most = 1, max(len(a), len(b))
    while True:
        # One-word windows cost about len(a) + len(b) and are never cut short: this ends.
        budget: list[float] = [WORD_CHANGE_BUDGET if k < most else math.inf]
        try:
            matched = sum(
                _matched_words(
                    a[len(a) * i // k : len(a) * (i + 1) // k], b[len(b) * i // k : len(b) * (i + 1) // k], budget
                )
                for i in range(k)
            )
            return 1.0 - 2.0 * matched / (len(a) + len(b)), k
        except _OverBudget:
            k = min(4 * k, most)


# --------------------------------------------------------------------------- fabrication flags

_NUMBER_RE = re.compile(r"(?<![A-Za-z0-9])\d[\d,]*(?:\.\d+)?")
_QUOTE_RE = re.compile(r"[\"“]([^\"“”\n]{3,400})[\"”]")
# Bare domains: at most 16 labels of at most 63 characters (DNS's own limits are 127 and 63), and
# only from the start of a run of label characters, so no label is scanned from every position.
_URL_RE = re.compile(
    r"\bhttps?://[^\s<>()\"']+|\bwww\.[^\s<>()\"']+"
    r"|(?<![\w.-])[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,15}\.(?:com|org|net|edu|gov|io|ai|co|uk|de|fr|info)\b"
    r"(?:/[^\s<>()\"']*)?",
    re.IGNORECASE,
)
# A capitalised word of at most 41 characters (no sentence punctuation inside, so names never run
# across sentences), or a title. Names have at most 8 words with at most 8 blanks between them,
# and start only at the start of a word: bounds that keep these patterns linear, where unbounded
# repeats once took minutes on a 200,000-character capitalised token.
_CAP = r"(?:(?:Dr|Mr|Mrs|Ms|Prof|St)\.|[A-Z][\w&'’-]{0,40})"
_NAME_START = r"(?<![\w&'’-])"
_GAP = r"\s{1,8}"
_NAME_RE = re.compile(rf"{_NAME_START}{_CAP}(?:{_GAP}(?:(?:of|for|and|the|de|on|&){_GAP})?{_CAP}){{1,7}}")
_ACCORDING_RE = re.compile(
    r"\b(?:according to|as reported by|reported by|said|says|states|notes|cites?|per"
    rf"|(?:report|study|survey|data|research|analysis|statement){_GAP}(?:from|by|of)){_GAP}(?:(?:the|a|an){_GAP})?"
    rf"((?:\d{{4}}{_GAP})?(?:{_CAP}|[a-z]{{1,40}}{_GAP}{_CAP})(?:{_GAP}(?:(?:of|for|and|the|&)\s{{0,8}})?{_CAP}){{0,7}})"
)
_SAYS_RE = re.compile(
    rf"{_NAME_START}({_CAP}(?:{_GAP}(?:(?:of|for|and|the){_GAP})?{_CAP}){{0,7}}){_GAP}"
    r"(?:says|said|reports|reported|found|finds|estimates|estimated|notes|noted|states|stated|warns|warned)\b"
)
_LEADING_WORDS = {
    "I",
    "I'm",
    "I’m",
    "The",
    "A",
    "An",
    "This",
    "That",
    "These",
    "Those",
    "In",
    "On",
    "At",
    "For",
    "And",
    "But",
    "According",
    "Its",
    "Our",
    "It",
}


def _norm_number(raw: str) -> str:
    s = raw.replace(",", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s.lstrip("0") or "0"


def numbers(text: str) -> set[str]:
    """Numbers in ``text``, normalised: thousands separators dropped, trailing decimal zeros dropped, leading zeros dropped."""
    return {_norm_number(m.group(0).rstrip(",.")) for m in _NUMBER_RE.finditer(text)}


def new_numbers(original: str, rewritten: str) -> list[str]:
    """Numbers of the rewrite absent from the original (after :func:`numbers` normalisation), sorted."""
    return sorted(numbers(rewritten) - numbers(original), key=lambda s: (len(s), s))


def _squash(text: str) -> str:
    # Hyphen parts one by one, so a quote that writes "state of the art" for "state-of-the-art" is not new.
    return " ".join(part for w in words(text) for part in w.lower().split("-"))


def new_quotes(original: str, rewritten: str) -> list[str]:
    """Quoted spans ("..." or “...”, 3+ words) of the rewrite whose words do not appear, in order, in the original.

    Both sides are compared as lower-cased word sequences, so re-punctuated but verbatim quotes are
    not flagged; a quote the original already had (or words it contains verbatim) is not new.
    """
    orig = " " + _squash(original) + " "
    out = []
    for m in _QUOTE_RE.finditer(rewritten):
        span = m.group(1).strip()
        if len(words(span)) < 3:
            continue
        if " " + _squash(span) + " " not in orig:
            out.append(span)
    return list(dict.fromkeys(out))


def urls(text: str) -> set[str]:
    """URLs and bare domains (``example.com/path``), lower-cased, without scheme, ``www.`` or trailing punctuation."""
    out = set()
    for m in _URL_RE.finditer(text):
        u = m.group(0).rstrip(".,;:!?)]").lower()
        u = re.sub(r"^https?://", "", u)
        u = re.sub(r"^www\.", "", u)
        out.add(u.rstrip("/"))
    return out


def new_urls(original: str, rewritten: str) -> list[str]:
    """URLs/domains of the rewrite (see :func:`urls`) that the original does not contain, sorted."""
    orig = urls(original)
    orig_text = original.lower()
    return sorted(u for u in urls(rewritten) - orig if u not in orig_text)


def named_sources(text: str) -> set[str]:
    """Named sources and organisations: "according to X"-style attributions and capitalised multi-word names.

    Rules: (1) the capitalised phrase (acronyms included) after "according to", "reported by",
    "said", "says", "states", "notes", "cites", "per", or "report/study/survey/data/research/
    analysis/statement from|by|of" (an optional year and article allowed); (1b) a multi-word
    capitalised name or an acronym before "says", "said", "reports", "found", "estimates", "notes",
    "states", "warns"; (2) any run of 2+ capitalised
    words (small connectors such as "of", "for", "and" allowed inside), with a leading sentence word
    such as "The" or "According" dropped. Single capitalised words are not names here (too many
    sentence starts).
    """
    found: set[str] = set()
    for m in _ACCORDING_RE.finditer(text):
        found.add(m.group(1).strip())
    for m in [*_NAME_RE.finditer(text), *_SAYS_RE.finditer(text)]:
        parts = m.group(1 if m.re is _SAYS_RE else 0).split()
        while parts and parts[0] in _LEADING_WORDS:
            parts = parts[1:]
        if len(parts) >= 2 or (len(parts) == 1 and parts[0].isupper() and len(parts[0]) >= 2):
            found.add(" ".join(parts))
    return {f.rstrip(".,;:") for f in found if f}


def new_sources(original: str, rewritten: str) -> list[str]:
    """Named sources of the rewrite (see :func:`named_sources`) none of whose words-sequence occurs in the original.

    A name counts as present when its lower-cased word sequence is in the original's; a name that
    only differs by a leading year or article from one in the original is therefore not new.
    """
    orig = " " + _squash(original) + " "
    out = []
    for name in named_sources(rewritten):
        seq = _squash(re.sub(r"^\d{4}\s+", "", name))
        if seq and " " + seq + " " not in orig:
            out.append(name)
    # Drop names contained in a longer flagged name ("World Health" inside "World Health Organization").
    out = [n for n in out if not any(n != o and n in o for o in out)]
    return sorted(set(out))


def fabrication_flags(original: str, rewritten: str) -> dict[str, list[str]]:
    """Everything the rewrite states that the original does not: numbers, quotes, sources, urls."""
    return {
        "numbers": new_numbers(original, rewritten),
        "quotes": new_quotes(original, rewritten),
        "sources": new_sources(original, rewritten),
        "urls": new_urls(original, rewritten),
    }


# --------------------------------------------------------------------------- failure checks

_REFUSAL_RE = re.compile(
    r"\b(?:I\s{1,8}(?:can['’]?t|cannot|can not|am unable to|am not able to|won['’]?t|will not)\s{1,8}(?:help|assist|do|comply|rewrite|provide|fulfil|fulfill|create|generate|complete)"
    r"|I['’]m\s{1,8}(?:sorry|unable|not able)|I\s{1,8}apologi[sz]e|as an ai\b|as a language model|I['’]m an ai\b)",
    re.IGNORECASE,
)


def is_empty(text: str) -> bool:
    """Empty output: no word tokens at all (whitespace or punctuation only)."""
    return not words(text)


def is_refusal(output: str, original: str = "") -> bool:
    """Refusal: a refusal phrase ("I can't help", "I'm sorry", "As an AI", ...) in the first 300 characters
    of the output that the original does not contain itself (so a page quoting "I'm sorry" is fine)."""
    m = _REFUSAL_RE.search(output[:300])
    return m is not None and m.group(0).lower() not in original.lower()


def echoes_prompt(output: str, instructions: Iterable[str], original: str = "") -> bool:
    """Echoed prompt: the output contains, verbatim (case- and space-insensitive), one of the prompt's
    instruction sentences (25+ characters) that the original does not itself contain."""
    out = _squash(output)
    orig = _squash(original)
    for sent in instructions:
        s = _squash(sent)
        if len(s) >= 20 and s in out and s not in orig:
            return True
    return False


@dataclass
class GuardReport:
    """All guards of one rewrite. ``failure`` is None when the rewrite may be used."""

    length_ratio: float
    sentence_survival: float
    word_change: float
    fabrications: dict[str, list[str]] = field(default_factory=dict)
    failure: str | None = None
    #: How the figures were obtained when not exactly as documented (inputs cut, windows used).
    notes: list[str] = field(default_factory=list)

    @property
    def flag_count(self) -> int:
        return sum(len(v) for v in self.fabrications.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["length_ratio"] == float("inf"):
            data["length_ratio"] = None
        data["flag_count"] = self.flag_count
        return data


def check(
    original: str,
    rewritten: str,
    *,
    min_length_ratio: float = 0.0,
    max_length_ratio: float = float("inf"),
    instructions: Sequence[str] = (),
    forbid_new: Sequence[str] = (),
    survival_threshold: float = 0.5,
) -> GuardReport:
    """Compute every guard, and the first failure reason, in this order:

    empty output; refusal; echoed prompt; length ratio outside [min, max]; a forbidden fabrication
    category (``forbid_new``, e.g. numbers for a grounded strategy) with at least one new item.

    Each text is read up to :data:`GUARD_MAX_CHARS` characters (untrusted input must not cost
    unbounded time); ``notes`` says when a text was cut or a measure used aligned windows.
    """
    notes = []
    if len(original) > GUARD_MAX_CHARS or len(rewritten) > GUARD_MAX_CHARS:
        notes.append(f"guards read the first {GUARD_MAX_CHARS:,} characters of each text")
        original, rewritten = original[:GUARD_MAX_CHARS], rewritten[:GUARD_MAX_CHARS]
    ratio = length_ratio(original, rewritten)
    change, windows = _word_change(original, rewritten)
    if windows > 1:
        notes.append(f"word change summed over {windows} aligned windows (one exact diff would cost too much)")
    survival, looked, total = _survival(original, rewritten, survival_threshold)
    if looked < total:
        notes.append(f"sentence survival estimated on {looked:,} evenly spaced of the original's {total:,} sentences")
    report = GuardReport(
        length_ratio=ratio,
        sentence_survival=survival,
        word_change=change,
        fabrications=fabrication_flags(original, rewritten),
        notes=notes,
    )
    if is_empty(rewritten):
        report.failure = "empty output"
    elif is_refusal(rewritten, original):
        report.failure = "the model refused"
    elif echoes_prompt(rewritten, instructions, original):
        report.failure = "the model echoed the prompt"
    elif not (min_length_ratio <= ratio <= max_length_ratio):
        report.failure = f"length ratio {ratio:.2f} outside the strategy's {min_length_ratio:g}-{max_length_ratio:g}"
    else:
        for kind in forbid_new:
            items = report.fabrications.get(kind) or []
            if items:
                report.failure = f"new {kind} in a grounded rewrite: {', '.join(items[:3])}"
                break
    return report


__all__ = [
    "GUARD_MAX_CHARS",
    "GuardReport",
    "check",
    "content_tokens",
    "echoes_prompt",
    "fabrication_flags",
    "is_empty",
    "is_refusal",
    "length_ratio",
    "named_sources",
    "new_numbers",
    "new_quotes",
    "new_sources",
    "new_urls",
    "numbers",
    "sentence_survival",
    "sentences",
    "urls",
    "word_change",
    "words",
]
