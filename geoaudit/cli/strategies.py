"""``geoaudit strategies list|show``: the strategies a run can use, built-in and the user's own."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from geoaudit.cli._app import app, console, settings

strategies_app = typer.Typer(
    help="List and inspect rewrite strategies (built-in and from --strategies-dir).",
    no_args_is_help=True,
)
app.add_typer(strategies_app, name="strategies")

StrategiesDirOpt = typer.Option(
    None, "--strategies-dir", help="Extra directory of strategy *.toml files (overrides built-ins of the same name)."
)


def _registry(strategies_dir: Path | None):  # type: ignore[no-untyped-def]
    from geoaudit.strategies import load_strategies

    s = settings(strategies_dir=strategies_dir)
    return load_strategies(settings=s)


@strategies_app.command("list")
def list_strategies(
    strategies_dir: Path | None = StrategiesDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the strategies as JSON."),
) -> None:
    """List every strategy with its kind and origin.

    Strategies from --strategies-dir (or the strategies_dir setting) replace built-ins with the same
    name; such overrides are marked.

    Examples:
      geoaudit strategies list
      geoaudit strategies list --strategies-dir ./my-strategies
    """
    from rich.markup import escape
    from rich.table import Table

    registry = _registry(strategies_dir)
    if as_json:
        console.print_json(json.dumps([s.to_dict() for s in registry]))
        return
    table = Table(title=f"{len(registry)} strategies", show_lines=False)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("kind")
    table.add_column("title")
    table.add_column("origin")
    table.add_column("notes", style="dim")
    for s in registry:
        notes = []
        if s.query_aware:
            notes.append("needs --query")
        if s.grounded:
            notes.append("grounded")
        if s.kind == "rule" and s.changes_text:
            notes.append("deterministic, no model")
        if not s.builtin:
            notes.append(f"user: {s.source}")
        if s.name in registry.overridden:
            notes.append(f"overrides {registry.overridden[s.name].source}")
        # Short origin for the table ("GEO / Fluency Optimization"); `show` prints the full one.
        origin = f"{s.origin.paper.split(' (')[0]} / {s.origin.method.split(' (')[0]}"
        # Titles, origins and paths come from user files: never let them be read as rich markup.
        table.add_row(*(escape(cell) for cell in (s.name, s.kind, s.title, origin, "; ".join(notes))))
    console.print(table)


@strategies_app.command("show")
def show_strategy(
    name: str = typer.Argument(..., help="Strategy name, e.g. fluency."),
    strategies_dir: Path | None = StrategiesDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the strategy as JSON."),
) -> None:
    """Print one strategy: description, origin, prompts, post-processing and constraints.

    Examples:
      geoaudit strategies show fluency
      geoaudit strategies show keyword-stuffing --json
    """
    from rich.markup import escape
    from rich.panel import Panel

    s = _registry(strategies_dir).get(name)
    if as_json:
        console.print_json(json.dumps(s.to_dict()))
        return
    c = s.constraints
    # Every field below comes from a strategy file (a user's own): escaped, so "[/x]" is text.
    lines = [
        f"[bold]{escape(s.title)}[/]  ({escape(s.name)}, version {escape(s.version)}, "
        f"{'spec' if s.kind == 'rule' else 'prompt'} {s.prompt_hash})",
        "",
        escape(s.description),
        "",
        f"kind: {s.kind}",
        f"origin: {escape(str(s.origin))}",
        escape(f"file: {s.source}") + ("" if s.builtin else " (user)"),
    ]
    if s.kind == "rank":
        lines.append(f"position: {s.position} (1 = first source shown to the engine)")
    if s.kind == "rule":
        t = s.rule_transform
        lines += [
            f"transform: {t.label} (deterministic, no model; geoaudit.transforms)",
            f"query-aware: {'yes (needs --query)' if s.query_aware else 'no'}; grounded: {'yes' if s.grounded else 'no'}",
            "params: " + (", ".join(f"{k} = {v!r}" for k, v in s.params) or "none"),
            f"length ratio: {c.min_length_ratio:g}-{c.max_length_ratio:g}"
            + (f"; fails on new {', '.join(c.forbid_new)}" if c.forbid_new else ""),
        ]
    if s.kind == "llm-rewrite":
        lines += [
            f"query-aware: {'yes (needs --query)' if s.query_aware else 'no'}; grounded: {'yes' if s.grounded else 'no'}",
            f"temperature: {s.temperature:g}; postprocess: {escape(', '.join(s.postprocess)) or 'none'}",
            f"length ratio: {c.min_length_ratio:g}-{c.max_length_ratio:g}; keep structure: {c.keep_structure}"
            + (f"; fails on new {', '.join(c.forbid_new)}" if c.forbid_new else ""),
        ]
    console.print(Panel("\n".join(lines), expand=False), highlight=False)
    if s.kind == "rule":
        console.print("[bold]what the transform does[/]")
        console.print(s.rule_transform.doc, markup=False, highlight=False)
    if s.kind == "llm-rewrite":
        if s.system:
            console.print("[bold]system prompt[/]")
            console.print(s.system, markup=False, highlight=False)
        console.print("[bold]user prompt[/]")
        console.print(s.user, markup=False, highlight=False)
