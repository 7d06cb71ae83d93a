"""geoaudit: does rewriting a page for AI answer engines (GEO / C-SEO) make it more visible?

The library behind the ``geoaudit`` command. Stages, in the one direction data flows:

    crawl -> documents -> strategies/rewrite -> engine (+ metrics) -> simulate -> stats -> report

The entry points a notebook user needs are re-exported here (``geoaudit.simulate(...)``,
``geoaudit.run_stats(run)``, ...) and imported on first use, so ``import geoaudit`` and
``geoaudit --help`` stay fast; every stage's module can also be imported directly.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("geoaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

#: Public name -> the module that defines it (imported when the name is first used).
_EXPORTS: dict[str, str] = {
    # settings and errors
    "Settings": "config",
    "load_settings": "config",
    "GeoauditError": "errors",
    "UserError": "errors",
    "ConfigError": "errors",
    "InputError": "errors",
    "UnknownStrategyError": "errors",
    "UnknownModelError": "errors",
    "RunError": "errors",
    "FetchError": "errors",
    "BackendError": "errors",
    "StoreError": "errors",
    # crawl -> documents
    "crawl": "crawl",
    "acrawl": "crawl",
    "CrawlOptions": "crawl",
    "Document": "documents",
    "load_inputs": "documents",
    # strategies -> rewrite
    "load_strategies": "strategies",
    "rewrite": "rewrite",
    "arewrite": "rewrite",
    "rewrite_many": "rewrite",
    # the engine
    "Gateway": "llm",
    "LLMRequest": "llm",
    "EngineConfig": "engine",
    "answer": "engine",
    "aanswer": "engine",
    "ask": "ask",
    "aask": "ask",
    # benches -> simulate -> runs -> stats -> report
    "load_bench": "bench",
    "SimulationConfig": "simulate",
    "Simulation": "simulate",
    "simulate": "simulate",
    "Run": "runs",
    "open_run": "runs",
    "list_runs": "runs",
    "summarize": "stats",
    "run_stats": "analysis",
    "StatsResult": "analysis",
    "build_report": "report",
    "write_report": "report",
    "run_demo": "demo",
    # your own page against your competitors (geoaudit audit)
    "audit": "audit",
    "plan_audit": "audit",
    "AuditOptions": "audit",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'geoaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"geoaudit.{module}"), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """The package module. ``crawl``, ``rewrite``, ``ask`` and ``simulate`` name both a stage's
    module and its entry-point function; importing the module must not replace the function as
    the package attribute (the module stays reachable: ``from geoaudit.crawl import ...``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from geoaudit.analysis import StatsResult, run_stats
    from geoaudit.ask import aask, ask
    from geoaudit.audit import AuditOptions, audit, plan_audit
    from geoaudit.bench import load_bench
    from geoaudit.config import Settings, load_settings
    from geoaudit.crawl import CrawlOptions, acrawl, crawl
    from geoaudit.demo import run_demo
    from geoaudit.documents import Document, load_inputs
    from geoaudit.engine import EngineConfig, aanswer, answer
    from geoaudit.errors import (
        BackendError,
        ConfigError,
        FetchError,
        GeoauditError,
        InputError,
        RunError,
        StoreError,
        UnknownModelError,
        UnknownStrategyError,
        UserError,
    )
    from geoaudit.llm import Gateway, LLMRequest
    from geoaudit.report import build_report, write_report
    from geoaudit.rewrite import arewrite, rewrite, rewrite_many
    from geoaudit.runs import Run, list_runs, open_run
    from geoaudit.simulate import Simulation, SimulationConfig, simulate
    from geoaudit.stats import summarize
    from geoaudit.strategies import load_strategies
