"""``geoaudit bench list|show|fetch``: the benches a simulation can run on."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from geoaudit.cli._app import app, console, err_console, settings

bench_app = typer.Typer(
    help="List, inspect and download benches (query + candidate pages + target) for simulate.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

KOpt = typer.Option(5, "--k", "-k", help="Documents an item needs; items with fewer are skipped.")


def _check_k(k: int) -> None:
    if k < 1:
        from geoaudit.errors import InputError

        raise InputError(f"--k must be at least 1, got {k}")


@bench_app.command("list")
def list_cmd(
    k: int = KOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the benches as JSON."),
) -> None:
    """List the shipped demo bench and every bench in <data dir>/benches/ with item counts.

    Put GEO-bench JSONL, C-SEO Bench parquet files or your own bench (JSONL, or a directory with
    queries.jsonl and its pages) in <data dir>/benches/ to have it listed; `bench fetch` puts
    downloads there.

    Examples:
      geoaudit bench list
      geoaudit bench list --json
    """
    from rich.table import Table

    from geoaudit.bench import list_benches

    _check_k(k)
    rows = list_benches(settings(), k=k)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} bench{'es' if len(rows) != 1 else ''}")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("format")
    table.add_column("items", justify="right")
    table.add_column("domains")
    table.add_column("path", style="dim", overflow="fold")
    for row in rows:
        items = str(row["items"])
        if row["skipped"]:
            items += f" ({row['skipped']} skipped)"
        domains = ", ".join(row["domains"]) if not row["error"] else f"[red]unusable: {row['error']}[/]"
        table.add_row(row["name"], row["format"] or "?", items, domains, row["path"])
    console.print(table)


@bench_app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="'demo', a name from `bench list`, or a path to a bench."),
    limit: int | None = typer.Option(10, "--limit", "-n", help="Items to show (0 = all)."),
    domain: str | None = typer.Option(None, "--domain", help="Only items of this domain."),
    k: int = KOpt,
    seed: int = typer.Option(0, "--seed", help="Seed for targets a bench does not fix (C-SEO Bench)."),
    as_json: bool = typer.Option(False, "--json", help="Print the items as JSON (query, target, documents)."),
) -> None:
    """Show a bench's items: query, domain, target position and document count.

    Examples:
      geoaudit bench show demo
      geoaudit bench show demo --domain travel --limit 0
      geoaudit bench show ~/data/geo-bench/test.jsonl --limit 5
      geoaudit bench show ./my-site-bench          # a directory with queries.jsonl
    """
    from rich.table import Table

    from geoaudit.bench import load_bench

    _check_k(k)
    if limit is not None and limit < 0:
        from geoaudit.errors import InputError

        raise InputError(f"--limit must be 0 (all) or more, got {limit}")
    bench = load_bench(name, k=k, limit=None, seed=seed, domain=domain, settings=settings())
    shown = bench.items if not limit else bench.items[:limit]
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {
                        "id": it.id,
                        "query": it.query,
                        "domain": it.domain,
                        "tags": list(it.tags),
                        "target": it.target,
                        "documents": [
                            {"id": d.id, "url": d.url, "title": d.title, "words": d.word_count} for d in it.documents
                        ],
                    }
                    for it in shown
                ]
            )
        )
        return
    table = Table(
        title=f"{bench.name} ({bench.format}): {len(bench)} items"
        + (f", showing {len(shown)}" if len(shown) < len(bench) else "")
    )
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("query")
    table.add_column("domain")
    table.add_column("target", justify="right")
    table.add_column("docs", justify="right")
    table.add_column("target document", style="dim", overflow="fold")
    for it in shown:
        doc = it.target_document
        label = doc.title or doc.url or doc.id
        table.add_row(it.id, it.query, it.domain, f"{it.target + 1} of {it.k}", str(it.k), label)
    console.print(table)
    if bench.skipped:
        err_console.print(f"[yellow]{len(bench.skipped)} item(s) skipped[/]:", highlight=False)
        for item_id, reason in bench.skipped[:10]:
            err_console.print(f"  {item_id}: {reason}", highlight=False)
        if len(bench.skipped) > 10:
            err_console.print(f"  ... and {len(bench.skipped) - 10} more", highlight=False)
    for note in bench.notes:
        err_console.print(f"[dim]note: {note}[/]", highlight=False)


@bench_app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help="geo-bench or cseo-bench."),
    splits: list[str] | None = typer.Argument(
        None, help="C-SEO Bench splits (books debate news retail videogames web; default: all)."
    ),
    base_url: str = typer.Option(
        "https://huggingface.co", "--base-url", help="Hub to download from (a mirror, or a local server)."
    ),
) -> None:
    """Download a public bench from the Hugging Face hub into <data dir>/benches/ (needs network).

    geo-bench fetches GEO-bench's test.jsonl (1,000 queries x 5 sources, ~88 MB; its licence is
    unclear, the card says CC BY-NC-SA 4.0: treat it as non-commercial). cseo-bench fetches C-SEO
    Bench's parquet splits (Apache-2.0). Loaders never need the network: you can also copy the files
    into <data dir>/benches/ yourself.

    Examples:
      geoaudit bench fetch geo-bench
      geoaudit bench fetch cseo-bench retail videogames
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    from geoaudit.bench import fetch_bench

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=err_console, transient=True,
    ) as progress:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def on_bytes(path: Path, done: int, total: int) -> None:
            key = str(path)
            if key not in tasks:
                tasks[key] = progress.add_task(path.name, total=total or None)
            progress.update(tasks[key], completed=done, total=total or None)

        paths = fetch_bench(name, settings(), splits=splits or None, base_url=base_url, progress=on_bytes)
    for path in paths:
        console.print(f"saved {path}", highlight=False)
    console.print(f"next: geoaudit bench show {name}", highlight=False)
