"""What a run found, told honestly: one self-contained HTML file for a content creator.

:func:`build_report` / :func:`write_report` turn a run and its statistics
(:func:`geoaudit.analysis.run_stats`) into the verdict first, charts of the gain against the share
of competitors who adopt the same strategy, per-strategy rewrites as word diffs with fabrication
flags, example answers with the target's citations highlighted, and the methodology.

Everything crawled or generated (page titles, texts, rewrites, answers, queries, bench notes, even
strategy titles and the command line) is untrusted: it is escaped with :func:`html.escape` before it
reaches the page, is never put in an attribute, and the page carries a Content-Security-Policy that
forbids scripts and every fetch. Charts are inline SVG drawn here, so the report needs no network,
no JavaScript, and prints.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoaudit.analysis import (
    RunData,
    StatsResult,
    breakdown_summary,
    fmt_ci,
    fmt_level,
    fmt_num,
    fmt_p,
    fmt_p_cells,
    fmt_pct,
    fmt_rate,
    in_group,
    is_missing,
    rate_label,
    reason_text,
    run_stats,
    tests_label,
)
from geoaudit.errors import InputError
from geoaudit.metrics import METRICS

if TYPE_CHECKING:
    import pandas as pd

    from geoaudit.engine import Answer
    from geoaudit.runs import Run

__all__ = [
    "CSP",
    "REPORT_CSS",
    "answer_html",
    "build_report",
    "diff_html",
    "engine_section",
    "escape",
    "fabrications",
    "flag_text",
    "html_table",
    "metric_label",
    "stats_table",
    "strategy_verdict",
    "svg_delta_chart",
    "trend_sentence",
    "verdict_badge",
    "write_report",
]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_COMPARISON_TEXT = {
    "advantage": "treated − rivals: should you adopt, given that the competitors already did?",
    "net": "treated − base: where you end up when you and the competitors adopt, against nobody adopting",
}


# ============================================================================ HTML building blocks


def _e(value: Any) -> str:
    """Escape anything for HTML text *and* quoted attributes (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _slug(text: str) -> str:
    """An id fragment made only of [a-z0-9-]: safe in an attribute whatever the input."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s[:60] or "x"


_VERDICT_CLASS = {
    "better": "v-better",
    "worse": "v-worse",
    "mixed": "v-mixed",
    "no evidence": "v-none",
    "no change detected": "v-none",
    "insufficient data": "v-insuff",
}
_NOISE = ("no evidence", "no change detected", "insufficient data")

# Okabe-Ito: distinguishable for colour-blind readers; dashes keep lines apart in grey print.
_PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
_DASHES = ["", "6 3", "2 3", "8 3 2 3", "4 4", "1 2", "10 4", "3 6"]
_IDENTITY_COLOUR = "#888888"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def svg_delta_chart(
    series: Sequence[Mapping[str, Any]],
    *,
    title: str,
    y_label: str,
    width: int = 560,
    height: int = 300,
    band_label: str = "band: 95% CI",
) -> str:
    """An inline SVG line chart of Δ against the adopter rate, with a CI band per series (``band_label``).

    ``series``: dicts with ``name`` and ``points`` = [(rate, delta, ci_low, ci_high, significant)].
    Significant points are filled, others hollow; the zero line is dashed. All text is escaped.
    """
    ml, mr, mt, mb = 62, 150, 34, 46
    pw, ph = width - ml - mr, height - mt - mb
    pts = [p for s in series for p in s["points"] if not is_missing(p[1])]
    rates = sorted({float(p[0]) for s in series for p in s["points"]})
    vals = [0.0] + [float(v) for p in pts for v in (p[1], p[2], p[3]) if not is_missing(v)]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    x_lo, x_hi = (min(rates), max(rates)) if rates else (0.0, 1.0)
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5

    def X(r: float) -> float:
        return ml + (float(r) - x_lo) / (x_hi - x_lo) * pw

    def Y(v: float) -> float:
        return mt + (hi - float(v)) / (hi - lo) * ph

    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{_e(title)}</title>",
        f'<text x="{ml}" y="18" class="ct">{_e(title)}</text>',
        f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
    ]
    for t in _nice_ticks(lo, hi):
        y = Y(t)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(
            f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" class="ax">{_e(fmt_num(t, signed=True))}</text>'
        )
    for r in rates:
        x = X(r)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt + ph}" y2="{mt + ph + 5}" stroke="#666"/>')
        out.append(f'<text x="{x:.1f}" y="{mt + ph + 18}" text-anchor="middle" class="ax">{_e(fmt_rate(r))}</text>')
    out.append(
        f'<text x="{ml + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" class="ax">'
        "competitors adopting the same strategy</text>"
    )
    out.append(
        f'<text transform="translate(14 {mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="ax">'
        f"{_e(y_label)}</text>"
    )
    if lo < 0 < hi:
        out.append(
            f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(0):.1f}" y2="{Y(0):.1f}" stroke="#333" stroke-dasharray="4 3"/>'
        )
    for i, s in enumerate(series):
        is_identity = s.get("identity", False)
        colour = _IDENTITY_COLOUR if is_identity else _PALETTE[i % len(_PALETTE)]
        dash = "3 3" if is_identity else _DASHES[i % len(_DASHES)]
        good = sorted((p for p in s["points"] if not is_missing(p[1])), key=lambda p: float(p[0]))
        band = [p for p in good if not is_missing(p[2]) and not is_missing(p[3])]
        if len(band) >= 2:
            upper = " ".join(f"{X(p[0]):.1f},{Y(p[3]):.1f}" for p in band)
            lower = " ".join(f"{X(p[0]):.1f},{Y(p[2]):.1f}" for p in reversed(band))
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.13" stroke="none"/>')
        for p in band:  # error bars: the band alone is invisible with one rate and faint in print
            x = X(p[0])
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{Y(p[2]):.1f}" y2="{Y(p[3]):.1f}" '
                f'stroke="{colour}" stroke-width="1.2" stroke-opacity="0.7"/>'
            )
        if len(good) >= 2:
            line = " ".join(f"{X(p[0]):.1f},{Y(p[1]):.1f}" for p in good)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for p in good:
            fill = colour if p[4] else "#fff"
            label = f"{s['name']} at {fmt_rate(p[0])}: Δ {fmt_num(p[1], signed=True)} {fmt_ci(p[2], p[3])}"
            out.append(
                f'<circle cx="{X(p[0]):.1f}" cy="{Y(p[1]):.1f}" r="4" fill="{fill}" stroke="{colour}" '
                f'stroke-width="2"><title>{_e(label)}</title></circle>'
            )
        ly = mt + 10 + i * 20
        lx = ml + pw + 14
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash_attr}/>'
        )
        name = str(s["name"])
        out.append(
            f'<text x="{lx + 30}" y="{ly + 4}" class="lg">{_e(name[:17] + ("…" if len(name) > 17 else ""))}</text>'
        )
    ly = mt + 10 + len(series) * 20 + 8
    out.append(f'<text x="{ml + pw + 14}" y="{ly}" class="ax">● significant  ○ not</text>')
    out.append(f'<text x="{ml + pw + 14}" y="{ly + 14}" class="ax">{_e(band_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b; background: #fff;
       max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.7em; margin: 0 0 4px; } h2 { margin-top: 2em; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { margin-top: 1.6em; } .sub { color: #555; margin: 0 0 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #d6d6d6; padding: 3px 7px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; } td.verdict { min-width: 13em; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.v-better { color: #08660f; font-weight: 600; } .v-worse { color: #a11; font-weight: 600; }
.v-mixed { color: #8a5a00; font-weight: 600; }
.v-none, .v-insuff { color: #777; } tr.noise td { color: #777; }
.badge { display: inline-block; border-radius: 3px; padding: 0 6px; font-size: 0.85em; border: 1px solid currentColor; }
.verdict-box { border: 2px solid #333; padding: 12px 18px; border-radius: 6px; background: #fafafa; }
.verdict-box li { margin: 0.4em 0; }
.warn { border-left: 5px solid #c60; background: #fff6ec; padding: 8px 12px; margin: 1em 0; }
.note { color: #555; font-size: 0.9em; }
.tw { overflow-x: auto; max-width: 100%; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart { max-width: 100%; height: auto; border: 1px solid #eee; }
svg .ct { font: 600 13px system-ui, sans-serif; } svg .ax { font: 11px system-ui, sans-serif; fill: #333; }
svg .lg { font: 12px system-ui, sans-serif; fill: #222; }
.diff { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.diff > div { border: 1px solid #ccc; padding: 8px 10px; white-space: pre-wrap; overflow-wrap: anywhere;
              font-size: 0.88em; background: #fcfcfc; }
.diff h4 { margin: 0 0 6px; font-size: 0.95em; white-space: normal; }
del { background: #ffd7d5; text-decoration: line-through; color: #700; }
ins { background: #d3f5d3; text-decoration: none; color: #063; }
.flags { background: #fff8e1; border: 1px solid #e0c060; padding: 6px 10px; }
.answer { border: 1px solid #ccc; padding: 8px 12px; margin: 6px 0; }
.answer mark { background: #ffe28a; } .cite { color: #555; font-size: 0.85em; } .cite.t { color: #000; font-weight: 700; }
ol.sources li.t { font-weight: 600; } code { font-size: 0.9em; overflow-wrap: anywhere; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
@media print { body { max-width: none; padding: 0; font-size: 10pt; } .tw { overflow: visible; } table { font-size: 8pt; } h2 { break-before: auto; }
  .diff > div, .answer, svg.chart { break-inside: avoid; } }
@media (max-width: 800px) { .diff, .pair { grid-template-columns: 1fr; } }
"""


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[tuple[str, str]]], row_classes: Sequence[str] | None = None
) -> str:
    """An HTML table; each cell is (already-escaped html, css class)."""
    out = [
        '<div class="tw"><table><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead><tbody>"
    ]
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        out.append(
            f"<tr{cls}>" + "".join(f'<td class="{c}">{h}</td>' if c else f"<td>{h}</td>" for h, c in row) + "</tr>"
        )
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _verdict_badge(verdict: str) -> str:
    return f'<span class="badge {_VERDICT_CLASS.get(verdict, "v-none")}">{_e(verdict)}</span>'


def _stats_table(df: pd.DataFrame, correction: str, *, show_group: bool = False, omit: Sequence[str] = ()) -> str:
    """The summary rows as an HTML table; ``omit`` drops columns constant in context (strategy, metric, comparison).

    Δ, its interval and p are the row's declared estimand and its test (the mean and the t-test, or the
    pseudo-median and the Wilcoxon test), so the verdict is about the numbers beside it.
    """
    lead = [c for c in ("strategy", "metric", "comparison") if c not in omit]
    first = df.iloc[0] if len(df) else None
    est = _ESTIMAND_SHORT.get(str(first["estimand"]), "Δ") if first is not None else "Δ"
    test = _TEST_SHORT.get(str(first["estimand"]), "test") if first is not None else "test"
    level = fmt_level(first["ci_level"]) if first is not None else "95%"
    one_sided = first is not None and str(first["alternative"]) != "two-sided"
    p_head = f"p ({test}{', gain / loss' if one_sided else ''})"
    adj_head = ("p Holm" if correction == "holm" else "p BH") + (" gain / loss" if one_sided else "")
    headers = (
        [*lead, "adopters"]
        + (["group"] if show_group else [])
        + [
            "n",
            "baseline → treated",
            est,
            f"{level} CI",
            "rel.",
            p_head,
            adj_head,
            "r",
            "d_z",
            "W/T/L",
            "MDE",
            "verdict",
        ]
    )
    rows, classes = [], []
    for _, r in df.iterrows():
        cells = [(_e(r[c]), "") for c in lead] + [(_e(fmt_rate(r["rate"])), "num")]
        if show_group:
            cells.append((_e(r["group"]), ""))
        p_raw, p_adj = fmt_p_cells(r, correction)
        why = reason_text(r)
        note = f'<div class="note">{_e(why)}</div>' if why else ""
        ci = fmt_ci(r["estimate_ci_low"], r["estimate_ci_high"]) + ("" if r["ci_verified"] else " *")
        cells += [
            (_e(int(r["n"])), "num"),
            (_e(f"{fmt_num(r['baseline_mean'])} → {fmt_num(r['treated_mean'])}"), "num"),
            (_e(fmt_num(r["estimate"], signed=True)), "num"),
            (_e(ci), "num"),
            # rel. is a ratio of means: shown only where the mean is the estimand the row is about.
            (_e(fmt_pct(r["rel_improvement"]) if str(r["estimand"]) == "mean" else "–"), "num"),
            (_e(p_raw), "num"),
            (_e(p_adj), "num"),
            (_e(fmt_num(r["rank_biserial"], signed=True)), "num"),
            (_e(fmt_num(r["cohens_dz"], signed=True)), "num"),
            (_e(f"{int(r['wins'])}/{int(r['ties'])}/{int(r['losses'])}") if not is_missing(r["wins"]) else "–", "num"),
            (_e(fmt_num(r["mde"])), "num"),
            (_verdict_badge(str(r["verdict"])) + note, "verdict"),
        ]
        rows.append(cells)
        classes.append("noise" if r["verdict"] in _NOISE else "")
    return _table(headers, rows, classes)


def _grouped_stats_tables(
    df: pd.DataFrame, correction: str, *, show_group: bool = False, omit: Sequence[str] = ()
) -> str:
    """One table per metric x comparison, headed by what the comparison means."""
    out = []
    for (metric, comparison), g in df.groupby(["metric", "comparison"], sort=False):
        out.append(
            f'<h4>{_e(metric)} · {_e(comparison)} <span class="note">({_e(_COMPARISON_TEXT.get(str(comparison), ""))})</span></h4>'
        )
        out.append(_stats_table(g, correction, show_group=show_group, omit=(*omit, "metric", "comparison")))
    return "\n".join(out)


# ============================================================================ report sections


def _metric_label(metric: str) -> str:
    info = METRICS.get(metric)
    return info.label if info is not None else metric


def _rate_phrase(rate: float) -> str:
    if rate <= 0:
        return "when no competitor adopts it"
    if rate >= 1:
        return "when every competitor adopts it too"
    return f"when {fmt_rate(rate)} of the competitors adopt it too"


_ESTIMAND_SHORT = {"mean": "Δ mean", "pseudomedian": "Δ pseudo-median"}
_TEST_SHORT = {"mean": "t-test", "pseudomedian": "Wilcoxon"}


def _row_phrase(r: Any) -> str:
    """The declared estimate with its interval (and level), plus the relative change when the estimand is the mean."""
    rel = ""
    if str(r["estimand"]) == "mean" and not is_missing(r["rel_improvement"]):
        rel = f", {fmt_pct(r['rel_improvement'])} relative"
    what = "Δ" if str(r["estimand"]) == "mean" else "pseudo-median Δ"
    flag = (
        "" if r["ci_verified"] else f"; n = {int(r['n'])} is below the size where this interval's coverage was verified"
    )
    return (
        f"{what} {fmt_num(r['estimate'], signed=True)} ({fmt_level(r['ci_level'])} CI "
        f"{fmt_num(r['estimate_ci_low'], signed=True)} to {fmt_num(r['estimate_ci_high'], signed=True)}{rel}{flag})"
    )


def _strategy_verdict(rows: pd.DataFrame, metric: str) -> tuple[str, str]:
    """(css class, sentence in plain words) for one strategy's rows of one metric and comparison.

    The sentence reports the estimand its test is about, names each row's own correction family, and
    says why when nothing is claimed.
    """
    label = _metric_label(metric)
    if rows.empty:
        return "v-insuff", "not tested in this run."
    better = rows[rows["verdict"] == "better"]
    worse = rows[rows["verdict"] == "worse"]
    mixed = rows[rows["verdict"] == "mixed"]
    tested = rows[rows["status"] == "ok"]

    def adj_p(r: Any) -> Any:
        return r["p_holm"] if str(r.get("correction", "holm")) == "holm" else r["p_bh"]

    if not better.empty:
        best = better.sort_values("rate").iloc[0]
        where = ", ".join(rate_label(x) for _, x in better.iterrows())
        also = (
            f" It significantly lowers it at adopter rates {', '.join(rate_label(x) for _, x in worse.iterrows())}."
            if not worse.empty
            else ""
        )
        return "v-better", (
            f"significantly raises your page's {label}{in_group(best)}: {_row_phrase(best)} {_rate_phrase(float(best['rate']))} "
            f"(adjusted p {fmt_p(adj_p(best))}, {tests_label(best['family_size'])} in its family). "
            f"Significant at adopter rates {where}.{also}"
        )
    if not worse.empty:
        w = worse.sort_values("rate").iloc[0]
        return "v-worse", (
            f"significantly lowers your page's {label}{in_group(w)}: {_row_phrase(w)} {_rate_phrase(float(w['rate']))} "
            f"(adjusted p {fmt_p(adj_p(w))}, {tests_label(w['family_size'])} in its family)."
        )
    if not mixed.empty:
        m = mixed.sort_values("rate").iloc[0]
        return "v-mixed", (
            f"mixed evidence on your page's {label}{in_group(m)} {_rate_phrase(float(m['rate']))}: {reason_text(m)}; "
            f"{_row_phrase(m)}. Neither a gain nor a loss is claimed."
        )
    if (rows["verdict"] == "no change detected").all():
        return "v-none", (
            f"no change detected in {label}: at every adopter rate each paired answer gave the same "
            f"value ({int(rows['n'].max())} queries)."
        )
    if tested.empty:
        reasons = sorted({reason_text(r) for _, r in rows.iterrows()} - {""})
        return (
            "v-insuff",
            f"not enough data to say anything about {label} ({'; '.join(reasons[:2]) or 'too few queries'}).",
        )
    first = tested.sort_values("rate").iloc[0]
    corrected = tested[tested["reason"] == "correction"]
    if not corrected.empty:
        x = corrected.loc[corrected["estimate"].abs().idxmax()]
        return "v-none", (
            f"no evidence of a change in {label} after correcting for the {tests_label(x['family_size'])} of its family: "
            f"the largest-looking effect, {_row_phrase(x)} {_rate_phrase(float(x['rate']))}{in_group(x)}, has p "
            f"{fmt_p(x['p_value'])} on its own but adjusted p {fmt_p(adj_p(x))} ≥ {x['alpha']:g}."
        )
    blind = tested[tested["reason"] == "one_sided_blind"]
    if not blind.empty:
        x = blind.iloc[0]
        return "v-none", (
            f"no evidence of a gain in {label}; {reason_text(x)}: {_row_phrase(x)} {_rate_phrase(float(x['rate']))}."
        )
    return "v-none", (
        f"no evidence of a change in {label}: every interval includes 0, e.g. {_row_phrase(first)} "
        f"{_rate_phrase(float(first['rate']))}."
    )


def _trend_sentence(rows: pd.DataFrame) -> str:
    """How the estimate moves with the adopter rate; a direction is claimed only when some rate is significant."""
    good = rows[rows["estimate"].notna()].sort_values("rate")
    if len(good) < 2:
        return ""
    parts = "; ".join(
        f"{rate_label(r)}: {fmt_num(r['estimate'], signed=True)} {fmt_ci(r['estimate_ci_low'], r['estimate_ci_high'])}"
        for _, r in good.iterrows()
    )
    if not good["significant"].any() or good["group"].nunique() > 1:  # no trend claimed across groups
        return f"By share of competitors adopting: {parts}."
    first, last = float(good["estimate"].iloc[0]), float(good["estimate"].iloc[-1])
    trend = "stays about the same" if abs(last - first) < 1e-12 else ("shrinks" if abs(last) < abs(first) else "grows")
    return f"As more competitors adopt it, the effect {trend} ({parts})."


def _engine_section(st: StatsResult) -> str:
    """How far to trust the engine, from the run's own controls: read before any verdict."""
    cal = st.engine
    if cal is None:
        return ""
    rows = []
    for c in cal.controls:
        mark, cls = (
            ("not run", "v-insuff")
            if c.passed is None
            else (("passed", "v-better") if c.passed else ("failed", "v-worse"))
        )
        rows.append(
            [
                (_e(c.name), ""),
                (_e(c.expectation), ""),
                (_e(c.result), ""),
                (f'<span class="{cls}">{_e(mark)}</span>', ""),
            ]
        )
    facts = []
    if cal.answers:
        facts.append(
            f"{_e(fmt_pct(cal.attributable, signed=False))} of {_e(cal.sentences)} answer sentences are attributable to a "
            f"source ({_e(cal.attribution)} attribution); {_e(fmt_pct(cal.unsupported, signed=False))} are unsupported by "
            f"every source (fewer than a third of their content words appear in any source: likely invented). "
            f"From {_e(cal.answers)} sampled answers."
        )
    if not is_missing(cal.selection_mass):
        facts.append(
            f"At the point where it starts citing, the engine puts {_e(fmt_pct(cal.selection_mass, signed=False))} of its "
            "next-token probability on a shown source's number (selection reading, base condition)."
        )
    failed = cal.failed()
    head = (
        "The engine failed a control: read every verdict below as unreliable."
        if failed
        else "The engine passed the controls this run could check."
        if any(c.passed for c in cal.controls)
        else "This run has no controls: add the identity and rank strategies to check the engine."
    )
    return (
        '<section id="engine"><h2>Engine calibration</h2>'
        f'<p class="{"warn" if failed else "note"}"><strong>{_e(head)}</strong> Engine {_e(cal.model)}; stages measured: '
        f"{_e(', '.join(cal.stages) or '?')}; primary metric, declared before the run: {_e(cal.primary)} "
        f"({_e(_metric_label(cal.primary))}).</p>"
        + "".join(f'<p class="note">{f}</p>' for f in facts)
        + _table(["control", "expected", "this run", ""], rows)
        + "</section>"
    )


def _verdict_section(st: StatsResult, primary: str) -> str:
    p = st.provenance
    strategies = [s for s in p["strategies"] if s != "identity"] or list(p["strategies"])
    items = []
    n_better = 0
    for s in strategies:
        rows = st.rows_for(s, primary, "advantage")
        if rows.empty:
            rows = st.rows_for(s, primary)
        cls, sentence = _strategy_verdict(rows, primary)
        n_better += cls == "v-better"
        title = (p["strategy_info"].get(s) or {}).get("title") or s
        trend = _trend_sentence(rows)
        items.append(
            f'<li><strong class="{cls}">{_e(s)}</strong> <span class="note">({_e(title)})</span>: {_e(sentence)}'
            + (f" {_e(trend)}" if trend else "")
            + "</li>"
        )
    head = (
        f"{n_better} of {len(strategies)} strategies significantly raise your page's {_metric_label(primary)} "
        "against competitors (advantage: you adopt vs you do not, with the same competitors adopting)."
        if n_better
        else f"No strategy significantly raised your page's {_metric_label(primary)} in this run."
    )
    out = [
        '<section id="verdict"><h2>Verdict</h2><div class="verdict-box">',
        f"<p><strong>{_e(head)}</strong></p>",
        "<ul>" + "".join(items) + "</ul>",
    ]
    prim = st.rows_for(metric=primary)
    level = fmt_level(prim["ci_level"].iloc[0]) if len(prim) else "95%"
    what = (
        "the mean change per query"
        if set(prim["estimand"]) <= {"mean"}
        else "the pseudo-median (Hodges-Lehmann) change per query"
        if set(prim["estimand"]) == {"pseudomedian"}
        else "the change per query (mean or pseudo-median, as stated)"
    )
    unverified = int((~prim["ci_verified"].astype(bool)).sum()) if len(prim) else 0
    out.append(
        f'<p class="note">Tested on {_e(p["n_queries"])} queries; Δ is {_e(what)} of the target page\'s metric, '
        "and the test is the one about that Δ. A result counts only if its multiple-comparison-adjusted p-value is "
        f'below {_e(st.options["alpha"])} and its whole {_e(level)} CI is on one side of 0; "mixed" means the mean '
        f"and the rank test disagree. A {_e(level)} CI that includes 0 means the data cannot tell a gain from a loss."
        + (
            f" Intervals marked * ({unverified}) come from fewer queries than the size where their coverage was "
            "verified by simulation (benches/README.md) and may be too narrow."
            if unverified
            else ""
        )
        + "</p>"
    )
    out.append("</div>")
    for msg in st.calibration_messages():
        cls = "warn" if st.calibration_warning() else "note"
        out.append(f'<p class="{cls}">{_e(msg)}</p>')
    if len(prim) and prim["mde"].notna().any():
        g = prim[prim["mde"].notna()]
        m_alpha = float(g["mde_alpha"].median())
        out.append(
            f'<p class="note">With {_e(p["n_queries"])} queries this run detects ({_e(fmt_level(st.options["power"]))} '
            f"power, each test at alpha / its family size ≈ {_e(f'{m_alpha:.2g}')}, the level its correction needs) "
            f"changes of about ±{_e(fmt_num(float(g['mde'].median())))} in {_e(primary)}; smaller true effects are "
            "likely missed.</p>"
        )
    for note in st.notes:
        out.append(f'<p class="warn">{_e(note)}</p>')
    out.append("</section>")
    return "\n".join(out)


def _charts_section(st: StatsResult) -> str:
    summ = st.summary
    level = fmt_level(summ["ci_level"].iloc[0]) if len(summ) else "95%"
    out = [
        '<section id="charts"><h2>How the effect changes as competitors adopt</h2>',
        f'<p class="note">The estimate per adopter rate (the mean Δ, or the pseudo-median where that is the '
        f"metric's estimand) with its {_e(level)} CI (band and bars). Advantage: you adopt "
        "vs you do not, the same competitors adopting; net: against the market where nobody adopted. "
        "The grey dotted line is the A/A control (identity): its spread is pure noise.</p>",
    ]
    # One pass over the summary instead of a filter per strategy x metric x comparison.
    by_key = {k: g for k, g in summ.groupby(["strategy", "metric", "comparison"], sort=False)} if len(summ) else {}
    for metric in st.options["metrics"]:
        charts = []
        for comparison in st.options["comparisons"]:
            series = []
            for s in st.provenance["strategies"]:
                rows = by_key.get((s, metric, comparison), summ.iloc[0:0])
                rows = rows[rows["group"] == "all"] if "group" in rows else rows
                if rows.empty:
                    continue
                pts = [
                    (
                        float(r["rate"]),
                        r["estimate"],
                        r["estimate_ci_low"],
                        r["estimate_ci_high"],
                        bool(r["significant"]),
                    )
                    for _, r in rows.sort_values("rate").iterrows()
                ]
                series.append({"name": s, "points": pts, "identity": s == "identity"})
            if series:
                est = st.rows_for(metric=metric)["estimand"].iloc[0]
                charts.append(
                    svg_delta_chart(
                        series,
                        title=f"{metric} — {comparison}",
                        y_label=f"{_ESTIMAND_SHORT.get(str(est), 'Δ')} {metric}",
                        band_label=f"band: {level} CI",
                    )
                )
        if charts:
            out.append(f"<h3>{_e(metric)}: {_e(_metric_label(metric))}</h3>")
            out.append('<div class="charts">' + "\n".join(charts) + "</div>")
    out.append("</section>")
    return "\n".join(out)


def _word_tokens(text: str) -> list[str]:
    """Words with the whitespace after them, so joining the tokens gives the text back (after its leading blanks)."""
    return re.findall(r"\S+\s*", text)


def _diff_html(original: str, rewritten: str, limit: int = 6000) -> tuple[str, str]:
    """(left, right) escaped HTML: the original with deletions marked, the rewrite with insertions marked.

    Words are compared without their whitespace; each side is written with its own text, so the
    original's spacing survives on the left. Only the shown prefix (``limit`` characters and a
    little more) is compared: a word diff is quadratic or worse on repetitive text, and a hostile
    page must not stall the report.
    """
    import difflib

    a = _word_tokens((original or "")[: limit + 200])
    b = _word_tokens((rewritten or "")[: limit + 200])
    sm = difflib.SequenceMatcher(a=[w.strip() for w in a], b=[w.strip() for w in b], autojunk=False)
    left: list[str] = []
    right: list[str] = []
    nl = nr = 0
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
        if old and nl < limit:
            piece = old[: limit - nl]
            nl += len(piece)
            left.append(_e(piece) if tag == "equal" else f"<del>{_e(piece)}</del>")
        if new and nr < limit:
            piece = new[: limit - nr]
            nr += len(piece)
            right.append(_e(piece) if tag == "equal" else f"<ins>{_e(piece)}</ins>")
    if len(original or "") > limit:
        left.append(f'<span class="note"> … ({len(original) - limit:,} more characters)</span>')
    if len(rewritten or "") > limit:
        right.append(f'<span class="note"> … ({len(rewritten) - limit:,} more characters)</span>')
    return "".join(left), "".join(right)


_FLAG_TEXT = {"numbers": "numbers", "quotes": "quotations", "sources": "named sources", "urls": "URLs"}


def _fabrications(rec: Mapping[str, Any]) -> dict[str, list[str]]:
    fab = (rec.get("guards") or {}).get("fabrications") or {}
    return {k: [str(x) for x in v] for k, v in fab.items() if v}


def _answer_html(ans: Answer, target_pos: int | None, label: str, sample: int = 0) -> str:
    """One sampled answer: sentences attributed to the target are highlighted, its citation marks bold."""
    if not ans.samples:
        return f'<div class="answer"><h4>{_e(label)}</h4><p class="note">no answer sample</p></div>'
    smp = ans.samples[min(sample, len(ans.samples) - 1)]
    parts = []
    for sent in smp.sentences:
        marks = []
        for c in sent.citations:
            cls = "cite t" if c == target_pos else "cite"
            txt = f"[{c + 1}]" if sent.how == "explicit" else f"(≈{c + 1})"
            marks.append(f'<span class="{cls}">{_e(txt)}</span>')
        body = _e(sent.text)
        if target_pos is not None and target_pos in sent.citations:
            body = f"<mark>{body}</mark>"
        parts.append(body + ("&nbsp;" + "".join(marks) if marks else ""))
    srcs = []
    for i, sid in enumerate(ans.sources):
        info = ans.source_info[i] if i < len(ans.source_info) else None
        title = (info.title if info else "") or sid
        url = info.url if info else ""
        is_t = i == target_pos
        srcs.append(
            ('<li class="t">' if is_t else "<li>")
            + _e(title)
            + (f" <code>{_e(url)}</code>" if url else "")
            + (" ← your page" if is_t else "")
            + "</li>"
        )
    how = {"explicit": "[n] = citation the engine wrote", "overlap": "(≈n) = attributed by word overlap"}
    hows = sorted({s.how for s in smp.sentences if s.citations})
    legend = "; ".join(how[h] for h in hows if h in how)
    return (
        f'<div class="answer"><h4>{_e(label)}</h4><p>{" ".join(parts) or _e(smp.raw)}</p>'
        f'<p class="note">highlighted: sentences attributed to your page. {_e(legend)}</p>'
        f'<ol class="sources">{"".join(srcs)}</ol></div>'
    )


def _example_answers(run: Run, data: RunData, strategy: str, item: str) -> str:
    b, t = data.example_row(item), data.example_row(item, strategy)
    if b is None or t is None:
        return ""
    out = []
    for row, label in (
        (b, "Before: nobody adopted"),
        (t, f"After: your page adopted {strategy} (competitors adopting: {fmt_rate(t['rate'])})"),
    ):
        ans = run.answer(str(row["answer_id"]))
        if ans is None:
            continue
        pos = int(row["target_rank"]) - 1 if not is_missing(row["target_rank"]) else None
        m = f" — PAWC {fmt_num(row['pawc'])}, cited {fmt_num(row['cited'])}" if "pawc" in row else ""
        out.append(_answer_html(ans, pos, label + m, int(row["sample"])))
    if not out:
        return ""
    query = ""
    ans0 = run.answer(str(b["answer_id"]))
    if ans0 is not None:
        query = ans0.query
    return (
        f'<h4>Example answer for the query “{_e(query)}” <span class="note">(item {_e(item)})</span></h4>'
        f'<div class="pair">{"".join(out)}</div>'
    )


class _Rewrites:
    """The rewrite records a report shows, per strategy: counts by status, the target pages' records and the
    failed ones, without their texts (a large run stores one per page x strategy x query; the texts of the
    few examples shown are read one by one)."""

    def __init__(self, run: Run) -> None:
        self.counts: dict[str, list[dict[str, Any]]] = {}
        for c in run.rewrite_counts():
            self.counts.setdefault(str(c["strategy"]), []).append(c)
        self.targets = self._by_strategy(run.rewrites(targets_only=True, texts=False))
        self.failed = self._by_strategy(run.rewrites(status="failed", texts=False))

    @staticmethod
    def _by_strategy(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            out.setdefault(str(r["strategy"]), []).append(r)
        return out


def _strategy_section(
    run: Run, st: StatsResult, data: RunData, rewrites: _Rewrites, strategy: str, examples: int
) -> str:
    info = st.provenance["strategy_info"].get(strategy) or {}
    recs = rewrites.counts.get(strategy, [])
    targets = rewrites.targets.get(strategy, [])
    out = [
        f'<section id="strategy-{_slug(strategy)}"><h2>Strategy: {_e(strategy)}</h2>',
        f'<p class="sub">{_e(info.get("title", ""))} · {_e(info.get("origin", ""))} · kind {_e(info.get("kind", "?"))}, '
        f"version {_e(info.get('version', '?'))}, prompt {_e(info.get('prompt_hash', '?'))}</p>",
    ]
    if strategy == "identity":
        out.append(
            '<p class="note">The A/A control: pages are left exactly as they are and only the engine\'s sampling '
            "differs, so every difference here is noise. Real strategies must beat this spread.</p>"
        )
    srows = st.rows_for(strategy)
    if not srows.empty:
        out.append(
            _grouped_stats_tables(
                srows, st.options["correction"], show_group=st.options.get("by") is not None, omit=("strategy",)
            )
        )
    if info.get("kind") == "rank":
        out.append(
            '<p class="note">This strategy rewrites nothing: adopting pages are moved to the top of the sources the '
            "engine sees (traditional SEO, C-SEO Bench's baseline).</p>"
        )
    elif strategy == "identity":
        pass  # nothing to diff: the example answer below shows what pure sampling noise looks like
    elif recs:
        status: Counter[tuple[str, str]] = Counter()
        for c in recs:
            status[("your page" if c["is_target"] else "competitors"), c["status"]] += int(c["n"])
        status_txt = "; ".join(f"{who}: {n} {st_}" for (who, st_), n in sorted(status.items()))
        out.append(f"<p><strong>Rewrites:</strong> {_e(status_txt)}.</p>")
        failed = Counter(str(r["reason"]) for r in rewrites.failed.get(strategy, []))
        if failed:
            out.append(
                "<p><strong>Failed rewrites</strong> (the original text was used instead):</p><ul>"
                + "".join(f"<li>{_e(reason)} — {n}×</li>" for reason, n in failed.most_common(8))
                + "</ul>"
            )
        flagged = Counter(k for r in targets for k, v in _fabrications(r).items())
        if flagged:
            out.append(
                '<div class="flags"><strong>Fabrication risk:</strong> rewrites of your page added '
                + _e(", ".join(f"{_FLAG_TEXT.get(k, k)} ({n} page{'s' if n != 1 else ''})" for k, n in flagged.items()))
                + " not present in the original. Check them before publishing.</div>"
            )
        else:
            out.append(
                '<p class="note">No rewrite of your page added numbers, quotations, named sources or URLs '
                "absent from the original.</p>"
            )

        # Examples: flagged or failed first (what a creator must check), then the most changed.
        def order(r: Mapping[str, Any]) -> tuple[int, int, float]:
            g = r.get("guards") or {}
            return (-len(_fabrications(r)), -(r["status"] == "failed"), -float(g.get("word_change") or 0.0))

        seen: set[str] = set()
        shown = 0
        for rec in sorted(targets, key=order):
            if shown >= examples or rec["item"] in seen:
                continue
            seen.add(rec["item"])
            shown += 1
            left, right = _diff_html(*run.rewrite_texts(rec["doc_id"], strategy, rec["item"]))
            fab = _fabrications(rec)
            g = rec.get("guards") or {}
            stat_line = (
                f"status {rec['status']}"
                + (f" ({rec['reason']})" if rec["reason"] else "")
                + f"; length ratio {fmt_num(g.get('length_ratio'))}, words changed {fmt_pct(g.get('word_change'), signed=False)}"
            )
            out.append(f"<h3>Your page in item {_e(rec['item'])}: original and rewrite</h3>")
            out.append(f'<p class="note">{_e(stat_line)}; model {_e(rec["model"])}</p>')
            if fab:
                out.append(
                    '<div class="flags"><strong>Added, not in the original:</strong><ul>'
                    + "".join(f"<li>{_e(_FLAG_TEXT.get(k, k))}: {_e(', '.join(v[:8]))}</li>" for k, v in fab.items())
                    + "</ul></div>"
                )
            out.append(
                f'<div class="diff"><div><h4>Original</h4>{left}</div><div><h4>Rewritten ({_e(strategy)})</h4>{right}</div></div>'
            )
            out.append(_example_answers(run, data, strategy, str(rec["item"])))
        if not targets:
            out.append('<p class="note">No rewrite of your page is stored for this strategy.</p>')
    if info.get("kind") == "rank" or strategy == "identity" or not recs:
        for item in data.treated_items(strategy)[: max(1, examples)]:
            out.append(_example_answers(run, data, strategy, str(item)))
    out.append("</section>")
    return "\n".join(out)


def _breakdown_section(data: RunData, st: StatsResult, primary: str) -> str:
    parts = []
    p = st.provenance
    for by, title in (
        ("domain", "By domain (GEO's per-domain analysis)"),
        ("orig_rank", "By the target's original position among the sources (GEO Table 2)"),
    ):
        col = "domain" if by == "domain" else "target_orig_rank"
        if data.n_distinct[col] < 2:
            continue
        o = st.options
        try:
            summary = breakdown_summary(st, primary, by, data)
        except InputError:
            continue
        df = summary[summary["strategy"] != "identity"] if len(p["strategies"]) > 1 else summary
        # The unilateral case (fewest competitors adopting), as GEO's per-domain and per-rank tables.
        df = df[df["rate"] == df["rate"].min()] if len(df) else df
        parts.append(f"<h3>{_e(title)}</h3>")
        if df.empty or (df["status"] != "ok").all():
            parts.append(
                f'<p class="note">Too few queries per group to test ({_e(data.n_distinct[col])} groups for '
                f"{_e(p['n_queries'])} queries; at least 5 queries with non-zero Δ per group are needed).</p>"
            )
            continue
        parts.append(
            f'<p class="note">{_e(primary)}, advantage, {_e(fmt_rate(df["rate"].min()))} of competitors '
            "adopting; corrections within each group.</p>"
        )
        parts.append(_stats_table(df, o["correction"], show_group=True, omit=("metric", "comparison")))
    if not parts:
        return ""
    return '<section id="breakdowns"><h2>Breakdowns</h2>' + "\n".join(parts) + "</section>"


def _metric_definitions(metrics: Sequence[str]) -> str:
    names = [*metrics, "delta_rank_adv"] if "delta_rank" in metrics else list(metrics)
    rows = []
    for m in names:
        info = METRICS.get(m)
        if info is None:
            continue
        name = "delta_rank (advantage)" if m == "delta_rank_adv" else m
        rows.append(
            [
                (_e(name), ""),
                (_e(info.description), ""),
                (_e(info.formula), ""),
                (_e(info.source), ""),
                (_e("higher" if info.higher_is_better else "lower"), ""),
            ]
        )
    return _table(["metric", "meaning", "formula", "source", "better"], rows)


def _methodology_section(st: StatsResult) -> str:
    p, o = st.provenance, st.options
    first = st.summary.iloc[0] if len(st.summary) else None
    usage = p.get("usage") or {}
    strat = "; ".join(
        f"{name} v{(i or {}).get('version', '?')} (prompt {(i or {}).get('prompt_hash', '?')})"
        for name, i in p["strategy_info"].items()
    )
    versions = ", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items())
    fams = st.family_sizes()
    items: list[tuple[str, str]] = [
        (
            "run",
            f"{p['run_id']} ({p['status']}, {p['cells']} of {p['planned_cells']} cells; created {p['created_at']}, finished {p['finished_at']})",
        ),
        ("command line", p["command"] or "?"),
        ("engine model", p["model"]),
        ("rewrite model", f"{p['rewrite_model']} (rewrite seed {p.get('rewrite_seed')})"),
        (
            "sources shown",
            f"k = {p['k']}, order {p['order']} (retriever: {'BM25 over the candidates' if p['order'] == 'retrieved' else 'none, the bench order' if p['order'] == 'given' else 'bench order, shuffled per seed'})",
        ),
        ("attribution", f"{p['attribution']} (overlap threshold {p.get('overlap_threshold')})"),
        (
            "answer prompt",
            f"{p['prompt_version']}; temperature {p['temperature']}, max tokens {p['max_tokens']}, "
            f"source budget {p['source_budget_chars']} characters, PAWC variant {p['pawc_variant']}",
        ),
        ("strategies", strat or "?"),
        ("adopter rates", ", ".join(fmt_rate(r) for r in p["rates"])),
        ("seeds / samples", f"seeds {', '.join(map(str, p['seeds']))}; {p['samples']} sample(s) per condition"),
        ("queries (n)", f"{p['n_queries']} of {p['bench_items']} bench items"),
        (
            "bench",
            f"{p['bench_name']} ({p['bench_format']}) from {p['bench_source']}; {len(p['bench_skipped'])} item(s) skipped",
        ),
        ("bench notes", "; ".join(map(str, p["bench_notes"])) or "none"),
        ("comparisons", "; ".join(f"{c}: {_COMPARISON_TEXT[c]}" for c in o["comparisons"])),
        ("unit of analysis", "the query: samples and seeds are averaged within a query before testing"),
    ]
    if first is not None:
        summ = st.summary
        estimands = "; ".join(
            f"{m}: {'mean Δ' if e == 'mean' else 'pseudo-median Δ (Hodges-Lehmann)'}, tested by {t}"
            for m, e, t in summ.drop_duplicates("metric")[["metric", "estimand", "test"]].itertuples(index=False)
        )
        n_flag = int((~summ["ci_verified"].astype(bool)).sum())
        items += [
            (
                "estimand and test",
                (
                    f"{estimands}; {first['alternative']}, zero_method {first['zero_method']} for the "
                    "Wilcoxon test; the other test (Wilcoxon for a mean, the mean's test for a "
                    'pseudo-median) is run as a check: "mixed" when the two disagree'
                ),
            ),
            (
                "correction",
                f"{'Holm' if o['correction'] == 'holm' else 'Benjamini-Hochberg'} within family '{o['family']}' "
                f"({', '.join(f'{k}: {v} tests' for k, v in list(fams.items())[:6])}"
                f"{', …' if len(fams) > 6 else ''}); alpha {o['alpha']}"
                + (
                    "; losses by the reverse one-sided test, corrected the same way"
                    if first["alternative"] != "two-sided"
                    else ""
                ),
            ),
            (
                "confidence intervals",
                f"{fmt_level(first['ci_level'])} ("
                + (
                    "1 − alpha"
                    if first["alternative"] == "two-sided"
                    else "1 − 2 alpha: each bound is the one-sided bound the one-sided test inverts"
                )
                + "): "
                + "; ".join(sorted(set(map(str, summ["ci_method"]))))
                + f"; {n_flag} interval(s) from fewer queries than the size where simulated coverage held "
                "(marked *, benches/README.md)",
            ),
            (
                "relative change",
                (
                    "±(treated mean − baseline mean) / |baseline mean|, + = your page gained; Fieller's "
                    "interval; undefined when the baseline mean is within its own margin of 0"
                ),
            ),
            (
                "effect sizes",
                "matched-pairs rank-biserial r (Kerby 2014; zeros handled as the Wilcoxon test does), paired Cohen's d_z",
            ),
            (
                "minimum detectable effect",
                f"at {o['power']:.0%} power with each row's own test at alpha / its family size "
                "(t formula for a mean, simulated signed-rank test for a pseudo-median): "
                + ", ".join(f"{m} ±{fmt_num(v)}" for m, v in st.mde_by_metric().items()),
            ),
            (
                "mode",
                (
                    "C-SEO Bench (one-sided Wilcoxon with the reverse test for losses, zeros dropped by the test, "
                    "Holm per domain × metric × adopter rate across strategies, population SD)"
                )
                if o["mode"] == "cseo"
                else "default (two-sided)",
            ),
        ]
    items += [
        (
            "calibration (A/A)",
            " ".join(st.calibration_messages())
            or "; ".join(n for n in st.notes if "A/A" in n)
            or "no identity strategy in this run: the tests' false-positive rate was not checked",
        ),
        ("LLM usage / cost", str(usage.get("summary") or "not recorded")),
        ("versions", versions or "?"),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return (
        f'<section id="methodology"><h2>Methodology</h2><dl class="meta">{dl}</dl>'
        f"<h3>Metric definitions</h3>{_metric_definitions(o['metrics'])}</section>"
    )


# ============================================================================ the report


def build_report(
    run: Run,
    *,
    stats: StatsResult | None = None,
    title: str | None = None,
    examples: int = 2,
    breakdowns: bool = True,
    **stats_options: Any,
) -> str:
    """The HTML report of ``run`` as one self-contained string (no scripts, no external resources).

    ``stats`` reuses a :class:`StatsResult`; otherwise :func:`run_stats` is called with
    ``stats_options`` (metrics, comparisons, family, correction, mode, alpha, n_boot, ci, seed).
    ``examples``: rewrites (with example answers) shown per strategy. ``breakdowns``: add the
    per-domain and per-original-rank tables of the primary (first) metric when the run has more
    than one domain / rank.
    """
    st = stats or run_stats(run, **stats_options)
    primary = st.options["metrics"][0]
    p = st.provenance
    # The per-unit means the statistics were computed from; a StatsResult made elsewhere is re-read.
    data = st.data if st.data is not None and st.data.run is run else RunData.for_metrics(run, st.options["metrics"])
    rewrites = _Rewrites(run)
    heading = title or f"Does rewriting make your page more visible? — {p['bench_name']}"
    body = [
        f"<header><h1>{_e(heading)}</h1>",
        f'<p class="sub">geoaudit report for run {_e(p["run_id"])} · engine {_e(p["model"])} · {_e(p["n_queries"])} queries · '
        f"strategies {_e(', '.join(p['strategies']))} · adopter rates {_e(', '.join(fmt_rate(r) for r in p['rates']))}</p>",
        '<nav class="note">Contents: <a href="#engine">engine calibration</a> · <a href="#verdict">verdict</a> · '
        '<a href="#charts">charts</a> · '
        '<a href="#results">all results</a> · '
        + " · ".join(f'<a href="#strategy-{_slug(s)}">{_e(s)}</a>' for s in p["strategies"])
        + ' · <a href="#methodology">methodology</a></nav></header>',
        _engine_section(st),
        _verdict_section(st, primary),
        _charts_section(st),
        '<section id="results"><h2>All results</h2><p class="note">Grey rows: no evidence, no change detected or insufficient data; "mixed": the mean and the rank test disagree. '
        "W/T/L = queries where the target won / tied / lost. MDE = smallest Δ detectable with "
        f"{_e(fmt_level(st.options['power']))} power by the row's own test at alpha / its family size. "
        "* = fewer queries than the size where the interval's coverage was verified.</p>"
        + _grouped_stats_tables(st.summary, st.options["correction"], show_group=st.options.get("by") is not None)
        + "</section>",
    ]
    if breakdowns:
        body.append(_breakdown_section(data, st, primary))
    for s in p["strategies"]:
        body.append(_strategy_section(run, st, data, rewrites, s, examples))
    body.append(_methodology_section(st))
    version = (p.get("versions") or {}).get("geoaudit", "?")
    body.append(
        f'<footer class="note"><p>Generated by geoaudit {_e(version)} from run {_e(p["run_id"])}. '
        "All page and answer text above is quoted as data; nothing in it was executed.</p></footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(heading)}</title>\n<style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_report(run: Run, out_dir: Path | str, **kwargs: Any) -> Path:
    """Write ``out_dir/index.html`` atomically (keyword arguments as :func:`build_report`); returns its path."""
    from geoaudit.documents import atomic_write_text

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"{out} exists and is not a directory", hint="pass a directory for the report, e.g. -o reports/my-run/"
        )
    return atomic_write_text(out / "index.html", build_report(run, **kwargs))


# ============================================================================ shared building blocks

# Public names for the pieces other reports reuse (the audit report, geoaudit.audit): one escaping,
# one style sheet, one diff, one answer view and one verdict wording for every report geoaudit writes.
REPORT_CSS = _CSS
escape = _e
html_table = _table
verdict_badge = _verdict_badge
stats_table = _stats_table
metric_label = _metric_label
strategy_verdict = _strategy_verdict
trend_sentence = _trend_sentence
engine_section = _engine_section
diff_html = _diff_html
fabrications = _fabrications
answer_html = _answer_html


def flag_text(kind: str) -> str:
    """A fabrication category in words (numbers, quotations, named sources, URLs)."""
    return _FLAG_TEXT.get(kind, kind)
