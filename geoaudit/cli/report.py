"""``geoaudit report``: one self-contained HTML report of a simulation run."""

from __future__ import annotations

from pathlib import Path

import typer

from geoaudit.cli._app import app, check_output_dir, console, err_console, settings


@app.command("report")
def report_cmd(
    run: str = typer.Argument(..., help="Run id, unique id prefix, or run directory."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (default: reports/<run id>/)."),
    title: str | None = typer.Option(None, "--title", help="Report heading."),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Comma-separated metrics; the first is the verdict's (default: pawc,cited,delta_rank)."
    ),
    comparison: str = typer.Option("both", "--comparison", help="advantage, net or both."),
    family: str | None = typer.Option(None, "--family", help="Correction family: run, metric, domain or group."),
    correction: str = typer.Option("holm", "--correction", help="holm or bh."),
    mode: str = typer.Option("default", "--mode", help="default or cseo (C-SEO Bench's one-sided protocol)."),
    estimand: str | None = typer.Option(None, "--estimand", help="mean (default) or pseudomedian (cseo default)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap resamples of queries."),
    ci: str = typer.Option("t", "--ci", help="Interval for a mean: t (default), studentized, percentile or bca."),
    power: float = typer.Option(0.8, "--power", help="Power for the minimum detectable effect (MDE)."),
    examples: int = typer.Option(2, "--examples", help="Rewrites (with example answers) shown per strategy."),
) -> None:
    """Write a self-contained HTML report of a run: verdict, charts, rewrites, methodology.

    One file (index.html) that opens from disk, needs no network and no JavaScript, and prints.
    It leads with the verdict (which strategies significantly raise your page's visibility, by how
    much, with (1 − alpha) CIs), charts the effect against the share of competitors adopting, shows each
    rewrite beside the original with fabrication flags and example answers, and ends with the
    methodology. Page and answer text is escaped; a strict Content-Security-Policy blocks scripts.

    Examples:
        geoaudit report run-1a2b3c
        geoaudit report run-1a2b -o reports/tea-shop/ --title "Tea shop pages"
        geoaudit report run-1a2b --mode cseo --metrics delta_rank,pawc
    """
    from geoaudit.errors import InputError
    from geoaudit.report import write_report
    from geoaudit.runs import open_run

    if examples < 0:
        raise InputError(f"--examples must be 0 or more, got {examples}")
    r = open_run(settings(), run)
    target = out or Path("reports") / r.id
    try:
        check_output_dir(target, "--out")
    except BaseException:
        r.close()
        raise
    try:
        err_console.print(f"report: computing statistics for {r.id} …", highlight=False)
        path = write_report(
            r,
            target,
            title=title,
            examples=examples,
            metrics=metrics,
            comparisons=comparison,
            family=family,
            correction=correction,
            mode=mode,
            estimand=estimand,
            alpha=alpha,
            power=power,
            n_boot=n_boot,
            ci=ci,
        )
    finally:
        r.close()
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
