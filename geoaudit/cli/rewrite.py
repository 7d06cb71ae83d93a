"""``geoaudit rewrite``: apply strategies to documents, with guards, provenance and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

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

_FORMATS = ("jsonl", "md", "html")


@app.command("rewrite")
def rewrite_cmd(
    inputs: Optional[list[Path]] = typer.Argument(
        None, help="HTML, markdown, text or JSONL files (or directories / globs) to rewrite."
    ),
    doc: Optional[list[str]] = typer.Option(
        None, "--doc", "-d", help="Stored document id prefix or URL pattern (* wildcards); repeatable."
    ),
    strategy: Optional[list[str]] = typer.Option(
        None, "--strategy", "-s", help="Strategy name (repeatable), or 'all'. See `geoaudit strategies list`."
    ),
    model: Optional[str] = ModelOpt,
    api_base: Optional[list[str]] = ApiBasesOpt,
    router: Optional[Path] = RouterOpt,
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Target query (required by query-aware strategies)."),
    seed: int = typer.Option(0, "--seed", help="Seed passed to the model (part of the cache key)."),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the rewritten documents here."),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="Output format: jsonl, md or html (default: from -o's extension, else jsonl)."
    ),
    diff: bool = typer.Option(False, "--diff", help="Print a coloured word diff of every rewrite."),
    strategies_dir: Optional[Path] = typer.Option(
        None, "--strategies-dir", help="Extra directory of strategy *.toml files."
    ),
    no_cache: bool = NoCacheOpt,
    concurrency: Optional[int] = ConcurrencyOpt,
    workers: Optional[int] = WorkersOpt,
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
    from geoaudit.documents import atomic_write_text, load_inputs
    from geoaudit.errors import InputError
    from geoaudit.llm import make_gateway
    from geoaudit.rewrite import RewriteStore, render_results, rewrite_many
    from geoaudit.store import DocumentStore
    from geoaudit.strategies import load_strategies

    if not strategy:
        raise InputError("no strategy given", hint="use --strategy NAME (repeatable) or --strategy all")
    if fmt is None:
        suffix = out.suffix.lower().lstrip(".") if out else ""
        fmt = {"htm": "html", "markdown": "md"}.get(suffix, suffix) if suffix in (*_FORMATS, "htm", "markdown") else "jsonl"
    if fmt not in _FORMATS:
        raise InputError(f"unknown format {fmt!r}", hint="use --format jsonl, md or html")
    check_output_file(out, "--output")

    s = settings(
        model=model, api_base=api_base, concurrency=concurrency, strategies_dir=strategies_dir,
        cache=False if no_cache else None, router_file=router, workers=workers,
    )
    registry = load_strategies(settings=s)
    chosen = registry.resolve(strategy)
    if any(st.query_aware for st in chosen) and not (query and query.strip()):
        names = ", ".join(st.name for st in chosen if st.query_aware)
        raise InputError(f"{names} needs the target query", hint='pass --query "..."')

    docs = []
    if inputs:
        docs.extend(load_inputs([str(p) for p in inputs]))
    if doc:
        store_docs = DocumentStore(s.store_path)
        for pattern in doc:
            found = store_docs.find(pattern)
            if not found:
                raise InputError(f"no stored document matches {pattern!r}", hint="see `geoaudit crawl` to add pages")
            docs.extend(found)
        store_docs.close()
    if not docs:
        raise InputError("no documents given", hint="pass files, or --doc ID_OR_URL_PATTERN for stored documents")
    docs = list({d.id: d for d in docs}.values())

    # Only LLM strategies need a model; rule strategies run without one (nothing is loaded or contacted).
    gateway = make_gateway(s, model=model or s.rewrite_model or s.model) if any(st.needs_model for st in chosen) else None
    store = RewriteStore(s.store_path)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = len(docs) * len(chosen)
    try:
        with Progress(
            TextColumn("[bold]rewrite[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=err_console, transient=True,
        ) as bar:
            task = bar.add_task("", total=total)

            def on_done(r: Any) -> None:
                bar.update(task, advance=1, description=f"{r.strategy} {r.status}")

            results = rewrite_many(
                gateway, chosen, docs, query=query, seed=seed, store=store, progress=on_done,
                read_store=not no_cache,
            )
    finally:
        store.close()

    by_id = {d.id: d for d in docs}
    pairs = [(by_id[r.doc_id], r) for r in results]
    if diff:
        _print_diffs(pairs)
    if out is not None:
        atomic_write_text(out, render_results(pairs, fmt))
    _print_summary(results, chosen)
    from rich.markup import escape

    by = [f"{gateway.model} · seed {seed}"] if gateway is not None else []
    rules = [st.rule_transform.label for st in chosen if st.kind == "rule"]
    if rules:
        by.append("deterministic transforms " + ", ".join(rules) + " (no model)")
    provenance = "rewrites by " + " and ".join(by or ["no rewriting (rank moves pages, no model)"])
    provenance += f" · query {query!r}" if query else ""
    console.print(
        f"[dim]{escape(provenance)} · 'cached' = served from the rewrite store in {escape(str(s.store_path))}[/]",
        highlight=False,
    )
    if out is not None:
        console.print(f"wrote {len(pairs)} rewritten documents to {out} ({fmt})", highlight=False)
    if gateway is not None:
        print_usage(gateway)
        gateway.close()
    # Backend failures are not stored, so a re-run retries exactly those; say so with the exit code.
    backend = [r for r in results if r.status == "failed" and r.reason.startswith("backend error")]
    if backend:
        from geoaudit.errors import BackendError

        raise BackendError(
            f"{len(backend)} of {len(results)} rewrites failed because the model backend did not answer"
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
    return f"{chunk[:start]}{left}{core}{right}{chunk[start + len(core):]}"


def _print_summary(results: list[Any], chosen: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="rewrite summary")
    for col in ("strategy", "done", "unchanged", "cached", "failed", "fabrication flags", "by"):
        table.add_column(col, justify="left" if col in ("strategy", "by") else "right")
    for st in chosen:
        rs = [r for r in results if r.strategy == st.name]
        flags = sum(r.flag_count for r in rs if r.status != "failed")
        table.add_row(
            st.name,
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
