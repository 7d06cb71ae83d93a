"""``geoaudit rewrite``: apply strategies to documents, with guards, provenance and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from geoaudit.cli._app import (
    ApiBasesOpt,
    ConcurrencyOpt,
    ModelOpt,
    NoCacheOpt,
    RouterOpt,
    WorkersOpt,
    app,
    check_output_file,
    console,
    err_console,
    print_usage,
    settings,
)


@app.command("rewrite")
def rewrite_cmd(
    inputs: list[Path] | None = typer.Argument(
        None, help="HTML, markdown, text or JSONL files (or directories / globs) to rewrite."
    ),
    doc: list[str] | None = typer.Option(
        None, "--doc", "-d", help="Stored document id prefix or URL pattern (* wildcards); repeatable."
    ),
    strategy: list[str] | None = typer.Option(
        None, "--strategy", "-s", help="Strategy name (repeatable), or 'all'. See `geoaudit strategies list`."
    ),
    model: str | None = ModelOpt,
    api_base: list[str] | None = ApiBasesOpt,
    router: Path | None = RouterOpt,
    query: str | None = typer.Option(None, "--query", "-q", help="Target query (required by query-aware strategies)."),
    seed: int = typer.Option(0, "--seed", help="Seed passed to the model (part of the cache key)."),
    out: Path | None = typer.Option(None, "--output", "-o", help="Write the rewritten documents here."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="Output format: jsonl, md or html (default: from -o's extension, else jsonl)."
    ),
    diff: bool = typer.Option(False, "--diff", help="Print a coloured word diff of every rewrite."),
    strategies_dir: Path | None = typer.Option(
        None, "--strategies-dir", help="Extra directory of strategy *.toml files."
    ),
    no_cache: bool = NoCacheOpt,
    concurrency: int | None = ConcurrencyOpt,
    workers: int | None = WorkersOpt,
) -> None:
    """Rewrite documents with GEO / C-SEO strategies; every rewrite is guarded and stored with its provenance.

    Documents come from files (INPUTS) or from the document store (--doc). A rewrite that fails
    its guards (empty, refusal, echoed prompt, length outside the strategy's range, invented facts
    in a grounded strategy) is reported as failed and the original text is kept. Re-running the
    same rewrite is served from the store. Deterministic strategies (kind rule, e.g. answer-first,
    key-facts) need no model: with only those, no model is loaded or contacted.

    Examples:
      geoaudit rewrite page.html --strategy fluency --diff
      geoaudit rewrite drafts/ --strategy all --query "best running shoes" -o rewrites.jsonl
      geoaudit rewrite --doc "example.com/*" -s statistics-grounded -s llm-guidance -o out.html
      geoaudit rewrite page.md -s keyword-stuffing -q "solar panel cost" --model ollama/qwen2.5:7b
      geoaudit rewrite page.html -s answer-first -s key-facts -q "solar panel cost" --diff
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from geoaudit.documents import atomic_write_text
    from geoaudit.errors import BackendError
    from geoaudit.rewrite import output_format, render_results, rewrite_documents

    fmt = output_format(out, fmt)
    check_output_file(out, "--output")
    s = settings(
        model=model,
        api_base=api_base,
        concurrency=concurrency,
        strategies_dir=strategies_dir,
        cache=False if no_cache else None,
        router_file=router,
        workers=workers,
    )
    with Progress(
        TextColumn("[bold]rewrite[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def on_done(r: Any) -> None:
            bar.update(task, advance=1, description=f"{r.strategy} {r.status}")

        batch = rewrite_documents(
            s,
            strategy or [],
            inputs=[str(p) for p in inputs or []],
            doc_patterns=doc or [],
            query=query,
            seed=seed,
            model=model,
            read_store=not no_cache,
            progress=on_done,
        )
    pairs = batch.pairs()
    if diff:
        _print_diffs(pairs)
    if out is not None:
        atomic_write_text(out, render_results(pairs, fmt))
    _print_summary(batch.results, list(dict.fromkeys(r.strategy for r in batch.results)))
    console.print(
        f"[dim]{escape(batch.provenance())} · 'cached' = served from the rewrite store in {escape(str(s.store_path))}[/]",
        highlight=False,
    )
    if out is not None:
        console.print(f"wrote {len(pairs)} rewritten documents to {out} ({fmt})", highlight=False)
    if batch.usage is not None:
        print_usage(batch.usage)
    # Backend failures are not stored, so a re-run retries exactly those; say so with the exit code.
    if batch.backend_failures:
        raise BackendError(
            f"{len(batch.backend_failures)} of {len(batch.results)} rewrites failed because the model backend did not answer"
            + (" (their original text was written)" if out is not None else ""),
            hint="check --model/--api-base, then run the same command again to retry only those",
        )


def _print_diffs(pairs: list[tuple[Any, Any]]) -> None:
    from rich.rule import Rule
    from rich.text import Text

    from geoaudit.rewrite import word_diff

    for doc, res in pairs:
        console.print(Rule(f"{doc.title or doc.url or doc.id} · {res.strategy} · {res.status}"), highlight=False)
        if res.status == "failed":
            console.print(f"[red]failed:[/] {res.reason} (original kept)", highlight=False)
            continue
        if res.text == doc.text:
            console.print("[dim](no change)[/]")
            continue
        # Without colour (piped, NO_COLOR) the styles vanish, so mark changes like `git diff --word-diff`.
        plain = console.color_system is None
        text = Text()
        for op, chunk in word_diff(doc.text, res.text):
            if op == "equal":
                text.append(chunk)
            elif op == "delete":
                text.append(_mark(chunk, "[-", "-]") if plain else chunk, style="red strike")
            else:
                text.append(_mark(chunk, "{+", "+}") if plain else chunk, style="green")
        console.print(text)


def _mark(chunk: str, left: str, right: str) -> str:
    """``cut `` -> ``[-cut-] ``: the marker hugs the words, so wrapping never splits it from them."""
    core = chunk.strip()
    if not core:
        return chunk
    start = chunk.index(core[0])
    return f"{chunk[:start]}{left}{core}{right}{chunk[start + len(core) :]}"


def _print_summary(results: list[Any], names: list[str]) -> None:
    from rich.table import Table

    table = Table(title="rewrite summary")
    for col in ("strategy", "done", "unchanged", "cached", "failed", "fabrication flags", "by"):
        table.add_column(col, justify="left" if col in ("strategy", "by") else "right")
    for name in names:
        rs = [r for r in results if r.strategy == name]
        flags = sum(r.flag_count for r in rs if r.status != "failed")
        table.add_row(
            name,
            str(sum(r.status == "ok" for r in rs)),
            str(sum(r.status == "unchanged" for r in rs)),
            str(sum(r.cached for r in rs)),
            str(sum(r.status == "failed" for r in rs)),
            str(flags),
            ", ".join(dict.fromkeys(r.producer for r in rs)),  # what produced the text: model or transform
        )
    console.print(table)
    failures = [r for r in results if r.status == "failed"]
    for r in failures[:20]:
        console.print(f"[red]failed[/] {r.doc_id} {r.strategy}: {r.reason}", highlight=False, soft_wrap=True)
    if len(failures) > 20:
        console.print(f"... and {len(failures) - 20} more failures", highlight=False)
    flagged = [r for r in results if r.status != "failed" and r.flag_count]
    for r in flagged[:20]:
        fab = r.guards.get("fabrications", {})
        detail = "; ".join(f"{k}: {', '.join(map(str, v[:3]))}" for k, v in fab.items() if v)
        console.print(f"[yellow]flags[/] {r.doc_id} {r.strategy}: {detail}", highlight=False, soft_wrap=True)
