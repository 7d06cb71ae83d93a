"""Options shared by the library and the command line: one place for every default.

Each stage's options are a frozen dataclass here; library functions take them and CLI flags
read their defaults from them, so the two cannot drift (trafilatura's ``Extractor`` model). This
module imports nothing heavy: ``geoaudit --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoOptions:
    """What ``geoaudit demo`` runs by default.

    Attributes:
        items: demo queries (the bundled bench has 30; all of them by default, for power).
        strategies: identity (the negative control), rank (the positive control: C-SEO Bench's
            "best SEO", the one lever that works), then content strategies that cannot invent
            anything (deterministic and extractive), so they measure the strategy rather than a
            small model's failed rewrites.
        rates: adopter rates (0 and 1: enough for the congestion control).
        source_budget: characters of each source shown to the engine.
        max_tokens: length cap of the engine's sampled answers.
    """

    items: int = 30
    strategies: tuple[str, ...] = ("identity", "rank", "answer-first", "key-facts", "llms-txt-structure")
    rates: tuple[float, ...] = (0.0, 1.0)
    source_budget: int = 500
    max_tokens: int = 100


DEMO = DemoOptions()

__all__ = ["DEMO", "DemoOptions"]
