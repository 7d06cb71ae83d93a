"""Deterministic, extractive rewrite transforms: the named pure functions behind strategies of kind ``rule``.

A strategy file says ``kind = "rule"``, ``transform = "answer-first"`` and, in ``[params]``, the
transform's declared parameters; :func:`geoaudit.rewrite.arewrite` then calls the transform instead
of a model. Every transform is a pure function ``(text, title, query, params) -> text``: the same
input gives the same output, byte for byte, on any machine, with no model and no network.

What "extractive" means here, and what the tests check: an output is made of

* sentences of the page, copied verbatim (runs of whitespace inside a sentence become one space),
  possibly repeated or re-ordered; a quotation that spans several sentences, or a sentence that
  ends in an abbreviation ("Dr."), is kept together with the sentences it belongs to;
* the page's own headings, code blocks and tables, verbatim;
* markdown structure markers: ``#``/``##`` headings (page headings or a transform's declared
  label, e.g. "Key facts"), ``>`` blockquotes, ``-`` bullets and ``---`` breaks.

Only :func:`keyword_stuffing` adds words, and only the query's own words (never digits). Nothing
else can enter an output, so a transform cannot invent a number, quote, source or URL; the layout
also keeps two sentences that were apart in the page from running into one "name" or "quotation"
(each added block starts with a marker or follows a sentence end), which is what the fabrication
guards of :mod:`geoaudit.guards` would otherwise flag. The guards still run on every output.

Sentences, words and content tokens come from :mod:`geoaudit.guards` (the same tokenizer the
guards use), so "a sentence of the page" means the same thing to a transform and to its check.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from geoaudit import guards as G
from geoaudit.documents import markdown_heading

ParamValue = int | float | str | bool
TransformFn = Callable[[str, str, "str | None", Mapping[str, ParamValue]], str]


# --------------------------------------------------------------------------- parameters and registry


@dataclass(frozen=True)
class Param:
    """A declared transform parameter: type, default, allowed range or choices."""

    name: str
    type: type
    default: ParamValue
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: object) -> ParamValue:
        """``value`` converted to this parameter's type.

        Raises:
            ValueError: wrong type, out of range, or not one of the choices (the message says which).
        """
        # bool is an int in Python; a number parameter must not accept true/false and vice versa.
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (isinstance(value, bool) and self.type is not bool):
            raise ValueError(f"must be {self.type.__name__}, not {type(value).__name__} ({value!r})")
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not ((self.min is None or value >= self.min) and (self.max is None or value <= self.max))
        ):
            raise ValueError(f"must be between {self.min:g} and {self.max:g}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, got {value!r}")
        return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Transform:
    """A named deterministic transform. ``version`` changes whenever its output for some input changes."""

    name: str
    version: str
    fn: TransformFn
    params: tuple[Param, ...] = ()
    uses_query: bool = False
    #: False only for ``identity``: an unchanged output is then its purpose, not a miss.
    changes_text: bool = True

    @property
    def summary(self) -> str:
        """The first paragraph of the function's docstring, on one line."""
        doc = (self.fn.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(doc.split())

    @property
    def doc(self) -> str:
        """The function's whole docstring (what it does and where the practice comes from), each
        paragraph and ``*`` item on one line so a terminal can wrap it."""
        import inspect

        paras = []
        for para in inspect.cleandoc(self.fn.__doc__ or "").split("\n\n"):
            items = re.split(r"\n(?=[ \t]{0,40}\* )", para)
            paras.append("\n".join(" ".join(item.split()) for item in items))
        return "\n\n".join(paras)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def resolve(self, raw: Mapping[str, object] | None = None) -> dict[str, ParamValue]:
        """Every declared parameter, from ``raw`` or its default, type-checked.

        Raises:
            ValueError: ``args = (param_name, problem)`` for an unknown, mistyped or out-of-range value.
        """
        raw = dict(raw or {})
        known = {p.name: p for p in self.params}
        for key in raw:
            if key not in known:
                names = ", ".join(known) or "none"
                raise ValueError(key, f"is not a parameter of transform {self.name!r} (known: {names})")
        out: dict[str, ParamValue] = {}
        for p in self.params:
            try:
                out[p.name] = p.check(raw[p.name]) if p.name in raw else p.default
            except ValueError as exc:
                raise ValueError(p.name, str(exc)) from None
        return out

    def apply(
        self, text: str, *, title: str = "", query: str | None = None, params: Mapping[str, object] | None = None
    ) -> str:
        """The transform's output for ``text`` (defaults fill missing parameters).

        Raises:
            ValueError: a parameter is invalid (see :meth:`resolve`), or the transform uses the
                query and none was given.
        """
        if self.uses_query and not (query and query.strip()):
            raise ValueError("query", f"transform {self.name!r} needs the target query")
        return self.fn(text, title or "", query, self.resolve(params))


TRANSFORMS: dict[str, Transform] = {}


def register(transform: Transform) -> Transform:
    """Add ``transform`` to :data:`TRANSFORMS` (names are unique)."""
    if transform.name in TRANSFORMS:
        raise ValueError(f"transform {transform.name!r} is already registered")
    TRANSFORMS[transform.name] = transform
    return transform


def get_transform(name: str) -> Transform:
    """The registered transform called ``name``.

    Raises:
        KeyError: no such transform.
    """
    return TRANSFORMS[name]


# --------------------------------------------------------------------------- the page model


@dataclass(frozen=True)
class Block:
    """A run of lines of one kind: ``heading``, ``para`` (prose), ``list`` or ``verbatim`` (code, table)."""

    kind: str
    start: int
    end: int
    level: int = 0
    heading: str = ""


@dataclass(frozen=True)
class Unit:
    """A sentence of the page, or sentences a quotation or an abbreviation binds together.

    ``text`` is the page's own span ``page[start:end]`` with whitespace runs collapsed.
    ``balanced``: its quotation marks pair up inside it (only such units are moved next to others).
    """

    text: str
    start: int
    end: int
    block: int
    balanced: bool

    @property
    def terminal(self) -> bool:
        """Ends like a sentence (. ! ? or … , optionally followed by closing quotes or brackets)."""
        return bool(_TERMINAL_RE.search(self.text))


@dataclass(frozen=True)
class Page:
    """A page (line ends normalised to \\n) cut into blocks and sentence units; offsets index ``text``."""

    text: str
    blocks: tuple[Block, ...]
    units: tuple[Unit, ...]


_FENCE_RE = re.compile(r"^\s{0,3}(```|~~~)")
_ITEM_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\S")
_TABLE_RE = re.compile(r"^\s*\|")
_TERMINAL_RE = re.compile(r"[.!?…][\"'”’)\]]*$")
_CLOSERS_RE = re.compile(r"[\"'”’)\]]*")
# A sentence the splitter cut after an abbreviation or an initial ("Dr.", "J."): it continues.
_ABBREV_END_RE = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|Mt|Jr|Sr|vs|etc|No|Fig|e\.g|i\.e)|\b[A-Z])\.$")


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _quotes_balanced(text: str) -> bool:
    return text.count('"') % 2 == 0 and text.count("“") == text.count("”")


def parse_page(text: str) -> Page:
    """Blocks and sentence units of a markdown-ish page (as :mod:`geoaudit.crawl` stores pages).

    Blocks: ``#`` headings; fenced code and ``|`` tables (verbatim); list items (``-``, ``*``, ``+``,
    ``1.``) with their continuation lines; prose paragraphs (lines up to a blank line, a heading or
    a list). Units: :func:`geoaudit.guards.sentences` of each prose or list block, located in the
    page (the splitter drops a closing quote after a sentence end; the located span gets it back),
    then joined while a quotation is open or a sentence ends in an abbreviation.
    """
    text = _normalise(text)
    blocks: list[Block] = []
    lines: list[tuple[int, str]] = []
    pos = 0
    for line in text.split("\n"):
        lines.append((pos, line))
        pos += len(line) + 1

    cur_kind = ""
    cur_start = cur_end = 0

    def flush() -> None:
        nonlocal cur_kind
        if cur_kind:
            blocks.append(Block(cur_kind, cur_start, cur_end))
        cur_kind = ""

    in_fence = ""
    for start, line in lines:
        end = start + len(line)
        if in_fence:
            cur_end = end
            if line.strip().startswith(in_fence):
                in_fence = ""
                flush()
            continue
        fence = _FENCE_RE.match(line)
        if fence:
            flush()
            in_fence = fence.group(1)
            cur_kind, cur_start, cur_end = "verbatim", start, end
            continue
        if not line.strip() or _is_break(line):
            flush()
            continue
        heading = markdown_heading(line, max_indent=3)
        if heading:
            flush()
            if heading[1].strip():
                blocks.append(Block("heading", start, end, heading[0], heading[1].strip()))
            continue
        kind = "verbatim" if _TABLE_RE.match(line) else "list" if _ITEM_RE.match(line) else "para"
        if cur_kind == kind or (cur_kind == "list" and kind == "para" and line[:1].isspace()):
            cur_end = end
            continue
        flush()
        cur_kind, cur_start, cur_end = kind, start, end
    flush()  # an unclosed fence runs to the end of the page

    units: list[Unit] = []
    for b_index, block in enumerate(blocks):
        if block.kind in ("heading", "verbatim"):
            continue
        spans: list[tuple[int, int]] = []
        cursor = block.start
        for sent in G.sentences(text[block.start : block.end]):
            at = text.find(sent, cursor, block.end)
            if at < 0:
                continue  # cannot happen for guards.sentences; skipping is the safe answer
            end = at + len(sent)
            end += _CLOSERS_RE.match(text, end, block.end).end() - end  # type: ignore[union-attr]
            spans.append((at, end))
            cursor = end
        merged: list[tuple[int, int]] = []
        for span in spans:
            if merged:
                prev = text[merged[-1][0] : merged[-1][1]]
                if not _quotes_balanced(prev) or _ABBREV_END_RE.search(prev):
                    merged[-1] = (merged[-1][0], span[1])
                    continue
            merged.append(span)
        for s, e in merged:
            body = text[s:e]
            if not G.words(body):
                continue  # a stray marker or punctuation: nothing to extract
            units.append(Unit(_collapse(body), s, e, b_index, _quotes_balanced(body)))
    return Page(text, tuple(blocks), tuple(units))


# --------------------------------------------------------------------------- shared helpers


def _terms(text: str) -> list[str]:
    """Content tokens of ``text`` with repeats (guards' content_tokens applied word by word)."""
    return [t for w in G.words(text) for t in G.content_tokens(w)]


def bm25_scores(query: str, docs: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Okapi BM25 score of each of ``docs`` (here: the page's sentences) for ``query``.

    score(d) = sum over query terms t of idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)) (Robertson & Zaragoza 2009; the non-negative
    idf of Lucene and bm25s), with N sentences, n(t) of them containing t. Terms are the guards'
    content tokens (stopwords out, plural "s" dropped, cut to 6 characters); each query term counts once.
    """
    bags = [Counter(_terms(d)) for d in docs]
    # Sorted, not a set: a float sum in hash order could differ between processes and flip a tie.
    q = sorted(set(_terms(query)))
    if not bags or not q:
        return [0.0] * len(docs)
    n_docs = len(bags)
    avgdl = (sum(sum(c.values()) for c in bags) / n_docs) or 1.0
    df = Counter(t for c in bags for t in set(c))
    idf = {t: math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5)) for t in q}
    out = []
    for c in bags:
        dl = sum(c.values())
        norm = k1 * (1 - b + b * dl / avgdl)
        out.append(sum(idf[t] * c[t] * (k1 + 1) / (c[t] + norm) for t in q if c[t]))
    return out


def _top(scores: Sequence[float], n: int) -> list[int]:
    """Indices of the ``n`` highest positive scores, best first; ties keep page order."""
    order = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))
    return order[:n]


def _bullets(units: Sequence[Unit]) -> str:
    return "\n".join(f"- {u.text}" for u in units)


def _lead(units: Sequence[Unit]) -> str:
    """Units as one blockquote paragraph when each ends like a sentence, else as bullets.

    Sentences only share a line when each ends with . ! ? so two of them never run into one name.
    """
    if all(u.terminal for u in units):
        return "> " + " ".join(u.text for u in units)
    return _bullets(units)


def _insert_top(page: Page, parts: Sequence[str]) -> str:
    """The page with ``parts`` (blocks, joined by blank lines) after its opening heading, then a ``---`` break.

    The break keeps the added block apart from the page's next line: without it, a bullet ending in a
    capitalised word and a paragraph starting with one would read as one multi-word name.
    """
    text = page.text
    added = "\n\n".join(parts)
    first = page.blocks[0] if page.blocks else None
    if first is not None and first.kind == "heading":
        head, rest = text[: first.end].strip("\n"), text[first.end :].strip("\n")
        return f"{head}\n\n{added}" + (f"\n\n---\n\n{rest}" if rest.strip() else "")
    body = text.strip("\n")
    return f"{added}\n\n---\n\n{body}" if body.strip() else added


# --------------------------------------------------------------------------- the transforms


def identity(text: str, title: str, query: str | None, params: Mapping[str, ParamValue]) -> str:
    """Returns the page exactly as it is (the A/A control).

    GEO's "No optimisation" condition: measuring it shows how much visibility moves when nothing changes.
    """
    return text


def answer_first(text: str, title: str, query: str | None, params: Mapping[str, ParamValue]) -> str:
    """Puts the page's own most query-relevant sentences at the top, as an answer-first summary ("BLUF").

    The ``sentences`` sentences with the highest BM25 score for the query (:func:`bm25_scores`,
    sentences with no query term never chosen) go, best first, right below the page's opening
    heading: as one ``>`` blockquote paragraph, or as ``-`` bullets when one of them does not end
    like a sentence (a list item); a ``---`` break follows, then the whole page unchanged. A page
    with no sentence sharing a term with the query is returned unchanged.

    Practice: "bottom line up front" (BLUF, military and business writing) and the journalist's
    inverted pyramid, which GEO guides recommend as an answer paragraph at the top of a page. The
    summary repeats sentences already in the page, so it cannot state anything the page does not.
    """
    page = parse_page(text)
    candidates = [u for u in page.units if u.balanced]
    scores = bm25_scores(query or "", [u.text for u in candidates])
    chosen = [candidates[i] for i in _top(scores, int(params["sentences"]))]
    if not chosen:
        return text
    return _insert_top(page, [_lead(chosen)])


# Quantities written out, and words that cite evidence ("one" is left out: mostly a pronoun).
_NUMBER_WORDS_RE = re.compile(
    r"\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundreds?|thousands?|millions?|billions?|half|quarter|dozens?|"
    r"percent|per cent|twice|double|triple)\b",
    re.IGNORECASE,
)
_EVIDENCE_RE = re.compile(
    r"\b(?:according to|stud(?:y|ies)|research(?:ers)?|surveys?|reports?|data|statistics|evidence|"
    r"guidelines?|recommend(?:s|ed|ation|ations)?)\b",
    re.IGNORECASE,
)


def _fact_score(unit: Unit) -> int:
    """How much a unit states checkable facts: 2 per number, quotation (3+ words), named source and
    URL as the guards detect them, plus 1 per written-out quantity ("three days", "half") and per
    evidence word ("according to", "study", "survey", "recommends", ...)."""
    text = unit.text
    # guards has no public "quotes in text": new_quotes against an empty original lists them all.
    strong = len(G.numbers(text)) + len(G.new_quotes("", text)) + len(G.named_sources(text)) + len(G.urls(text))
    return 2 * strong + len(_NUMBER_WORDS_RE.findall(text)) + len(_EVIDENCE_RE.findall(text))


def key_facts(text: str, title: str, query: str | None, params: Mapping[str, ParamValue]) -> str:
    """Adds a "Key facts" list near the top: the page's sentences that carry numbers, quotes, named sources or URLs.

    A sentence qualifies when :func:`_fact_score` finds a number, quotation of 3+ words, named
    source or URL (as :mod:`geoaudit.guards` detects them), a written-out quantity or an evidence
    word in it. Up to ``max_items`` qualify (highest score first, ties in page order) and are
    listed as ``-`` bullets in page order under a
    ``## {heading}`` line (none when ``heading`` is empty), right below the page's opening heading;
    a ``---`` break follows, then the whole page unchanged. A page without such sentences is
    returned unchanged.

    Practice: the "key takeaways" / "at a glance" box of web publishing, and a grounded take on
    GEO's two strongest methods, Statistics Addition and Quotation Addition (+31 % and +41 % PAWC in
    the paper), which ask a model to add figures and quotes, invented if need be: here only the
    figures and quotes the page already has are put forward.
    """
    page = parse_page(text)
    candidates = [u for u in page.units if u.balanced]
    counts = [_fact_score(u) for u in candidates]
    picked = sorted(_top(counts, int(params["max_items"])))
    if not picked:
        return text
    heading = str(params["heading"]).strip()
    parts = ([f"## {heading}"] if heading else []) + [_bullets([candidates[i] for i in picked])]
    return _insert_top(page, parts)


def _central(units: Sequence[Unit]) -> int:
    """Index of the most central unit: score(u) = sum over its distinct content tokens t of the
    number of OTHER units containing t, divided by sqrt(number of its distinct tokens) (a
    centroid-style score, Radev et al. 2004, normalised so long sentences do not win by length).
    Units with fewer than 3 content tokens only count when no unit has more; ties keep page order."""
    sets = [set(_terms(u.text)) for u in units]
    df = Counter(t for s in sets for t in s)
    eligible = [i for i, s in enumerate(sets) if len(s) >= 3] or [i for i, s in enumerate(sets) if s] or [0]
    return max(eligible, key=lambda i: (sum(df[t] - 1 for t in sets[i]) / math.sqrt(len(sets[i]) or 1), -i))


# " | Site name" (and · :: — – -) after a title: a blank run that starts the cut, a separator, a blank.
# The run is possessive and must start a run of blanks, so no attempt rescans another's text.
_TITLE_SITE_RE = re.compile(r"(?<!\s)\s++(?:\||·|::|—|–|-)\s")


def _without_site(title: str) -> str:
    """A document title without its trailing " | Site name" part (the first such separator on)."""
    m = _TITLE_SITE_RE.search(title)
    return title[: m.start()] if m else title


def _is_break(line: str) -> bool:
    """A markdown thematic break: up to 3 spaces, then 3 or more of one of - * _ (blanks between)."""
    if len(line) - len(line.lstrip(" ")) > 3:
        return False
    marks = "".join(line.split())
    return len(marks) >= 3 and marks in ("-" * len(marks), "*" * len(marks), "_" * len(marks))


def llms_txt_structure(text: str, title: str, query: str | None, params: Mapping[str, ParamValue]) -> str:
    """Lays the page out as an llms.txt file: ``# title``, ``> summary``, then sections of bullet points.

    * ``# title``: the page's first level-1 heading; without one, the document title with a
      trailing " | Site name" part cut off; without either, no title line.
    * ``> summary``: one sentence of the page, moved up (not repeated): the most central one
      (:func:`_central`) with ``summary = "central"``, the first with ``summary = "first"``.
    * then the page in order: its other headings as ``## heading``, every prose sentence and list
      item as a ``-`` bullet (one paragraph or list = one group of bullets), code blocks and tables verbatim.

    Every word of the page stays; only the layout changes. Practice: the llms.txt proposal
    (llmstxt.org, 2024: an H1 title, a blockquote summary, H2 sections of lists, written for
    language models), which C-SEO Bench evaluates as "LLM Guidance" with a model writing it.
    """
    page = parse_page(text)
    if not G.words(text):
        return text
    h1 = next((i for i, b in enumerate(page.blocks) if b.kind == "heading" and b.level == 1), None)
    head = page.blocks[h1].heading if h1 is not None else _collapse(_without_site(title.strip()))
    units = list(page.units)
    summary: Unit | None = None
    if units:
        pool = [u for u in units if u.balanced] or units
        summary = pool[0] if params["summary"] == "first" else pool[_central(pool)]
    out: list[str] = []
    if head:
        out.append(f"# {head}")
    if summary is not None:
        out.append(f"> {summary.text}")
    for i, block in enumerate(page.blocks):
        if i == h1:
            continue
        if block.kind == "heading":
            out.append(f"## {block.heading}")
        elif block.kind == "verbatim":
            out.append(page.text[block.start : block.end].strip("\n"))
        else:
            group = [u for u in units if u.block == i and u is not summary]
            if group:
                out.append(_bullets(group))
    return "\n\n".join(out) if out else text


# Words that make a question rather than name its topic; stuffing them is noise.
_QUESTION_FILLERS = frozenset({"much", "many", "often", "per", "way", "difference"})


def query_keywords(query: str, page: str = "") -> list[str]:
    """The query's keywords, in query order: words whose guards content token exists (no stopword,
    3+ letters), without digits, not a question filler (much, many, often, per, way, difference),
    one per content token. A possessive "'s" is dropped. A word keeps the query's capitals when it
    is not the query's first word or the page spells it so; otherwise it is lower-cased."""
    out: list[str] = []
    seen: set[str] = set()
    page_words = set(G.words(page))
    for n, raw in enumerate(G.words(query)):
        w = re.sub(r"['’][A-Za-z]+$", "", raw)
        toks = G.content_tokens(w)
        if not toks or any(ch.isdigit() for ch in w) or w.lower() in _QUESTION_FILLERS:
            continue
        tok = next(iter(toks))
        if tok in seen:
            continue
        seen.add(tok)
        keep = w != w.lower() and (n > 0 or w in page_words or w[1:] != w[1:].lower())
        out.append(w if keep else w.lower())
    return out


def keyword_stuffing(text: str, title: str, query: str | None, params: Mapping[str, ParamValue]) -> str:
    """Works the query's keywords into the page: a bracketed list of them after a few spread-out sentences.

    Exactly what it does: take the query's keywords (:func:`query_keywords`). Cut the page's
    sentences that end with . ! or ? and contain no quotation mark into ``sentences`` equal
    stretches, in page order, and pick in each the sentence lacking the most keywords (the
    earliest on a tie). Before the end mark of each, insert `` (kw1, kw2, ...)`` with the keywords
    that sentence lacks, in query order. At most ``max_insertions`` keywords in all, and at most ``max_added_share`` times the
    page's word count (so short pages get fewer); a page where no keyword can be placed is
    returned unchanged. Nothing else changes. Keywords go in brackets and separated by commas so
    they never join the page's words into a new name; digits are never inserted.

    Practice: keyword stuffing, the classic SEO tactic that GEO (Aggarwal et al., KDD 2024) uses as
    its baseline, defined there as adding more keywords from the query (its released code never
    passed the query, so its model picked generic keywords; GEO measured about -8 % PAWC). Here
    the keywords are the query's own, and the result is the same on every run.
    """
    page = parse_page(text)
    keywords = query_keywords(query or "", text)
    budget = min(int(params["max_insertions"]), int(float(params["max_added_share"]) * len(G.words(text))))
    eligible = [u for u in page.units if re.search(r"[.!?]$", u.text) and not re.search(r"[\"“”]", u.text)]
    if not keywords or budget < 1 or not eligible:
        return text

    def lacking(unit: Unit) -> list[str]:
        have = set(_terms(unit.text))
        return [w for w in keywords if not (G.content_tokens(w) & have)]

    k = min(int(params["sentences"]), len(eligible))
    n = len(eligible)
    inserts: list[tuple[int, str]] = []
    for i in range(k):
        stretch = eligible[i * n // k : (i + 1) * n // k]
        unit = max(stretch, key=lambda u: (len(lacking(u)), -u.start))
        missing = lacking(unit)[:budget]
        if not missing:
            continue
        budget -= len(missing)
        segment = page.text[unit.start : unit.end]
        at = unit.start + len(segment.rstrip(".!?"))  # before the sentence's end punctuation, if any
        inserts.append((at, " (" + ", ".join(missing) + ")"))
        if budget < 1:
            break
    if not inserts:
        return text
    out = page.text
    for at, piece in sorted(inserts, reverse=True):
        out = out[:at] + piece + out[at:]
    return out


def _int(name: str, default: int, lo: int, hi: int, help: str) -> Param:
    return Param(name, int, default, help, lo, hi)


register(Transform("identity", "1", identity, changes_text=False))
register(
    Transform(
        "answer-first",
        "2",
        answer_first,
        uses_query=True,
        params=(_int("sentences", 2, 1, 10, "how many of the page's sentences the summary repeats"),),
    )
)
register(
    Transform(
        "key-facts",
        "1",
        key_facts,
        params=(
            _int("max_items", 5, 1, 20, "most sentences in the list"),
            Param(
                "heading",
                str,
                "Key facts",
                "the list's heading; empty for none (avoid Title Case: two capitalised words read as a name)",
            ),
        ),
    )
)
register(
    Transform(
        "llms-txt-structure",
        "2",
        llms_txt_structure,
        params=(
            Param("summary", str, "central", "which sentence becomes the > summary", choices=("central", "first")),
        ),
    )
)
register(
    Transform(
        "keyword-stuffing",
        "2",
        keyword_stuffing,
        uses_query=True,
        params=(
            _int("sentences", 3, 1, 20, "how many sentences get keywords"),
            _int("max_insertions", 10, 1, 100, "most keywords inserted in all (GEO: at most 10)"),
            Param("max_added_share", float, 0.2, "most inserted keywords per page word", 0.01, 1.0),
        ),
    )
)


__all__ = [
    "TRANSFORMS",
    "Block",
    "Page",
    "Param",
    "ParamValue",
    "Transform",
    "Unit",
    "answer_first",
    "bm25_scores",
    "get_transform",
    "identity",
    "key_facts",
    "keyword_stuffing",
    "llms_txt_structure",
    "parse_page",
    "query_keywords",
    "register",
]
