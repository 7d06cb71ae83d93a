"""Apply strategies to documents (through the LLM gateway, or deterministically), with guards and a provenance store.

    from geoaudit.rewrite import rewrite, rewrite_many, RewriteStore
    result = rewrite(gateway, registry.get("fluency"), doc, store=RewriteStore(settings.store_path))
    if result.status != "failed":
        new_doc = result.as_document(doc)

How one rewrite runs:

1. ``rank`` returns the original text without calling a model (it changes only where the engine
   places the document; :attr:`Strategy.position` says where). A ``rule`` strategy applies its
   deterministic transform (:mod:`geoaudit.transforms`; ``identity`` is the trivial one) without a
   model or gateway, then goes through the same guards as an LLM rewrite (step 3). Its store key
   leaves out model, seed and chunk budget, which cannot change its output, so one stored result
   serves every engine model.
2. For an LLM rewrite, the text is cut into chunks: with ``constraints.keep_structure`` the headings, fenced code and
   tables stay verbatim and consecutive prose/list paragraphs are grouped up to a character budget
   (a paragraph longer than the budget is split at sentence ends); otherwise the whole text (up to a
   larger budget) is one chunk. Each chunk is one gateway call; the outputs are post-processed
   (fences, chatter) and reassembled with the original separators.
3. :func:`geoaudit.guards.check` computes the guards; empty output, refusals, echoed prompts,
   length outside the strategy's ratio and forbidden fabrications mark the result ``failed`` and the
   result then carries the ORIGINAL text (the original document is never modified anywhere).
4. The result is stored in the ``rewrites`` table keyed by (content hash, strategy name+version,
   model, seed, prompt hash, query for query-aware strategies, chunk budget): re-running is a hit.
   Every result says what produced it: ``implementation`` is "llm" (then ``model``, ``seed`` and
   ``prompt_hash`` identify the call), "transform" (then ``transform`` is "name@version" and
   ``model`` is empty) or "none" (rank: the text is not touched).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import html
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from geoaudit import guards as G
from geoaudit.documents import Document, content_hash, now_iso
from geoaudit.errors import BackendError, InputError
from geoaudit.llm import LLMRequest, run_sync
from geoaudit.store import Migration, Transaction, connect
from geoaudit.strategies import Strategy
from geoaudit.transforms import Transform

#: Characters of prose per model call. ~600 tokens: fits small local models and keeps outputs short.
DEFAULT_CHUNK_CHARS = 2400
#: Strategies that restructure the whole text (keep_structure = false) see up to this many characters.
WHOLE_DOC_CHARS = 9000
#: What produced a rewrite's text (``RewriteResult.implementation``).
IMPLEMENTATIONS = ("llm", "transform", "none")


# --------------------------------------------------------------------------- post-processing

_FENCE_RE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_CHATTER_START_RE = re.compile(
    r"^\s*(?:\*\*)?(?:sure|certainly|of course|okay|ok|absolutely|great|here(?:'s| is| are)|below is|"
    r"i(?:'ve| have) (?:rewritten|revised|updated|improved|made)|the (?:rewritten|revised|updated|improved) "
    r"(?:text|version|page)|rewritten text|revised text|updated text|improved text|updated output|output)\b"
    r"[^\n]{0,160}?(?::|!|\.)?(?:\*\*)?\s*$",
    re.IGNORECASE,
)
_CHATTER_END_RE = re.compile(
    r"^\s*(?:let me know|i hope|feel free|hope this|note:|notes:|this (?:rewrite|version|revised)|"
    r"i (?:have|'ve) (?:kept|made|added|maintained|preserved)|in this (?:rewrite|version)|changes made)",
    re.IGNORECASE,
)


def postprocess(raw: str, steps: Sequence[str]) -> str:
    """Clean a model reply with a strategy's post-processing ``steps``, in order.

    * ``fenced-block``: keep the longest ```fenced``` block (an unclosed opening fence is dropped);
      a reply without fences is kept whole.
    * ``after-marker:TEXT``: keep what follows the last occurrence of TEXT (case-insensitive), if any.
    * ``strip-chatter``: drop leading "Sure! Here is the rewritten text:" style lines and trailing
      "Let me know if..." / "Note: ..." paragraphs, and a leading "Text:" label.
    * ``none``: nothing.
    """
    text = raw.replace("\r\n", "\n")
    for step in steps:
        if step == "fenced-block":
            blocks = [b.strip("\n") for b in _FENCE_RE.findall(text) if b.strip()]
            if blocks:
                text = max(blocks, key=len)
            else:
                text = re.sub(r"^\s*```[^\n`]*\n", "", text)
                text = re.sub(r"\n```\s*$", "", text)
        elif step.startswith("after-marker:"):
            marker = step[len("after-marker:") :]
            idx = text.lower().rfind(marker.lower())
            if idx >= 0 and text[idx + len(marker) :].strip():
                text = text[idx + len(marker) :]
        elif step == "strip-chatter":
            text = _strip_chatter(text)
    return text.strip()


def _strip_chatter(text: str) -> str:
    paras = re.split(r"\n\s*\n", text.strip())
    # Leading chatter: a first line that only announces the answer.
    while paras:
        first, _, rest = paras[0].partition("\n")
        if _CHATTER_START_RE.match(first) and (rest.strip() or len(paras) > 1):
            paras[0] = rest
            if not paras[0].strip():
                paras.pop(0)
            continue
        label = re.match(
            r"^\s*(?:\*\*)?(?:(?:(?:rewritten|revised|updated|improved|new)\s+)?(?:text|version|page|output)|rewritten|rewrite|answer)\s*:(?:\*\*)?\s*",
            paras[0],
            re.IGNORECASE,
        )
        if label and paras[0][label.end() :].strip():
            paras[0] = paras[0][label.end() :]
        break
    while len(paras) > 1 and _CHATTER_END_RE.match(paras[-1]):
        paras.pop()
    while paras and paras[-1].strip() in {"---", "***", "```"}:
        paras.pop()
    return "\n\n".join(p.strip("\n") for p in paras)


# --------------------------------------------------------------------------- chunking


@dataclass(frozen=True)
class Piece:
    """A part of a document: ``text``, whether it may be rewritten, and the separator that followed it."""

    text: str
    rewritable: bool
    sep: str = ""


@dataclass(frozen=True)
class Chunk:
    """Consecutive pieces sent together (``rewritable``) or kept verbatim."""

    pieces: tuple[Piece, ...]
    rewritable: bool

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pieces)

    @property
    def sep(self) -> str:
        return self.pieces[-1].sep


_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+\S")
_SEP_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")


def split_pieces(text: str) -> list[Piece]:
    """Split ``text`` into pieces at paragraph boundaries, classifying each.

    Paragraphs are separated by blank lines; a text without any blank line (as trafilatura writes it)
    has one paragraph per line. Markdown headings, fenced code blocks (even with blank lines inside)
    and tables (every line starting with ``|``) are verbatim; everything else (prose, lists,
    quotes) is rewritable. A heading line directly followed by text is split off from it.
    """
    text = text.replace("\r\n", "\n").strip("\n")
    if not text.strip():
        return []
    if _SEP_RE.search(text):
        parts = _SEP_RE.split(text)
        seps = _SEP_RE.findall(text)
    else:
        parts = text.split("\n")
        seps = ["\n"] * (len(parts) - 1)
    seps.append("")
    raw: list[tuple[str, str]] = list(zip(parts, seps))

    # Re-join fenced code blocks that blank lines cut apart.
    merged: list[tuple[str, str]] = []
    i = 0
    while i < len(raw):
        block, sep = raw[i]
        if block.lstrip().startswith("```") and block.count("```") % 2 == 1:
            j = i
            while j + 1 < len(raw) and block.count("```") % 2 == 1:
                j += 1
                block = block + sep + raw[j][0]
                sep = raw[j][1]
            i = j + 1
        else:
            i += 1
        merged.append((block, sep))

    pieces: list[Piece] = []
    for block, sep in merged:
        if not block.strip():
            continue
        stripped = block.strip()
        if stripped.startswith("```"):
            pieces.append(Piece(block, False, sep))
            continue
        lines = block.split("\n")
        if all(line.lstrip().startswith("|") for line in lines if line.strip()):
            pieces.append(Piece(block, False, sep))
            continue
        # Headings inside a block (heading line followed by text on the next line) stay verbatim.
        buf: list[str] = []
        for line in lines:
            if _HEADING_RE.match(line):
                if buf:
                    pieces.append(Piece("\n".join(buf), True, "\n"))
                    buf = []
                pieces.append(Piece(line, False, "\n"))
            else:
                buf.append(line)
        if buf:
            pieces.append(Piece("\n".join(buf), True, sep))
        else:
            pieces[-1] = replace(pieces[-1], sep=sep)
    return pieces


def _split_long(piece: Piece, max_chars: int) -> list[Piece]:
    """Split one over-long paragraph at sentence ends into parts under ``max_chars`` (joined by a space)."""
    sents = re.split(r"(?<=[.!?])\s+", piece.text)
    out: list[str] = []
    cur = ""
    for s in sents:
        if cur and len(cur) + 1 + len(s) > max_chars:
            out.append(cur)
            cur = s
        else:
            cur = f"{cur} {s}" if cur else s
    if cur:
        out.append(cur)
    return [Piece(t, True, " ") for t in out[:-1]] + [Piece(out[-1], True, piece.sep)]


def plan_chunks(text: str, *, max_chars: int = DEFAULT_CHUNK_CHARS, keep_structure: bool = True) -> list[Chunk]:
    """Chunks of ``text`` to rewrite: see :func:`split_pieces`; prose pieces are grouped up to ``max_chars``.

    With ``keep_structure=False`` the whole text is one rewritable chunk (cut at a paragraph boundary
    after :data:`WHOLE_DOC_CHARS`).
    """
    if not keep_structure:
        body = text.strip()
        if len(body) > WHOLE_DOC_CHARS:
            cut = body.rfind("\n", 0, WHOLE_DOC_CHARS)
            body = body[: cut if cut > WHOLE_DOC_CHARS // 2 else WHOLE_DOC_CHARS]
        return [Chunk((Piece(body, True, ""),), True)] if body else []
    chunks: list[Chunk] = []
    group: list[Piece] = []
    size = 0

    def flush() -> None:
        nonlocal group, size
        if group:
            chunks.append(Chunk(tuple(group), True))
            group, size = [], 0

    for piece in split_pieces(text):
        if not piece.rewritable:
            flush()
            chunks.append(Chunk((piece,), False))
            continue
        parts = _split_long(piece, max_chars) if len(piece.text) > max_chars else [piece]
        for part in parts:
            if group and size + len(part.text) + 2 > max_chars:
                flush()
            group.append(part)
            size += len(part.text) + 2
    flush()
    return chunks


def reassemble(chunks: Sequence[Chunk], outputs: Sequence[str | None]) -> str:
    """Join chunk outputs (``None`` = keep the chunk's original text) with the original separators.

    Inside a rewritten chunk, blank-line paragraph breaks are converted to the document's own
    paragraph separator (a single newline for one-paragraph-per-line texts).
    """
    # A document without blank lines has one paragraph per line; model output is brought back to that.
    line_mode = not any(_SEP_RE.fullmatch(p.sep) for c in chunks for p in c.pieces)
    out: list[str] = []
    for chunk, new in zip(chunks, outputs):
        if new is None or not chunk.rewritable:
            body = "".join(p.text + (p.sep if k < len(chunk.pieces) - 1 else "") for k, p in enumerate(chunk.pieces))
        else:
            body = _SEP_RE.sub("\n", new.strip()) if line_mode else new.strip()
        out.append(body + chunk.sep)
    return "".join(out).strip("\n")


# --------------------------------------------------------------------------- results and store


@dataclass
class RewriteResult:
    """One (document, strategy) rewrite with its provenance and guards.

    ``text`` is the rewritten text, or the ORIGINAL text when ``status == "failed"`` (``reason``
    says why), so callers can always fall back. ``status == "unchanged"``: the model (or transform)
    returned the text as it was.

    ``implementation`` says what produced the text: "llm" (``model``, ``seed``, ``prompt_hash``),
    "transform" (``transform`` = "name@version" of :mod:`geoaudit.transforms`; no model, ``model``
    is "" and ``seed`` 0) or "none" (the text is not rewritten: rank).
    """

    doc_id: str
    strategy: str
    strategy_version: str
    status: str
    reason: str
    text: str
    original_hash: str
    rewritten_hash: str
    model: str
    seed: int
    prompt_hash: str
    created_at: str
    guards: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    query: str | None = None
    doc_url: str = ""
    key: str = ""
    chunks: int = 0
    implementation: str = "llm"
    transform: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def deterministic(self) -> bool:
        return self.implementation != "llm"

    @property
    def producer(self) -> str:
        """One line saying what produced the text: the model, "transform NAME@VERSION", or "none"."""
        if self.implementation == "transform":
            return f"transform {self.transform}"
        if self.implementation == "none":
            return "none (text not rewritten)"
        return self.model

    @property
    def backend_failed(self) -> bool:
        """The model backend gave no usable reply after its retries (not stored: a re-run tries again)."""
        return self.status == "failed" and self.reason.startswith("backend error")

    @property
    def flag_count(self) -> int:
        return int(sum(len(v) for v in (self.guards.get("fabrications") or {}).values()))

    def as_document(self, original: Document) -> Document:
        """``original`` with this result's text and the provenance in ``metadata["rewrite"]`` (same id)."""
        return original.with_text(
            self.text,
            rewrite={
                "strategy": self.strategy,
                "strategy_version": self.strategy_version,
                "status": self.status,
                "model": self.model,
                "seed": self.seed,
                "prompt_hash": self.prompt_hash,
                "implementation": self.implementation,
                "transform": self.transform,
                "original_hash": self.original_hash,
                "key": self.key,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def rewrite_key(
    original_hash: str, strategy: Strategy, model: str, seed: int, query: str | None, max_chars: int
) -> str:
    """Store key: sha256 over content hash, strategy name+version, model, seed, prompt hash, query, budget.

    The query only counts for query-aware strategies (others never see it), so one fluency rewrite
    serves every query.
    """
    payload = [
        original_hash,
        strategy.name,
        strategy.version,
        model,
        seed,
        strategy.prompt_hash,
        (query or "").strip() if strategy.query_aware else "",
        max_chars,
    ]
    return "r1:" + hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()


def _rewrites_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE rewrites (
            key TEXT PRIMARY KEY,
            doc_id TEXT NOT NULL,
            doc_url TEXT,
            strategy TEXT NOT NULL,
            strategy_version TEXT NOT NULL,
            prompt_hash TEXT NOT NULL,
            model TEXT NOT NULL,
            seed INTEGER NOT NULL,
            query TEXT,
            original_hash TEXT NOT NULL,
            rewritten_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT,
            text TEXT NOT NULL,
            guards TEXT NOT NULL,
            chunks INTEGER,
            created_at TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX rewrites_doc ON rewrites(doc_id, strategy)")


def _rewrites_v2(conn: sqlite3.Connection) -> None:
    """What produced each rewrite. Rows written before were LLM rewrites, except identity and rank
    results, which returned the text untouched without a model: the only "ok" rows whose guards
    have no "chunks" entry (every LLM result that reached the guards records its chunk count)."""
    conn.execute("ALTER TABLE rewrites ADD COLUMN implementation TEXT NOT NULL DEFAULT 'llm'")
    conn.execute("ALTER TABLE rewrites ADD COLUMN transform TEXT NOT NULL DEFAULT ''")
    conn.execute(
        "UPDATE rewrites SET implementation = 'none' WHERE status = 'ok' AND original_hash = rewritten_hash "
        "AND json_extract(guards, '$.chunks') IS NULL"
    )


# Append-only: a store written by an older geoaudit is brought forward, never rebuilt.
REWRITE_MIGRATIONS: list[Migration] = [
    ("rewrites_v1", _rewrites_v1),
    ("rewrites_v2", _rewrites_v2),
]
_COLUMNS = (
    "key",
    "doc_id",
    "doc_url",
    "strategy",
    "strategy_version",
    "prompt_hash",
    "model",
    "seed",
    "query",
    "original_hash",
    "rewritten_hash",
    "status",
    "reason",
    "text",
    "guards",
    "chunks",
    "created_at",
    "implementation",
    "transform",
)


class RewriteStore:
    """The ``rewrites`` table (in the same SQLite file as the documents): every rewrite and its provenance.

    Rows are only added or replaced by the same key; documents themselves are never touched.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, REWRITE_MIGRATIONS)
        self._lock = threading.Lock()

    def get(self, key: str) -> RewriteResult | None:
        with self._lock:
            row = self.conn.execute("SELECT * FROM rewrites WHERE key=?", (key,)).fetchone()
        return _row_to_result(row) if row else None

    def put(self, result: RewriteResult) -> None:
        row = {**result.to_dict(), "guards": json.dumps(result.guards, ensure_ascii=False)}
        with Transaction(self.conn) as c:
            c.execute(
                f"INSERT OR REPLACE INTO rewrites ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
                tuple(row[k] for k in _COLUMNS),
            )

    def find(
        self,
        *,
        doc_id: str | None = None,
        strategy: str | None = None,
        model: str | None = None,
        status: str | None = None,
    ) -> list[RewriteResult]:
        """Stored rewrites matching every given filter, newest first."""
        where, args = [], []
        for col, val in (("doc_id", doc_id), ("strategy", strategy), ("model", model), ("status", status)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = (
            "SELECT * FROM rewrites" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at DESC"
        )
        with self._lock:
            rows = self.conn.execute(sql, args).fetchall()
        return [_row_to_result(r) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM rewrites").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _row_to_result(row: sqlite3.Row) -> RewriteResult:
    data = {k: row[k] for k in _COLUMNS}
    data["guards"] = json.loads(data["guards"])
    return RewriteResult(**data, cached=True)


# --------------------------------------------------------------------------- rewriting


def _max_tokens(chunk_text: str, strategy: Strategy) -> int:
    """Room for the longest output the strategy accepts (~2.5 characters per token, generous for non-English) plus some chatter.

    A reply that hits this limit would fail the length guard anyway, so generating further is waste
    (small local models otherwise loop for thousands of tokens).
    """
    growth = min(max(strategy.constraints.max_length_ratio, 1.1), 2.5)
    return max(96, min(4096, int(len(chunk_text) / 2.5 * growth) + 64))


def _norm_ws(text: str) -> str:
    return " ".join(text.split())


async def arewrite(
    gateway: Any | None,
    strategy: Strategy,
    doc: Document,
    *,
    query: str | None = None,
    seed: int = 0,
    store: RewriteStore | None = None,
    max_chunk_chars: int = DEFAULT_CHUNK_CHARS,
    read_store: bool = True,
) -> RewriteResult:
    """Rewrite ``doc`` with ``strategy`` through ``gateway`` (see the module docstring for the steps).

    ``gateway`` is only used by LLM strategies; rule and rank strategies accept ``None``.

    Raises:
        InputError: the strategy is query-aware and ``query`` is missing (before any call).
        UnknownModelError: the gateway cannot serve its model.
    A backend failure after retries is not raised: it gives a ``failed`` result that is not stored,
    so the next run tries again. ``read_store=False`` ignores stored results (but still records the new one).
    """
    if strategy.query_aware and not (query and query.strip()):
        strategy.render("", query=query)  # raises the InputError with the hint
    if not strategy.needs_model:
        return _without_model(strategy, doc, query=query, store=store, read_store=read_store)
    if gateway is None:
        raise InputError(f"strategy {strategy.name!r} rewrites with a model, and no model gateway was given")
    model = gateway.model
    # The endpoint is part of the key: the same model name on another server is another model.
    key = rewrite_key(doc.content_hash, strategy, getattr(gateway, "endpoint_id", model), seed, query, max_chunk_chars)
    if store is not None and read_store:
        hit = store.get(key)
        if hit is not None:
            return hit

    base = dict(
        doc_id=doc.id,
        strategy=strategy.name,
        strategy_version=strategy.version,
        original_hash=doc.content_hash,
        model=model,
        seed=seed,
        prompt_hash=strategy.prompt_hash,
        created_at=now_iso(),
        query=query if strategy.query_aware else None,
        doc_url=doc.url,
        key=key,
    )
    cons = strategy.constraints
    chunks = plan_chunks(doc.text, max_chars=max_chunk_chars, keep_structure=cons.keep_structure)
    todo = [i for i, c in enumerate(chunks) if c.rewritable]
    requests = []
    for i in todo:
        system, user = strategy.render(chunks[i].text, title=doc.title, query=query)
        requests.append(
            LLMRequest.chat(
                user,
                system=system or None,
                temperature=strategy.temperature,
                max_tokens=_max_tokens(chunks[i].text, strategy),
                seed=seed,
                prompt_version=f"{strategy.name}@{strategy.version}:{strategy.prompt_hash}",
                purpose="rewrite",
            )
        )

    def failed(reason: str, guards: dict[str, Any] | None = None) -> RewriteResult:
        return RewriteResult(
            status="failed",
            reason=reason,
            text=doc.text,
            rewritten_hash=doc.content_hash,
            guards=guards or {},
            chunks=len(todo),
            **base,
        )

    try:
        responses = list(await asyncio.gather(*(gateway.acomplete(r) for r in requests)))
    except BackendError as exc:
        return failed(f"backend error: {exc}")

    instructions = strategy.instructions()
    outputs: list[str | None] = [None] * len(chunks)
    for n, (i, resp) in enumerate(zip(todo, responses)):
        out = postprocess(resp.text, strategy.postprocess)
        where = f" (chunk {n + 1}/{len(todo)})" if len(todo) > 1 else ""
        if G.is_empty(out):
            return _finish(store, failed("empty output" + where))
        if resp.finish_reason == "length":
            return _finish(store, failed("output longer than the strategy allows (cut at max_tokens)" + where))
        if G.is_refusal(out, chunks[i].text):
            return _finish(store, failed("the model refused" + where))
        if G.echoes_prompt(out, instructions, chunks[i].text):
            return _finish(store, failed("the model echoed the prompt" + where))
        outputs[i] = out
    new_text = reassemble(chunks, outputs) if cons.keep_structure else (outputs[0] or "").strip()

    report = G.check(
        doc.text,
        new_text,
        min_length_ratio=cons.min_length_ratio,
        max_length_ratio=cons.max_length_ratio,
        instructions=instructions,
        forbid_new=cons.forbid_new,
    )
    guards = report.to_dict()
    guards["chunks"] = len(todo)
    guards["llm_cached"] = all(r.cached for r in responses)
    if not cons.keep_structure and len(doc.text.strip()) > WHOLE_DOC_CHARS:
        guards["truncated_input"] = True
    if report.failure:
        return _finish(store, failed(report.failure, guards))
    unchanged = _norm_ws(new_text) == _norm_ws(doc.text)
    result = RewriteResult(
        status="unchanged" if unchanged else "ok",
        reason="the model returned the text unchanged" if unchanged else "",
        text=new_text,
        rewritten_hash=content_hash(new_text),
        guards=guards,
        chunks=len(todo),
        cached=bool(responses) and all(r.cached for r in responses),
        **base,
    )
    return _finish(store, result)


def _without_model(
    strategy: Strategy, doc: Document, *, query: str | None, store: RewriteStore | None, read_store: bool
) -> RewriteResult:
    """A rank or rule strategy: no model, no gateway; a rule's output goes through the same guards.

    The key has no model, seed or chunk budget (none of them changes the output); the prompt hash
    of a rule strategy covers its transform's name, code version and parameters.
    """
    key = rewrite_key(doc.content_hash, strategy, "", 0, query, 0)
    if store is not None and read_store:
        hit = store.get(key)
        if hit is not None:
            return hit
    transform: Transform | None = strategy.rule_transform if strategy.kind == "rule" else None
    base: dict[str, Any] = {
        "doc_id": doc.id,
        "strategy": strategy.name,
        "strategy_version": strategy.version,
        "original_hash": doc.content_hash,
        "model": "",
        "seed": 0,
        "prompt_hash": strategy.prompt_hash,
        "created_at": now_iso(),
        "query": query if strategy.query_aware else None,
        "doc_url": doc.url,
        "key": key,
        "implementation": "transform" if transform else "none",
        "transform": transform.label if transform else "",
    }
    if transform is None:  # rank: the engine moves the document; its text stays as it is
        guards = G.check(doc.text, doc.text).to_dict()
        guards["position"] = strategy.position
        return _finish(
            store,
            RewriteResult(
                status="ok", reason="", text=doc.text, rewritten_hash=doc.content_hash, guards=guards, **base
            ),
        )
    new_text = transform.apply(doc.text, title=doc.title, query=query, params=strategy.parameters)
    cons = strategy.constraints
    report = G.check(
        doc.text,
        new_text,
        min_length_ratio=cons.min_length_ratio,
        max_length_ratio=cons.max_length_ratio,
        forbid_new=cons.forbid_new,
    )
    guards = report.to_dict()
    if new_text == doc.text:
        # Nothing added, nothing to guard against: identity's purpose, or a page the transform has
        # nothing to act on (no sentence sharing a word with the query, no figures, ...).
        status, reason = (
            ("ok", "")
            if not transform.changes_text
            else ("unchanged", f"transform {transform.name} found nothing to change in this page")
        )
        return _finish(
            store,
            RewriteResult(
                status=status, reason=reason, text=doc.text, rewritten_hash=doc.content_hash, guards=guards, **base
            ),
        )
    if report.failure:
        return _finish(
            store,
            RewriteResult(
                status="failed",
                reason=report.failure,
                text=doc.text,
                rewritten_hash=doc.content_hash,
                guards=guards,
                **base,
            ),
        )
    return _finish(
        store,
        RewriteResult(
            status="ok", reason="", text=new_text, rewritten_hash=content_hash(new_text), guards=guards, **base
        ),
    )


def _finish(store: RewriteStore | None, result: RewriteResult) -> RewriteResult:
    if store is not None:
        store.put(result)
    return result


def rewrite(
    gateway: Any | None,
    strategy: Strategy,
    doc: Document,
    *,
    query: str | None = None,
    seed: int = 0,
    store: RewriteStore | None = None,
    max_chunk_chars: int = DEFAULT_CHUNK_CHARS,
    read_store: bool = True,
) -> RewriteResult:
    """Synchronous :func:`arewrite` (also usable inside Jupyter's running loop)."""
    return run_sync(
        arewrite(
            gateway,
            strategy,
            doc,
            query=query,
            seed=seed,
            store=store,
            max_chunk_chars=max_chunk_chars,
            read_store=read_store,
        )
    )


async def arewrite_many(
    gateway: Any | None,
    strategies: Sequence[Strategy],
    docs: Sequence[Document],
    *,
    query: str | None = None,
    seed: int = 0,
    store: RewriteStore | None = None,
    progress: Callable[[RewriteResult], None] | None = None,
    max_chunk_chars: int = DEFAULT_CHUNK_CHARS,
    read_store: bool = True,
) -> list[RewriteResult]:
    """Every (document, strategy) pair concurrently (the gateway bounds the calls in flight).

    Results are in document-major order: ``docs[0]`` x every strategy, then ``docs[1]``, ...
    ``progress`` is called once per finished pair.

    Raises:
        InputError: a strategy is query-aware and no query was given (before any call).
    """
    needs_query = [s.name for s in strategies if s.query_aware]
    if needs_query and not (query and query.strip()):
        raise InputError(f"strategy {needs_query[0]!r} needs the target query", hint='pass --query "..."')

    async def one(doc: Document, strategy: Strategy) -> RewriteResult:
        result = await arewrite(
            gateway,
            strategy,
            doc,
            query=query,
            seed=seed,
            store=store,
            max_chunk_chars=max_chunk_chars,
            read_store=read_store,
        )
        if progress is not None:
            progress(result)
        return result

    return list(await asyncio.gather(*(one(d, s) for d in docs for s in strategies)))


def rewrite_many(
    gateway: Any | None,
    strategies: Sequence[Strategy],
    docs: Sequence[Document],
    *,
    query: str | None = None,
    seed: int = 0,
    store: RewriteStore | None = None,
    progress: Callable[[RewriteResult], None] | None = None,
    max_chunk_chars: int = DEFAULT_CHUNK_CHARS,
    read_store: bool = True,
) -> list[RewriteResult]:
    """Synchronous :func:`arewrite_many`."""
    return run_sync(
        arewrite_many(
            gateway,
            strategies,
            docs,
            query=query,
            seed=seed,
            store=store,
            progress=progress,
            max_chunk_chars=max_chunk_chars,
            read_store=read_store,
        )
    )


# --------------------------------------------------------------------------- the rewrite job


OUTPUT_FORMATS = ("jsonl", "md", "html")


def output_format(path: Path | str | None, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the file's extension (``.htm`` is html,
    ``.markdown`` md), else jsonl.

    Raises:
        InputError: an unknown format.
    """
    if fmt is None:
        suffix = Path(path).suffix.lower().lstrip(".") if path else ""
        fmt = (
            {"htm": "html", "markdown": "md"}.get(suffix, suffix)
            if suffix in (*OUTPUT_FORMATS, "htm", "markdown")
            else "jsonl"
        )
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"unknown format {fmt!r}", hint=f"use {', '.join(OUTPUT_FORMATS)}")
    return fmt


@dataclass
class RewriteBatch:
    """What :func:`rewrite_documents` did: every result, the documents, who rewrote them."""

    results: list[RewriteResult]
    documents: dict[str, Document]
    #: The rewrite model, or None when only deterministic strategies ran (nothing loaded or contacted).
    model: str | None
    usage: Any | None
    transforms: list[str]
    query: str | None
    seed: int

    def pairs(self) -> list[tuple[Document, RewriteResult]]:
        """(original document, result) in result order."""
        return [(self.documents[r.doc_id], r) for r in self.results]

    @property
    def backend_failures(self) -> list[RewriteResult]:
        """Rewrites the model backend never answered (not stored: running again retries only those)."""
        return [r for r in self.results if r.backend_failed]

    def provenance(self) -> str:
        """One line saying who produced the rewrites."""
        by = [f"{self.model} · seed {self.seed}"] if self.model else []
        if self.transforms:
            by.append("deterministic transforms " + ", ".join(self.transforms) + " (no model)")
        line = "rewrites by " + " and ".join(by or ["no rewriting (rank moves pages, no model)"])
        return line + (f" · query {self.query!r}" if self.query else "")


def rewrite_documents(
    settings: Any,
    strategies: Sequence[str],
    *,
    inputs: Sequence[str | Path] = (),
    doc_patterns: Sequence[str] = (),
    query: str | None = None,
    seed: int = 0,
    model: str | None = None,
    read_store: bool = True,
    progress: Callable[[RewriteResult], None] | None = None,
) -> RewriteBatch:
    """Rewrite documents from files (``inputs``) and the document store (``doc_patterns``: id
    prefixes or URL patterns with ``*``) with the named strategies: the library behind
    ``geoaudit rewrite``. Only LLM strategies get a model (``model``, else the settings' rewrite
    model, else the engine model); deterministic ones run without one. Results are stored in the
    rewrite store, which serves a repeated rewrite (unless ``read_store`` is False).

    Raises:
        InputError: no strategy, no documents, a pattern matching nothing, or a query-aware
            strategy without ``query``.
        UnknownStrategyError: an unknown strategy name.
    """
    from geoaudit.documents import load_inputs
    from geoaudit.llm import make_gateway
    from geoaudit.store import DocumentStore
    from geoaudit.strategies import load_strategies

    if not strategies:
        raise InputError("no strategy given", hint="use --strategy NAME (repeatable) or --strategy all")
    chosen = load_strategies(settings=settings).resolve(list(strategies))
    if any(st.query_aware for st in chosen) and not (query and query.strip()):
        names = ", ".join(st.name for st in chosen if st.query_aware)
        raise InputError(f"{names} needs the target query", hint='pass --query "..."')
    docs = list(load_inputs([str(p) for p in inputs])) if inputs else []
    if doc_patterns:
        stored = DocumentStore(settings.store_path)
        try:
            for pattern in doc_patterns:
                found = stored.find(pattern)
                if not found:
                    raise InputError(
                        f"no stored document matches {pattern!r}", hint="see `geoaudit crawl` to add pages"
                    )
                docs.extend(found)
        finally:
            stored.close()
    if not docs:
        raise InputError("no documents given", hint="pass files, or --doc ID_OR_URL_PATTERN for stored documents")
    by_id = {d.id: d for d in docs}
    gateway = (
        make_gateway(settings, model=model or settings.rewrite_model or settings.model)
        if any(st.needs_model for st in chosen)
        else None
    )
    store = RewriteStore(settings.store_path)
    try:
        results = rewrite_many(
            gateway,
            chosen,
            list(by_id.values()),
            query=query,
            seed=seed,
            store=store,
            progress=progress,
            read_store=read_store,
        )
    finally:
        store.close()
        if gateway is not None:
            gateway.close()
    return RewriteBatch(
        results=results,
        documents=by_id,
        model=gateway.model if gateway is not None else None,
        usage=gateway.usage if gateway is not None else None,
        transforms=[st.rule_transform.label for st in chosen if st.kind == "rule"],
        query=query,
        seed=seed,
    )


# --------------------------------------------------------------------------- views


def word_diff(original: str, rewritten: str) -> list[tuple[str, str]]:
    """Word-level diff as ``(op, text)`` pairs, op in "equal", "delete", "insert" (difflib over words).

    Whitespace (including newlines) is kept attached to the words, so joining all "equal" and
    "insert" texts gives back the rewritten text.
    """
    a = re.findall(r"\S+\s*", original)
    b = re.findall(r"\S+\s*", rewritten)
    sm = difflib.SequenceMatcher(a=[w.strip() for w in a], b=[w.strip() for w in b], autojunk=False)
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            out.append(("equal", "".join(b[j1:j2])))
        else:
            if i2 > i1:
                out.append(("delete", "".join(a[i1:i2])))
            if j2 > j1:
                out.append(("insert", "".join(b[j1:j2])))
    return out


def _text_to_html(text: str) -> str:
    """Minimal, escaped HTML for a markdown-ish text: headings, bullet lists, paragraphs."""
    e = html.escape
    out: list[str] = []
    items: list[str] = []

    def close_list() -> None:
        if items:
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s++(.*)$", stripped)
        bullet = re.match(r"^(?:[-*+]|\d+[.)])\s++(.*)$", stripped)
        if bullet:
            items.append(bullet.group(1))
            continue
        close_list()
        if heading:
            level = min(len(heading.group(1)) + 2, 6)  # the article title is h2
            out.append(f"<h{level}>{e(heading.group(2))}</h{level}>")
        elif stripped:
            out.append(f"<p>{e(stripped)}</p>")
    close_list()
    return "\n".join(out) + "\n"


def _provenance(res: RewriteResult) -> str:
    """What produced a rewrite, for people: model, seed and prompt, or the deterministic transform."""
    if res.implementation == "transform":
        return f"deterministic transform {res.transform} (no model), spec {res.prompt_hash}"
    if res.implementation == "none":
        return "text not rewritten (no model)"
    return f"model {res.model}, seed {res.seed}, prompt {res.prompt_hash}"


def render_results(pairs: Sequence[tuple[Document, RewriteResult]], fmt: str) -> str:
    """The rewritten documents as ``jsonl`` (Document records with provenance), ``md`` or ``html``.

    HTML escapes every piece of text taken from documents or models.
    """
    if fmt == "jsonl":
        lines = []
        for doc, res in pairs:
            rec = res.as_document(doc).to_dict()
            rec["metadata"]["rewrite"].update({"reason": res.reason, "guards": res.guards})
            lines.append(json.dumps(rec, ensure_ascii=False))
        return "\n".join(lines) + ("\n" if lines else "")
    if fmt == "md":
        parts = []
        for doc, res in pairs:
            head = f"## {doc.title or doc.url or doc.id} — {res.strategy} ({res.status})"
            meta = f"*{_provenance(res)}*"
            if res.reason:
                meta += f"  \n*{res.reason}*"
            parts.append(f"{head}\n\n{meta}\n\n{res.text.strip()}\n")
        return "\n---\n\n".join(parts)
    if fmt == "html":
        e = html.escape
        body = []
        for doc, res in pairs:
            paras = _text_to_html(res.text)
            body.append(
                f'<article data-doc-id="{e(doc.id)}" data-strategy="{e(res.strategy)}" data-status="{e(res.status)}">\n'
                f"<h2>{e(doc.title or doc.url or doc.id)} — {e(res.strategy)} ({e(res.status)})</h2>\n"
                f'<p class="meta">{e(_provenance(res))}'
                + (f"; {e(res.reason)}" if res.reason else "")
                + "</p>\n"
                + paras
                + "</article>"
            )
        return (
            '<!doctype html>\n<html><head><meta charset="utf-8"><title>geoaudit rewrites</title></head>\n<body>\n'
            + "\n".join(body)
            + "\n</body></html>\n"
        )
    raise InputError(f"unknown output format {fmt!r}", hint="use jsonl, md or html")


__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "IMPLEMENTATIONS",
    "Chunk",
    "Piece",
    "RewriteResult",
    "RewriteStore",
    "arewrite",
    "arewrite_many",
    "plan_chunks",
    "postprocess",
    "reassemble",
    "render_results",
    "rewrite",
    "rewrite_key",
    "rewrite_many",
    "split_pieces",
    "word_diff",
]
