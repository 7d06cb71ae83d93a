"""geoaudit's command line: ``geoaudit --help`` lists every command."""

from __future__ import annotations

import importlib

from geoaudit.cli._app import app

# Each module registers its commands on ``app`` when imported; order = order in --help.
_COMMAND_MODULES = [
    "demo",
    "crawl",
    "check",
    "audit",
    "strategies",
    "rewrite",
    "ask",
    "simulate",
    "stats",
    "report",
    "bench",
    "llm",
]

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"geoaudit.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != f"geoaudit.cli.{_name}":
            raise


def main() -> None:
    import warnings

    # On Ctrl-C, asyncio cancels calls that litellm had created but not started; their
    # "coroutine ... was never awaited" warnings are noise for a CLI user.
    warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
    app()


__all__ = ["app", "main"]
