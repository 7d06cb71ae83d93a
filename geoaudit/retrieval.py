"""Retrieval: which candidate documents the engine shows, and in what order.

A retriever scores candidates for a query. The engine only needs :class:`Retriever`'s one method,
so a dense retriever can be added later next to :class:`BM25Retriever` without touching the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from geoaudit.documents import Document


@dataclass(frozen=True)
class Scored:
    """One ranked candidate: its index in the candidate list and its retrieval score."""

    index: int
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Scores candidate documents for a query.

    ``rank`` returns every candidate exactly once, best first; equal scores keep the candidates'
    given order (so a ranking is deterministic).
    """

    name: str

    def rank(self, query: str, docs: Sequence[Document]) -> list[Scored]: ...


def _title_and_text(doc: Document) -> str:
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


class BM25Retriever:
    """Okapi BM25 over the candidates (``bm25s``), English stopwords removed, no stemming.

    The index is built over the candidates of each call: the engine ranks a handful of documents
    per query, where building is cheaper than keeping an index. Title and text are indexed together.

    Args:
        k1, b: the BM25 parameters (Robertson et al.; bm25s defaults 1.5 and 0.75).
        stopwords: a bm25s stopword list name ("en") or None.
    """

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en") -> None:
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords

    def scores(self, query: str, docs: Sequence[Document]) -> list[float]:
        """BM25 score of every candidate for ``query`` (0.0 when no query term occurs)."""
        if not docs:
            return []
        import bm25s  # heavy-ish import (numpy, scipy); only when retrieving

        sw: str | list[str] = self.stopwords or []
        corpus = bm25s.tokenize([_title_and_text(d) for d in docs], stopwords=sw, show_progress=False)
        index = bm25s.BM25(k1=self.k1, b=self.b)
        index.index(corpus, show_progress=False)
        q = bm25s.tokenize([query], stopwords=sw, show_progress=False, return_ids=False)[0]
        terms = [t for t in q if t in corpus.vocab]
        if not terms:
            return [0.0] * len(docs)
        return [float(s) for s in index.get_scores(terms)]

    def rank(self, query: str, docs: Sequence[Document]) -> list[Scored]:
        scores = self.scores(query, docs)
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        return [Scored(i, scores[i]) for i in order]

    def describe(self) -> dict[str, object]:
        return {"retriever": self.name, "k1": self.k1, "b": self.b, "stopwords": self.stopwords}
