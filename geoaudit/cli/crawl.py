"""``geoaudit crawl``: fetch pages (or load local drafts) into the document store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from geoaudit.cli._app import app, check_output_file, console, err_console, settings
from geoaudit.errors import FetchError


@app.command("crawl")
def crawl_command(
    inputs: list[str] | None = typer.Argument(
        None, metavar="URL_OR_PATH...", help="http(s) URLs, or local .html/.md/.txt/.jsonl files, directories, globs."
    ),
    file: Path | None = typer.Option(None, "--file", "-f", help="Text file of URLs, one per line (# comments)."),
    sitemap: list[str] | None = typer.Option(
        None, "--sitemap", help="Sitemap URL (index and .gz allowed); repeatable."
    ),
    max_pages: int | None = typer.Option(
        None, "--max-pages", help="Follow links breadth-first, visiting at most N URLs."
    ),
    same_domain: bool = typer.Option(
        False, "--same-domain", help="Only follow links to the seeds' hosts (and subdomains)."
    ),
    include: list[str] | None = typer.Option(None, "--include", help="Regex a discovered URL must match; repeatable."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Regex that drops a discovered URL; repeatable."),
    delay: float = typer.Option(1.0, "--delay", help="Seconds between requests to the same host."),
    per_host: int = typer.Option(1, "--per-host", help="Requests in flight per host."),
    concurrency: int = typer.Option(16, "--concurrency", "-j", help="Requests in flight overall."),
    ignore_robots: bool = typer.Option(
        False, "--ignore-robots", help="Do not honour robots.txt (only for sites you own)."
    ),
    allow_private: bool = typer.Option(
        False, "--allow-private", help="Allow private/loopback addresses (e.g. a local dev server)."
    ),
    user_agent: str | None = typer.Option(None, "--user-agent", help="User agent for requests and robots.txt rules."),
    timeout: float = typer.Option(20.0, "--timeout", help="Seconds per request, body included."),
    max_bytes: int = typer.Option(5_000_000, "--max-bytes", help="Cut bodies longer than this (recorded)."),
    restart: bool = typer.Option(
        False, "--restart", help="Start over instead of resuming an unfinished identical crawl."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Also write the documents to this JSONL file (atomically)."
    ),
) -> None:
    """Crawl pages politely (or load local drafts) into documents for the audit.

    URLs are fetched with per-host delay and concurrency limits, honouring robots.txt; each page's main text and GEO-relevant metadata (title, description, canonical, headings, schema.org types, author, dates, links) go into the document store. Local files and directories are loaded as drafts.

    An interrupted crawl resumes when run again with the same inputs; a finished one re-fetches conditionally (unchanged pages are kept as they are). Private and loopback addresses are refused unless --allow-private.

    Examples:

      geoaudit crawl https://example.com/pricing https://rival.example/pricing

      geoaudit crawl https://example.com/ --max-pages 50 --same-domain --exclude '/tag/'

      geoaudit crawl --sitemap https://example.com/sitemap.xml --include '/blog/' --out docs.jsonl

      geoaudit crawl --file urls.txt --delay 2

      geoaudit crawl ./drafts/ site/*.html --out drafts.jsonl
    """
    from geoaudit.crawl import CrawlOptions, ingest
    from geoaudit.documents import write_jsonl

    check_output_file(out, "--out")
    options = CrawlOptions(
        max_pages=max_pages,
        follow_links=max_pages is not None,
        same_domain=same_domain,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        sitemaps=tuple(sitemap or ()),
        delay=delay,
        per_host=per_host,
        concurrency=concurrency,
        respect_robots=not ignore_robots,
        allow_private=allow_private,
        user_agent=user_agent,
        timeout=timeout,
        max_bytes=max_bytes,
        resume=not restart,
    )
    if ignore_robots:
        err_console.print(
            "[bold yellow]WARNING: robots.txt is IGNORED (--ignore-robots).[/] Only do this for sites you own or may crawl."
        )

    result = _ingest_with_progress(ingest, list(inputs or []), settings(), options, file)
    _summary(result.crawled, len(result.local))
    documents = result.documents
    if not documents and result.crawled is not None and result.crawled.counts["failed"]:
        raise FetchError(f"no page could be fetched ({result.crawled.counts['failed']} failed; reasons above)")
    if out is not None:
        n = write_jsonl(out, documents)
        console.print(f"wrote {n} documents to {escape(str(out))}")


def _ingest_with_progress(ingest: Any, inputs: list[str], cfg: Any, options: Any, url_file: Path | None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]crawl[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("queued {task.fields[queued]}  errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[last]}[/]"),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("crawl", total=None, queued=0, errors=0, last="")

        def on_progress(p: Any) -> None:
            last = p.last.url if p.last else ""
            # The URL goes into a markup template: a page can link to "http://x/[/oops]".
            bar.update(
                task,
                completed=p.done,
                total=p.done + p.queued,
                queued=p.queued,
                errors=p.errors,
                last=escape(last[-60:]),
            )

        result = ingest(inputs, settings=cfg, options=options, url_file=url_file, progress=on_progress)
    crawled = result.crawled
    for w in crawled.warnings if crawled else []:
        if "IGNORED" not in w:  # already said loudly above
            err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    if crawled is not None and crawled.resumed:
        err_console.print(f"resumed unfinished crawl job {crawled.job_id}")
    return result


def _summary(result: Any, n_local: int) -> None:
    from rich.table import Table

    table = Table(title="crawl summary", show_lines=False)
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("pages", justify="right")
    if n_local:
        table.add_row("loaded", "local files", str(n_local))
    if result is not None:
        counts = result.counts
        table.add_row("fetched", "", str(counts["fetched"]))
        table.add_row("unchanged", "304 not modified", str(counts["unchanged"]))
        for outcome in ("skipped", "failed"):
            reasons = result.reasons(outcome)
            if not reasons:
                table.add_row(outcome, "", "0")
            for reason, n in reasons.items():
                table.add_row(outcome, escape(reason), str(n))  # reasons quote servers and URLs
    console.print(table)
    if result is not None:
        console.print(f"[dim]crawl job {result.job_id}; documents are in the store (geoaudit.db in the data dir)[/]")
