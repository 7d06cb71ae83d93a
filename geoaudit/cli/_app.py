"""The typer app, shared options, and the one place where errors become CLI messages.

Command modules (``geoaudit/cli/<command>.py``) register on ``app`` and stay thin: build Settings,
call one library function, render its result. They import heavy libraries (litellm, pandas, scipy,
llama_cpp, trafilatura) inside the command body so ``geoaudit --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import click
import typer
import typer.core
from rich.console import Console

from geoaudit.errors import GeoauditError

console = Console()
err_console = Console(stderr=True)

_state: dict[str, Any] = {"debug": False, "data_dir": None}


class GeoauditGroup(typer.core.TyperGroup):
    """Turns every GeoauditError raised by any command into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeoauditError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            err_console.print(
                "[yellow]interrupted[/]: finished work is saved; run the same command again to resume."
            )
            sys.exit(130)


app = typer.Typer(
    cls=GeoauditGroup,
    help=(
        "geoaudit: measure, with evidence, whether rewriting a page for AI answer engines "
        "(GEO / C-SEO) makes it more visible, against competitors who do the same."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from geoaudit import __version__

        console.print(f"geoaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", envvar="GEOAUDIT_HOME", help="Where caches, stores and runs live."
    ),
) -> None:
    _state["debug"] = debug
    _state["data_dir"] = data_dir


def settings(**overrides: Any) -> Any:
    """Settings for a command: flags (``overrides``) over env over config file over defaults."""
    from geoaudit.config import load_settings

    return load_settings(data_dir=_state["data_dir"], debug=_state["debug"] or None, **overrides)


def print_usage(gateway: Any) -> None:
    """The per-run LLM usage/cost line every LLM-using command prints at its end."""
    err_console.print(f"[dim]{gateway.usage.summary()}[/]", highlight=False)


# Reusable option declarations, so every command spells them the same way.
ModelOpt = typer.Option(None, "--model", "-m", help="litellm model string (default: local/smollm2, embedded).")
ApiBaseOpt = typer.Option(None, "--api-base", help="Endpoint for the model, e.g. http://localhost:11434.")
ConcurrencyOpt = typer.Option(None, "--concurrency", "-j", help="LLM calls in flight at once.")
NoCacheOpt = typer.Option(False, "--no-cache", help="Do not read or write the LLM response cache.")
