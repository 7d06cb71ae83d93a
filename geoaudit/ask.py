"""One question, one answer, every source's numbers: the library behind ``geoaudit ask``.

Composes the engine (answer), the metrics (per-source visibility, averaged over samples) and,
when asked, the judge (subjective impression); it sits above all three so none of them imports up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geoaudit import judge as judge_mod
from geoaudit.documents import Document
from geoaudit.engine import Answer, EngineConfig, aanswer
from geoaudit.llm import Gateway, run_sync
from geoaudit.metrics import mean_source_metrics


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
                {
                    "index": i + 1,
                    "id": v.id,
                    "title": v.title,
                    "url": v.url,
                    "truncated": v.truncated,
                    "shown_chars": v.shown_chars,
                    "chars": v.chars,
                    "score": v.score,
                    "metrics": self.metrics[i],
                }
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
    gateway: Gateway,
    query: str,
    docs: Sequence[Document],
    config: EngineConfig | None = None,
    *,
    seed: int = 0,
    retriever: Any = None,
    judge: bool = False,
    judge_config: Any = None,
) -> AskResult:
    """Answer, compute every source's metrics (averaged over samples) and optionally judge them."""
    config = config or EngineConfig()
    ans = await aanswer(gateway, query, docs, config, seed=seed, retriever=retriever)
    metrics = mean_source_metrics(ans, config.pawc_variant)
    judgements = await judge_mod.ajudge_all(gateway, ans, judge_config, seed=seed) if judge else None
    if judgements is not None:
        for row, j in zip(metrics, judgements):
            row["subjective_impression"] = j.subjective_impression
    return AskResult(ans, metrics, config.pawc_variant, judgements)


def ask(
    gateway: Gateway,
    query: str,
    docs: Sequence[Document],
    config: EngineConfig | None = None,
    *,
    seed: int = 0,
    retriever: Any = None,
    judge: bool = False,
    judge_config: Any = None,
) -> AskResult:
    """Synchronous :func:`aask`."""
    return run_sync(
        aask(gateway, query, docs, config, seed=seed, retriever=retriever, judge=judge, judge_config=judge_config)
    )


__all__ = ["AskResult", "aask", "ask"]
