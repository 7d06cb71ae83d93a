"""The typer app, shared options, and the one place where errors become CLI messages.

Command modules (``geoaudit/cli/<command>.py``) register on ``app`` and stay thin: build Settings,
call one library function, render its result. They import heavy libraries (litellm, pandas, scipy,
llama_cpp, trafilatura) inside the command body so ``geoaudit --help`` stays fast.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

import click
import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from geoaudit.errors import GeoauditError

# typer >= 0.20 vendors click as typer._click: catch ITS exception classes, not the click package's.
_click: Any = getattr(typer.core, "_click", click)

console = Console()
err_console = Console(stderr=True)

_state: dict[str, Any] = {"debug": False, "data_dir": None}


class GeoauditGroup(typer.core.TyperGroup):
    """Turns every GeoauditError raised by any command into one line on stderr and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GeoauditError as exc:
            if _state["debug"]:
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            err_console.print("[yellow]interrupted[/]: finished work is saved; run the same command again to resume.")
            sys.exit(130)
        except _click.exceptions.NoArgsIsHelpError:
            raise  # `geoaudit runs` alone: click prints the group's help
        except _click.exceptions.UsageError as exc:
            if _state["debug"]:
                raise
            _fail(_usage_message(exc), exc.exit_code)
        except (
            typer.Exit,
            typer.Abort,
            _click.exceptions.ClickException,
            click.exceptions.Exit,
            click.Abort,
            click.ClickException,
        ):
            raise  # typer/click's own control flow (--help, --version, confirm aborts)
        except OSError as exc:
            if _state["debug"] or exc.errno == errno.EPIPE:  # `geoaudit ... | head`: typer exits quietly
                raise
            # A path the user gave (unwritable output, a directory where a file goes) is theirs to fix.
            _fail(_os_message(exc), 2 if exc.filename else 1)
        except Exception as exc:  # a bug: still one line, the traceback is one flag away
            if _state["debug"]:
                raise
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (re-run with `geoaudit --debug ...` for the traceback)", 1
            )


def _fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


_GLOBAL_OPTIONS = ("--debug", "--data-dir", "--version")


def _usage_message(exc: Any) -> str:
    """Click's usage error as one line, with where to look for the right spelling."""
    message = exc.format_message().replace("\n", " ").strip()
    if isinstance(exc, _click.exceptions.NoSuchOption) and exc.option_name in _GLOBAL_OPTIONS:
        return f"{message} ({exc.option_name} goes before the command: geoaudit {exc.option_name} COMMAND ...)"
    path = exc.ctx.command_path if exc.ctx is not None else "geoaudit"
    return f"{message} (see `{path} -h`)"


def _os_message(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.filename is None:
        return what
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{what}: {where} (check the path and its permissions)"


def check_output_file(path: Path | None, option: str) -> None:
    """Fail before any work if ``path`` cannot be written as a file (not after an hour of LLM calls)."""
    if path is None:
        return
    from geoaudit.errors import InputError

    if path.is_dir():
        raise InputError(f"{option} {path} is a directory", hint="give a file name, e.g. out.jsonl")
    parent = _existing_ancestor(path.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {option} {path}: {parent} is not a writable directory")


def check_output_dir(path: Path | None, option: str) -> None:
    """Fail before any work if ``path`` cannot be created or written as a directory."""
    if path is None:
        return
    from geoaudit.errors import InputError

    if path.exists() and not path.is_dir():
        raise InputError(
            f"{option} {path} exists and is not a directory", hint="give a directory, e.g. reports/my-run/"
        )
    target = _existing_ancestor(path)
    if not target.is_dir() or not os.access(target, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {option} {path}: {target} is not a writable directory")


def _existing_ancestor(path: Path) -> Path:
    """The nearest existing directory at or above ``path`` (where mkdir -p would start)."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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
    data_dir: Path | None = typer.Option(
        None, "--data-dir", envvar="GEOAUDIT_HOME", help="Where caches, stores and runs live."
    ),
) -> None:
    _state["debug"] = debug
    _state["data_dir"] = data_dir


def settings(**overrides: Any) -> Any:
    """Settings for a command: flags (``overrides``) over env over config file over defaults.

    A repeated ``--api-base`` (a list) gives the model's endpoint and then its replicas.
    """
    from geoaudit.config import load_settings

    bases = overrides.get("api_base")
    if isinstance(bases, (list, tuple)):
        overrides["api_base"] = bases[0] if bases else None
        overrides["replicas"] = tuple(bases[1:]) or None
    return load_settings(data_dir=_state["data_dir"], debug=_state["debug"] or None, **overrides)


def print_usage(gateway_or_usage: Any) -> None:
    """The per-run LLM usage/cost line every LLM-using command prints at its end (a Gateway or its Usage)."""
    usage = getattr(gateway_or_usage, "usage", gateway_or_usage)
    err_console.print(f"[dim]{usage.summary()}[/]", highlight=False)


# Reusable option declarations, so every command spells them the same way.
ModelOpt = typer.Option(None, "--model", "-m", help="litellm model string (default: local/smollm2, embedded).")
ApiBaseOpt = typer.Option(None, "--api-base", help="Endpoint for the model, e.g. http://localhost:11434.")
ConcurrencyOpt = typer.Option(None, "--concurrency", "-j", help="LLM calls in flight at once (per endpoint).")
ApiBasesOpt = typer.Option(
    None,
    "--api-base",
    help="Endpoint for the model, e.g. http://localhost:8000/v1. Repeat it for replicas of the same model "
    "(calls are spread by litellm's Router; the first endpoint identifies the model in run ids).",
)
RouterOpt = typer.Option(
    None,
    "--router",
    help="litellm Router file (YAML or TOML model_list): the model's endpoints and their slots.",
)
WorkersOpt = typer.Option(
    None,
    "--workers",
    help="Processes making the remote LLM calls (litellm costs ~5 ms of CPU a call; "
    "raise it when many slots answer fast).",
)
NoCacheOpt = typer.Option(False, "--no-cache", help="Do not read or write the LLM response cache.")
