"""``geoaudit stats``: paired tests, confidence intervals and corrections for a simulation run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from geoaudit.cli._app import app, check_output_file, console, err_console, settings

_VERDICT_STYLE = {
    "better": "bold green",
    "worse": "bold red",
    "mixed": "bold yellow",
    "no evidence": "dim",
    "no change detected": "dim",
    "insufficient data": "dim italic",
}
_NOISE = ("no evidence", "no change detected", "insufficient data")


def render_stats_tables(result: Any, width: int = 120) -> list[Any]:
    """Rich tables of a :class:`geoaudit.analysis.StatsResult`, one per metric x comparison.

    Noise looks like noise: "no evidence" and "insufficient data" rows are dim, only significant
    rows are coloured, and numbers wrap rather than being cut off. Below ``width`` 118 the cells
    stack (CI under Δ, treated under baseline) and the effect size is left to the exports.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from geoaudit.analysis import fmt_ci, fmt_level, fmt_num, fmt_p_cells, fmt_pct, fmt_rate

    df = result.summary
    # C-SEO mode splits by domain without --by: the rows say how they were grouped.
    by = result.options.get("by") or (str(df["by"].iloc[0]) if len(df) and df["by"].iloc[0] != "all" else None)
    holm = result.options["correction"] == "holm"
    one_sided = len(df) > 0 and df["alternative"].iloc[0] != "two-sided"
    narrow = width < 118
    sep = "\n" if narrow else " "
    tables = []
    for (metric, comparison), g in df.groupby(["metric", "comparison"], sort=False):
        what = "treated − rivals" if comparison == "advantage" else "treated − base"
        table = Table(
            title=f"{metric} · {comparison} ({what})",
            title_justify="left",
            title_style="bold",
            box=None if narrow else box.SIMPLE_HEAD,
            header_style="bold underline" if narrow else "bold",
            pad_edge=False,
            padding=(0, 1),
        )
        table.add_column("strategy", overflow="fold")
        table.add_column("rate", justify="right", overflow="fold")
        if by:
            table.add_column(str(by), overflow="fold")
        table.add_column("n", justify="right", overflow="fold")
        table.add_column("baseline → treated", justify="right", overflow="fold")
        # The row's declared estimand with its interval, and the p of the test about it.
        est = "Δ" if (g["estimand"] == "mean").all() else "Δ pseudo-median"
        table.add_column(f"{est} [{fmt_level(g['ci_level'].iloc[0])} CI]", justify="right", overflow="fold")
        table.add_column("rel.", justify="right", overflow="fold")
        table.add_column("p gain / loss" if one_sided else "p", justify="right", overflow="fold")
        table.add_column(
            ("p Holm" if holm else "p BH") + (" gain / loss" if one_sided else ""), justify="right", overflow="fold"
        )
        if not narrow:
            table.add_column("r", justify="right", overflow="fold")
        table.add_column("verdict", overflow="fold", min_width=12)
        for _, r in g.iterrows():
            verdict = str(r["verdict"])
            noise = verdict in _NOISE
            cells = [Text(str(r["strategy"])), Text(fmt_rate(r["rate"]))]
            if by:
                cells.append(Text(str(r["group"])))
            cells += [
                Text(str(int(r["n"]))),
                Text(f"{fmt_num(r['baseline_mean'])}{sep}→ {fmt_num(r['treated_mean'])}"),
                Text(
                    f"{fmt_num(r['estimate'], signed=True)}{sep}{fmt_ci(r['estimate_ci_low'], r['estimate_ci_high'])}"
                    + ("" if r["ci_verified"] else "*")
                ),
                Text(fmt_pct(r["rel_improvement"]) if r["estimand"] == "mean" else "–"),  # a ratio of means
                *(Text(x) for x in fmt_p_cells(r, "holm" if holm else "bh")),
            ]
            if not narrow:
                cells.append(Text(fmt_num(r["rank_biserial"], signed=True)))
            cells.append(Text(verdict, style=_VERDICT_STYLE.get(verdict, "")))
            table.add_row(*cells, style="dim" if noise else None)
        tables.append(table)
    return tables


@app.command("stats")
def stats_cmd(
    run: str = typer.Argument(..., help="Run id, unique id prefix, or run directory."),
    metrics: str | None = typer.Option(
        None, "--metrics", help="Comma-separated metrics (default: pawc,cited,delta_rank)."
    ),
    comparison: str = typer.Option(
        "both", "--comparison", help="advantage (treated − rivals), net (treated − base) or both."
    ),
    family: str | None = typer.Option(
        None, "--family", help="Correction family: run (default), metric, domain (C-SEO) or group."
    ),
    correction: str = typer.Option("holm", "--correction", help="holm or bh (Benjamini-Hochberg)."),
    mode: str = typer.Option(
        "default", "--mode", help="default (two-sided) or cseo (C-SEO Bench's one-sided protocol)."
    ),
    estimand: str | None = typer.Option(
        None,
        "--estimand",
        help="What each test is about: mean (default) or pseudomedian (Hodges-Lehmann, "
        "Wilcoxon; the default in cseo mode).",
    ),
    by: str | None = typer.Option(None, "--by", help="Break down by domain, tag or orig_rank."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap resamples of queries."),
    ci: str = typer.Option(
        "t",
        "--ci",
        help="Interval for a mean: t (default; holds its level on zero-heavy deltas), studentized, "
        "percentile or bca bootstrap. The test of the mean is the one the interval inverts.",
    ),
    power: float = typer.Option(0.8, "--power", help="Power for the minimum detectable effect (MDE)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    csv: Path | None = typer.Option(None, "--csv", help="Also write the full table as CSV."),
    parquet: Path | None = typer.Option(None, "--parquet", help="Also write the full table as Parquet."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON instead of the table."),
) -> None:
    """Test whether each strategy really changed the target's visibility, with uncertainty.

    Per strategy x adopter rate x metric: paired per query (baseline vs treated), the metric's
    estimand (mean Δ; the pseudo-median in C-SEO mode) with its (1 − alpha) CI, relative
    improvement, the p of the test about that estimand, multiple-comparison adjusted p, effect size
    and a verdict. Dim rows are noise: "no evidence" means the adjusted p is not below alpha (a CI
    that spans 0 does not even tell the sign); "mixed" means the mean and the rank test disagree;
    * marks intervals from fewer queries than the size where their coverage was verified. With the
    identity strategy in the run, the A/A rejection rate says whether the tests are calibrated.

    Examples:
        geoaudit stats run-1a2b3c
        geoaudit stats run-1a2b --metrics pawc,share_of_voice --comparison advantage --correction bh
        geoaudit stats run-1a2b --mode cseo --metrics delta_rank
        geoaudit stats run-1a2b --by orig_rank --csv stats.csv
        geoaudit stats run-1a2b --json > stats.json
    """
    from geoaudit.analysis import run_stats, write_stats
    from geoaudit.runs import open_run

    check_output_file(csv, "--csv")
    check_output_file(parquet, "--parquet")
    r = open_run(settings(), run)
    try:
        result = run_stats(
            r,
            metrics=metrics,
            comparisons=comparison,
            family=family,
            correction=correction,
            mode=mode,
            by=by,
            estimand=estimand,
            alpha=alpha,
            power=power,
            n_boot=n_boot,
            ci=ci,
            seed=seed,
        )
    finally:
        r.close()
    for path, fmt in ((csv, "csv"), (parquet, "parquet")):
        if path is not None:
            write_stats(result, path, fmt)
            err_console.print(f"wrote {len(result.summary)} rows to {path}", highlight=False)
    if json_out:
        sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
        return
    if result.engine is not None:
        console.print("[bold]Engine calibration[/] (how far to trust this engine, before any verdict)")
        for line in result.engine.lines():
            style = "bold red" if "[FAILED]" in line else ""
            console.print(f"[{style}]  {_esc(line)}[/]" if style else f"  {_esc(line)}", highlight=False)
    for table in render_stats_tables(result, console.width):
        console.print(table)
    sig = result.significant()
    if sig.empty:
        console.print("[bold]No strategy changed the target's visibility significantly[/] (after correction).")
    else:
        for _, s in sig.iterrows():
            console.print(_sig_line(s), highlight=False)
    for _, s in result.summary[result.summary["verdict"] == "mixed"].iterrows():
        console.print(_mixed_line(s), highlight=False)
    for line in result.method_lines():
        console.print(f"[dim]· {_esc(line)}[/]", highlight=False)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _sig_line(s: Any) -> Any:
    from rich.text import Text

    from geoaudit.analysis import fmt_ci, fmt_level, fmt_num, fmt_pct, fmt_rate

    word = "raises" if s["verdict"] == "better" else "lowers"
    t = Text()
    t.append(str(s["strategy"]), style="bold green" if word == "raises" else "bold red")
    t.append(
        f" {word} {s['metric']} ({s['comparison']}, {fmt_rate(s['rate'])} of competitors adopting"
        + (f", {s['by']}={s['group']}" if s["by"] != "all" else "")
        + f"): {'Δ' if s['estimand'] == 'mean' else 'pseudo-median Δ'} {fmt_num(s['estimate'], signed=True)} "
        + f"{fmt_level(s['ci_level'])} CI {fmt_ci(s['estimate_ci_low'], s['estimate_ci_high'])}"
        + (f", {fmt_pct(s['rel_improvement'])}" if s["estimand"] == "mean" and not _isnan(s["rel_improvement"]) else "")
    )
    return t


def _mixed_line(s: Any) -> Any:
    from rich.text import Text

    from geoaudit.analysis import fmt_rate, reason_text

    t = Text()
    t.append(str(s["strategy"]), style="bold yellow")
    t.append(
        f" mixed on {s['metric']} ({s['comparison']}, {fmt_rate(s['rate'])} of competitors adopting"
        + (f", {s['by']}={s['group']}" if s["by"] != "all" else "")
        + f"): {reason_text(s)}"
    )
    return t


def _isnan(x: Any) -> bool:
    return x is None or x != x
