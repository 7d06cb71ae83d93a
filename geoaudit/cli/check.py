"""``geoaudit check``: static AI-readiness checks of pages (no LLM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from geoaudit.cli._app import app, check_output_file, console, err_console, settings
from geoaudit.errors import InputError

FORMATS = ("table", "json", "sarif", "junit", "html")
_SUFFIX_FORMAT = {".json": "json", ".sarif": "sarif", ".xml": "junit", ".html": "html", ".htm": "html"}
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", "pass": "green"}
_ROLE = {"search": "search/answer", "user": "user-triggered", "training": "training"}


@app.command(
    "check",
    epilog=(
        "Exit codes: 0 = checked, nothing at or above --fail-on; "
        "1 = a finding at or above --fail-on (a target that cannot be checked is an error finding), "
        "or no target could be checked at all; "
        "2 = bad usage or input (unknown option value, no target, unwritable -o, bad agent list)."
    ),
)
def check_command(
    targets: list[str] | None = typer.Argument(
        None,
        metavar="URL_OR_FILE...",
        help="http(s) URLs and local .html files; each is checked, even when another fails.",
    ),
    file: Path | None = typer.Option(None, "--file", "-f", help="Text file of URLs, one per line (# comments)."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help="table (default), json, sarif, junit or html. Without it, -o picks by suffix (.json .sarif .xml .html).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the --format output here (the table still prints)."
    ),
    fail_on: str | None = typer.Option(
        None, "--fail-on", help="error or warning: exit 1 when a finding is this severe or worse."
    ),
    show_pass: bool = typer.Option(False, "--show-pass", help="List passed checks in the table too."),
    allow_private: bool = typer.Option(
        False, "--allow-private", help="Allow private/loopback addresses (e.g. a local dev server)."
    ),
    ignore_robots: bool = typer.Option(
        False, "--ignore-robots", help="Do not honour robots.txt for geoaudit's own requests (only for sites you own)."
    ),
    delay: float = typer.Option(
        0.5, "--delay", help="Seconds between requests to one host (a larger robots.txt Crawl-delay wins)."
    ),
    timeout: float = typer.Option(15.0, "--timeout", help="Seconds per request, body included."),
    no_agent_fetch: bool = typer.Option(
        False, "--no-agent-fetch", help="Do not fetch pages as each AI agent (robots.txt is still evaluated)."
    ),
    agent: list[str] | None = typer.Option(None, "--agent", help="Only this AI agent token (e.g. GPTBot); repeatable."),
    agents_file: Path | None = typer.Option(
        None, "--agents-file", help="Your own AI agent list (TOML, the shipped file's format; setting ai_agents_file)."
    ),
    list_agents: bool = typer.Option(
        False, "--list-agents", help="Print the AI agent list in use, with its source and date, and exit."
    ),
    llms_links: int = typer.Option(10, "--llms-links", help="Most llms.txt links checked per site."),
    concurrency: int = typer.Option(
        4, "--concurrency", "-j", help="Targets checked at once (one request at a time per host)."
    ),
    user_agent: str | None = typer.Option(
        None, "--user-agent", help="geoaudit's own user agent (robots.txt is honoured for it)."
    ),
) -> None:
    """Check pages for AI readiness: crawler access, llms.txt, structured data, extractability. No LLM.

    For each URL: robots.txt evaluated for every known AI agent, grouped by role (search/answer crawlers, user-triggered fetchers, training crawlers); robots meta tags and X-Robots-Tag (noindex, nosnippet, noai, noimageai); the page fetched once as a browser and once as each AI agent robots.txt allows, to catch a WAF or CDN that blocks them; llms.txt at the site root (format and links); JSON-LD, microdata, RDFa and OpenGraph (types, missing properties, parse errors); the main text an engine extracts (the extraction crawl uses), title, description, canonical, language, headings and dates.

    Local .html files get the offline checks; the report says which checks were skipped. Private and loopback addresses are refused unless --allow-private; requests to one host are one at a time, --delay apart.

    Severities: error = AI engines cannot use the page as intended; warning = likely to hurt; info = worth knowing; pass = checked and fine.

    Examples:

      geoaudit check https://example.com/pricing

      geoaudit check https://example.com/ https://example.com/blog/post --fail-on error

      geoaudit check https://example.com/ --format sarif -o geoaudit.sarif

      geoaudit check --file urls.txt --format junit -o check.xml --fail-on warning

      geoaudit check http://127.0.0.1:8000/ --allow-private --format html -o check.html

      geoaudit check drafts/page.html

      geoaudit check --list-agents
    """
    from geoaudit.check import CheckOptions, check, load_agents
    from geoaudit.crawl import read_url_file

    cfg = settings(user_agent=user_agent, ai_agents_file=agents_file)
    if list_agents:
        _print_agents(load_agents(cfg.ai_agents_file).select(tuple(agent or ())))
        return
    if fail_on is not None and fail_on not in ("error", "warning"):
        raise InputError(f"--fail-on must be error or warning, not {fail_on!r}")
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt is None and output is not None:
        fmt = _SUFFIX_FORMAT.get(output.suffix.lower())
        if fmt is None:
            raise InputError(
                f"cannot tell the format of -o {output} from its suffix", hint="add --format json|sarif|junit|html"
            )
    fmt = fmt or "table"
    if fmt == "table" and output is not None:
        raise InputError("-o writes json, sarif, junit or html", hint="add --format json|sarif|junit|html")
    check_output_file(output, "--output")
    items = list(targets or [])
    if file is not None:
        items += read_url_file(file)
    if not items:
        raise InputError("nothing to check", hint="give URLs or .html files, or --file urls.txt")
    options = CheckOptions(
        allow_private=allow_private,
        respect_robots=not ignore_robots,
        delay=delay,
        timeout=timeout,
        fetch_as_agents=not no_agent_fetch,
        agents=tuple(agent or ()),
        llms_links=llms_links,
        concurrency=concurrency,
    )
    if ignore_robots:
        err_console.print(
            "[bold yellow]WARNING: robots.txt is IGNORED for geoaudit's requests (--ignore-robots).[/] Only do this for sites you own."
        )

    report = _run(check, items, cfg, options)
    text = _render(report, fmt, fail_on)
    if output is not None:
        from geoaudit.documents import atomic_write_text

        atomic_write_text(output, text)
    if fmt == "table" or output is not None:
        _print_table(report, show_pass)
        if output is not None:
            console.print(f"wrote {fmt} to {output}", soft_wrap=True)
    else:
        typer.echo(text, nl=False)
    if report.nothing_checked:
        err_console.print("[bold red]error:[/] no target could be checked (reasons above)", highlight=False)
        raise typer.Exit(1)
    if fail_on is not None and report.fails(fail_on):
        n = sum(
            1 for f in report.findings if f.severity in (("error",) if fail_on == "error" else ("error", "warning"))
        )
        err_console.print(f"[bold red]check failed:[/] {n} finding(s) at or above --fail-on {fail_on}", highlight=False)
        raise typer.Exit(1)


def _run(check: Any, items: list[str], cfg: Any, options: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]check[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[last]}[/]"),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("check", total=len(items), last="")

        def on_progress(done: int, total: int, target: str) -> None:
            bar.update(task, completed=done, last=target[-60:])

        return check(items, settings=cfg, options=options, progress=on_progress)


def _render(report: Any, fmt: str, fail_on: str | None) -> str:
    from geoaudit.check import render_html, render_json, render_junit, render_sarif

    if fmt == "json":
        return str(render_json(report))
    if fmt == "sarif":
        return str(render_sarif(report))
    if fmt == "junit":
        return str(render_junit(report, fail_on=fail_on or "warning"))
    if fmt == "html":
        return str(render_html(report))
    return ""


def _print_table(report: Any, show_pass: bool) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    def findings_table(title: str, findings: Any, skipped: Any) -> None:
        order = {"error": 0, "warning": 1, "info": 2, "pass": 3}
        shown = [f for f in sorted(findings, key=lambda f: order[f.severity]) if show_pass or f.severity != "pass"]
        table = Table(
            title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, show_lines=False
        )
        table.add_column("severity", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("finding", overflow="fold")
        for f in shown:
            text = escape(f.message) + (f"\n[dim]{escape(f.evidence[:300])}[/]" if f.evidence else "")
            table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f.id, text)
        for s in skipped:
            table.add_row("[dim]skipped[/]", escape(s.check), f"[dim]{escape(s.reason)}[/]")
        console.print(table)
        hidden = sum(1 for f in findings if f.severity == "pass") if not show_pass else 0
        if hidden:
            console.print(f"[dim]{hidden} passed check(s) not listed (--show-pass lists them)[/]")

    for site in report.sites:
        findings_table(f"site {site.origin}", site.findings, site.skipped)
    for page in report.pages:
        findings_table(page.target + ("" if page.checked else "  [red](not checked)[/]"), page.findings, page.skipped)
        if page.agents:
            _print_agents_of(page, show_pass)
    counts = report.counts()
    console.print(
        "  ".join(f"[{_STYLE[s]}]{counts[s]} {s}[/]" for s in ("error", "warning", "info", "pass"))
        + f"  [dim]· {len(report.pages)} target(s), {report.options.get('requests', 0)} request(s)[/]"
    )
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    if any(p.kind == "url" for p in report.pages):
        console.print(f"[dim]AI agents: {escape(report.agents_source)}[/]")


def _print_agents_of(page: Any, show_pass: bool) -> None:
    """Agents of one page; without --show-pass only those robots.txt or the server treat differently."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    def ordinary(a: Any) -> bool:
        return a.robots == "allowed" and a.fetch in ("same", "not-fetched")

    shown = [a for a in page.agents if show_pass or not ordinary(a)]
    rest = len(page.agents) - len(shown)
    if shown:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left", title="AI agents", title_style="dim")
        for col in ("agent", "role", "robots.txt", "fetched as it", "note"):
            table.add_column(col, overflow="fold")
        for role in ("search", "user", "training"):
            for a in (r for r in shown if r.role == role):
                robots = (
                    "[green]allowed[/]"
                    if a.robots == "allowed"
                    else (f"[red]{a.robots}[/]" if a.robots == "disallowed" else a.robots)
                )
                fetch = {
                    "same": "[green]same[/]",
                    "blocked": "[red]blocked[/]",
                    "differs": "[yellow]differs[/]",
                    "rate-limited": "[yellow]rate-limited[/]",
                }.get(a.fetch, "[dim]not fetched[/]")
                status = f" {a.status}" if a.status is not None else ""
                table.add_row(escape(a.token), _ROLE[a.role], robots, fetch + status, f"[dim]{escape(a.note)}[/]")
        console.print(table)
    if rest:
        console.print(
            f"[dim]{rest} {'other ' if shown else ''}AI agent(s): allowed by robots.txt and, where fetched, "
            "served the same page as a browser (--show-pass lists them)[/]"
        )


def _print_agents(agents: Any) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("token", "operator", "role", "fetched as"):
        table.add_column(col, no_wrap=True)
    for role in ("search", "user", "training"):
        for a in (x for x in agents.agents if x.role == role):
            table.add_row(
                escape(a.token), escape(a.operator), _ROLE[role], "yes" if a.user_agent else "[dim]no (token only)[/]"
            )
    console.print(table)
    console.print(f"[dim]{escape(agents.description)}; each agent's documentation is linked in that file[/]")
