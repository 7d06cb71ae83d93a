"""The ``Document`` every stage reads and writes, its stable ids, and document file I/O.

A document's id is a hash of its canonical URL (so a recrawl updates, never duplicates) and its
``content_hash`` a hash of its text (so rewrites and answers are keyed by content, not by name).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from geoaudit.errors import InputError

HASH_PREFIX = "d1:"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_id(canonical_url: str) -> str:
    """Stable id of a document: the first 16 hex digits of sha256 of its canonical URL."""
    return sha256(HASH_PREFIX + canonical_url.strip())[:16]


def content_hash(text: str) -> str:
    return sha256(text)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Document:
    """One page or draft: what crawl produces and rewrite, engine and simulate consume."""

    id: str
    url: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    fetched_at: str | None = None
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.text))

    @classmethod
    def create(
        cls,
        url: str,
        text: str,
        title: str = "",
        metadata: dict[str, Any] | None = None,
        fetched_at: str | None = None,
        canonical_url: str | None = None,
    ) -> "Document":
        return cls(
            id=document_id(canonical_url or url),
            url=url,
            title=title,
            text=text,
            metadata=dict(metadata or {}),
            fetched_at=fetched_at or now_iso(),
        )

    def with_text(self, text: str, **metadata: Any) -> "Document":
        """A copy with new text (and a recomputed content hash); the id stays the same."""
        return replace(self, text=text, content_hash=content_hash(text), metadata={**self.metadata, **metadata})

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "") -> "Document":
        """Build a Document from a JSON record; ``id`` and ``content_hash`` are derived when absent."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: a document must be a JSON object")
        text = data.get("text")
        if not isinstance(text, str):
            raise InputError(f"{source}: document has no 'text' string")
        url = str(data.get("url") or "")
        doc_id = str(data.get("id") or document_id(url or sha256(text)))
        return cls(
            id=doc_id,
            url=url,
            title=str(data.get("title") or ""),
            text=text,
            metadata=dict(data.get("metadata") or {}),
            fetched_at=data.get("fetched_at"),
            content_hash=str(data.get("content_hash") or content_hash(text)),
        )


def read_jsonl(path: Path | str) -> list[Document]:
    """Read documents from a JSONL file (one Document record per line).

    Raises:
        InputError: the file is missing, empty, or a line is not a document record.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    docs = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            docs.append(Document.from_dict(data, source=f"{path}:{lineno}"))
    if not docs:
        raise InputError(f"{path} holds no documents")
    return docs


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_jsonl(path: Path | str, docs: Iterable[Document]) -> int:
    lines = [json.dumps(d.to_dict(), ensure_ascii=False) for d in docs]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def iter_jsonl_records(path: Path | str) -> Iterator[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
