"""The statistics of a run, and how they were obtained: the library behind ``geoaudit stats``.

:func:`run_stats` applies :func:`geoaudit.stats.summarize` to a run with the metric directions of
:data:`geoaudit.metrics.METRICS` and the run's paired metrics, adds the A/A calibration and a plain
account of how the numbers were obtained (:class:`StatsResult`). C-SEO Bench's Δrank is one metric,
``delta_rank``, in both comparisons: its "advantage" is the stored ``delta_rank_adv`` (treated
answer vs the rivals answer) and its "net" is ``delta_rank`` (treated vs base), tested in the same
family as the rest. The number formatting shared by the terminal and the HTML report lives here too.

Data flow: runs (read) -> stats (pure) -> this module -> report (HTML) / the ``stats`` command.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from geoaudit.documents import atomic_path
from geoaudit.errors import InputError
from geoaudit.metrics import ROW_METRICS, directions
from geoaudit.runs import ROW_KEYS, Run
from geoaudit.stats import COMPARISONS, UnitMeans, calibration, mode_rank, normalise_rate, summarize, unit_means

__all__ = [
    "DEFAULT_METRICS",
    "Control",
    "EngineCalibration",
    "RunData",
    "StatsResult",
    "breakdown_summary",
    "engine_calibration",
    "favourable",
    "fmt_ci",
    "fmt_level",
    "fmt_num",
    "fmt_p",
    "fmt_p_cells",
    "fmt_pct",
    "fmt_rate",
    "in_group",
    "is_grouped",
    "is_missing",
    "known_metrics",
    "rate_label",
    "reason_text",
    "run_default_metrics",
    "run_stats",
    "tests_label",
    "write_stats",
]

#: What ``geoaudit stats`` and the report test by default: visibility (GEO's PAWC), whether the page
#: is cited at all, and C-SEO Bench's rank change.
DEFAULT_METRICS = ("pawc", "cited", "delta_rank")
_ADV = "delta_rank_adv"


# ============================================================================ formatting


def is_missing(x: Any) -> bool:
    """True for None, NaN, infinities and anything that is not a number."""
    try:
        return x is None or not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def fmt_num(x: Any, *, signed: bool = False) -> str:
    """A metric value for people: 3 decimals (1 above 10), ``–`` for missing, never ``-0.000``."""
    if is_missing(x):
        return "–"
    v = float(x)
    digits = 1 if abs(v) >= 10 else 3
    if round(v, digits) == 0:
        v = 0.0
    text = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    return text.replace("-", "−")


def fmt_ci(lo: Any, hi: Any) -> str:
    if is_missing(lo) or is_missing(hi):
        return "[–]"
    return f"[{fmt_num(lo, signed=True)}, {fmt_num(hi, signed=True)}]"


def fmt_pct(x: Any, *, signed: bool = True) -> str:
    if is_missing(x):
        return "–"
    v = float(x) * 100
    if round(v) == 0:
        v = 0.0
    return (f"{v:+.0f}%" if signed else f"{v:.0f}%").replace("-", "−")


def fmt_p(p: Any) -> str:
    """A p-value: ``<0.001``, 3 decimals, or ``–`` when no test was run."""
    if is_missing(p):
        return "–"
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def fmt_p_cells(r: Any, correction: str) -> tuple[str, str]:
    """(raw p, adjusted p) as printed: one-sided runs show the gain test and the loss (reverse) test as "gain / loss"."""
    adj = r["p_holm"] if correction == "holm" else r["p_bh"]
    alt = str(r.get("alternative", "two-sided"))
    if alt == "two-sided" or is_missing(r["p_reverse"]):
        return fmt_p(r["p_value"]), fmt_p(adj)
    gain, loss = (r["p_value"], r["p_reverse"]) if alt == "greater" else (r["p_reverse"], r["p_value"])
    gain_adj, loss_adj = (adj, r["p_reverse_adj"]) if alt == "greater" else (r["p_reverse_adj"], adj)
    return f"{fmt_p(gain)} / {fmt_p(loss)}", f"{fmt_p(gain_adj)} / {fmt_p(loss_adj)}"


def fmt_level(level: Any) -> str:
    """A confidence level as a percentage (``95%``, ``90%``), ``?%`` when unknown."""
    return "?%" if is_missing(level) else f"{float(level):.0%}"


def fmt_rate(rate: Any) -> str:
    """An adopter rate as a percentage of competitors (``0%``, ``50%``)."""
    return "–" if is_missing(rate) else f"{float(rate):.0%}"


# ============================================================================ wording of result rows


def favourable(r: Any, value: Any) -> float:
    """A value in the favourable orientation: positive = your page gained, whichever way the metric points."""
    return float(value) * (1.0 if bool(r["higher_is_better"]) else -1.0)


def rate_label(r: Any) -> str:
    """The adopter rate of a row, with its breakdown group when rows are split (C-SEO mode splits by domain)."""
    group = f" ({r['by']} {r['group']})" if is_grouped(r) else ""
    return fmt_rate(r["rate"]) + group


def tests_label(k: Any) -> str:
    return f"{int(k)} test" + ("" if int(k) == 1 else "s")


def is_grouped(r: Any) -> bool:
    # C-SEO mode splits by domain even when the bench has none: "(none)" then is no group at all.
    by = str(r.get("by", "all"))
    return by != "all" and not (by == "domain" and str(r["group"]) == "(none)")


def in_group(r: Any) -> str:
    return f" in {r['by']} {r['group']}" if is_grouped(r) else ""


def reason_text(r: Any) -> str:
    """Why a row got its verdict, in plain words, from summarize's ``reason`` (empty for a clear result)."""
    reason = str(r.get("reason", ""))
    mean_est = str(r["estimand"]) == "mean"
    adj = r["p_holm"] if str(r.get("correction", "holm")) == "holm" else r["p_bh"]
    corr = "Holm" if str(r.get("correction", "holm")) == "holm" else "Benjamini-Hochberg"
    if reason == "tests_disagree":
        if mean_est:  # the mean's test decided; the ranks point the other way
            up = favourable(r, r["estimate"]) > 0
            return (
                "the mean and the rank test disagree: the mean "
                + ("rises" if up else "falls")
                + " but the Wilcoxon ranks point "
                + ("down" if up else "up")
                + " (r "
                + fmt_num(r["rank_biserial"], signed=True)
                + "): "
                + (
                    "most queries lose a little while a few gain a lot"
                    if up
                    else "more queries gain than lose, but the losses are larger"
                )
            )
        up = favourable(r, r["mean_delta"]) < 0  # the rank test points against the mean
        return (
            "the rank test and the mean disagree: the typical query "
            + ("gains" if up else "loses")
            + " but the mean "
            + ("falls" if up else "rises")
            + f" (Δ mean {fmt_num(r['mean_delta'], signed=True)}): "
            + ("a few large losses outweigh many small gains" if up else "a few large gains outweigh many small losses")
        )
    if reason == "interval_disagrees":
        return (
            f"the rank test is significant but the pseudo-median's interval touches 0: only {int(r['n_nonzero'])} "
            f"of {int(r['n'])} queries changed at all"
        )
    if reason == "companion_only":
        other = fmt_p(r["companion_p_adj"])
        if mean_est:
            return (
                f"the mean's change is not significant (adjusted p {fmt_p(adj)}) but the Wilcoxon rank test is "
                f"(adjusted p {other}): the typical query moves while the average does not clearly"
            )
        return (
            f"the rank test finds no shift of the typical query (adjusted p {fmt_p(adj)}) but the mean changes "
            f"(Δ mean {fmt_num(r['mean_delta'], signed=True)}, adjusted p {other}): a few queries move a lot"
        )
    if reason == "correction":
        return (
            f"p {fmt_p(min(float(r['p_value']), float(r['p_reverse'])) if not is_missing(r['p_reverse']) else r['p_value'])}"
            f" is below {r['alpha']:g} on its own but not after {corr} over the {tests_label(r['family_size'])} of its "
            f"family ({r['family']})"
        )
    if reason == "one_sided_blind":
        return (
            f"the one-sided test ({r['alternative']}) cannot see a change the other way, and the estimate "
            f"{fmt_num(r['estimate'], signed=True)} points that way"
        )
    if reason == "not_significant":
        return "the interval includes 0: the data cannot tell a gain from a loss"
    if reason == "all_zero":
        return f"no query changed: all {int(r['n'])} paired answers gave the same value"
    if reason == "few_queries":
        return f"only {int(r['n'])} queries (at least 5 are needed)"
    if reason == "few_nonzero":
        return f"only {int(r['n_nonzero'])} of {int(r['n'])} queries changed (at least 5 non-zero pairs are needed)"
    if reason == "constant_delta":
        return "every query changed by exactly the same amount: no spread to test against"
    return ""


# ============================================================================ what the statistics read


class _NeedRows(Exception):
    """SQL aggregates cannot reproduce the pandas grouping exactly (rates equal only after rounding)."""


#: The keys of the one aggregate query :meth:`RunData.load` runs: every unit at every level the
#: statistics need (item, item x original rank) and each item's description.
_FINE_KEYS = ["condition", "strategy", "rate", "item", "target_orig_rank", "domain", "tags"]
_PAIRED_CONDITIONS = ("rivals", "treated")


class RunData:
    """What the statistics and the report read from a run: per-unit means, not its rows.

    :meth:`load` asks SQLite for one aggregate (mean of each metric per condition x strategy x rate x
    item x original rank x domain x tags), so the million rows of a large run never reach pandas;
    :meth:`from_rows` does the same from a rows DataFrame. Either way :meth:`units` gives the
    :class:`geoaudit.stats.UnitMeans` the tests start from, with the numbers pandas computes from
    the rows (SQLite may sum a unit's samples in another order: the last bit of a mean can differ).

    Attributes:
        metrics: the metric columns read.
        n_rows: result rows; n_queries: distinct items; domains: distinct domains (sorted).
        n_distinct: distinct non-null values of ``domain`` and ``target_orig_rank`` over all rows.
        first_answer_id: the answer of the first row in :meth:`Run.rows` order.
        base_rows: the base condition's rows (condition, answer_id, selection_mass), in row order.
    """

    def __init__(
        self,
        run: Run | None,
        metrics: Sequence[str],
        *,
        n_rows: int,
        n_queries: int,
        domains: list[str],
        n_distinct: dict[str, int],
        first_answer_id: str | None,
        base_rows: pd.DataFrame,
        rows: pd.DataFrame | None = None,
        fine: pd.DataFrame | None = None,
    ) -> None:
        self.run = run
        self.metrics = tuple(dict.fromkeys(metrics))
        self.n_rows, self.n_queries, self.domains = n_rows, n_queries, domains
        self.n_distinct, self.first_answer_id, self.base_rows = n_distinct, first_answer_id, base_rows
        self._rows, self._fine = rows, fine
        self._units: dict[bool, UnitMeans] = {}

    # -- building
    @classmethod
    def from_rows(
        cls, run: Run | None, rows: pd.DataFrame, metrics: Sequence[str], optional: Sequence[str] = ()
    ) -> RunData:
        """From long rows (``Run.rows()`` or a caller's frame): the pandas path. ``optional`` metrics
        are read when the rows have them."""
        metrics = [*metrics, *(m for m in optional if m in rows.columns)]

        def distinct(col: str) -> int:
            return int(rows[col].nunique(dropna=True)) if col in rows else 0

        return cls(
            run,
            metrics,
            n_rows=len(rows),
            n_queries=int(rows["item"].nunique()) if len(rows) else 0,
            domains=sorted({str(d) for d in rows["domain"].dropna().unique()}) if "domain" in rows else [],
            n_distinct={"domain": distinct("domain"), "target_orig_rank": distinct("target_orig_rank")},
            first_answer_id=(
                str(rows["answer_id"].iloc[0])
                if len(rows) and "answer_id" in rows and not _missing_id(rows["answer_id"].iloc[0])
                else None
            ),
            base_rows=rows,
            rows=rows,
        )

    @classmethod
    def load(cls, run: Run, metrics: Sequence[str], optional: Sequence[str] = ()) -> RunData:
        """From the run store's SQL aggregates (falls back to reading the needed columns when they cannot
        be exact). ``optional`` metrics are read when the store has them."""
        columns = run.result_columns()
        metrics = list(dict.fromkeys([*metrics, *(m for m in optional if m in columns)]))
        missing = [c for c in (*_FINE_KEYS, *metrics) if c not in columns]
        if missing:
            raise InputError(f"result rows lack column(s) {', '.join(missing)}; available: {', '.join(columns)}")
        fine = run.group_means(_FINE_KEYS, metrics)
        conditions = set(fine["condition"].dropna().unique()) - {"base", "rivals", "treated"}
        if conditions:
            raise InputError(
                f"unknown condition value(s) {sorted(map(str, conditions))}; expected base, rivals or treated"
            )
        # Few: one row per item x seed x sample.
        base_rows = run.rows(
            ["item", "condition", "answer_id", *(c for c in ("selection_mass",) if c in columns)], condition="base"
        )
        first = run.first_row()
        data = cls(
            run,
            metrics,
            n_rows=int(fine["n"].sum()) if len(fine) else 0,
            n_queries=int(fine["item"].nunique()),
            domains=sorted({str(d) for d in fine["domain"].dropna().unique()}),
            n_distinct={c: int(fine[c].nunique(dropna=True)) for c in ("domain", "target_orig_rank")},
            first_answer_id=None if first is None or first["answer_id"] is None else str(first["answer_id"]),
            base_rows=base_rows,
            fine=_prepared_fine(fine, metrics),
        )
        try:
            data.units(False)
        except _NeedRows:
            rows = run.rows([*ROW_KEYS, *metrics])
            data._rows, data._fine = rows, None
        return data

    @classmethod
    def for_metrics(cls, run: Run, metrics: Sequence[str]) -> RunData:
        """:meth:`load` with the stored metrics behind ``metrics`` (delta_rank is two columns)."""
        return cls.load(run, _underlying(metrics, COMPARISONS))

    # -- reading
    def units(self, by_rank: bool = False) -> UnitMeans:
        """Unit means per item, or per (item, original rank) with ``by_rank``."""
        if by_rank not in self._units:
            if self._rows is not None:
                self._units[by_rank] = unit_means(self._rows, self.metrics, by_rank=by_rank)
            else:
                self._units[by_rank] = self._units_from_fine(by_rank)
        return self._units[by_rank]

    def treated_items(self, strategy: str) -> list[str]:
        """The items with a treated row of ``strategy``, sorted."""
        means = self.units().means
        hit = (means["condition"] == "treated") & (means["strategy"] == strategy)
        return sorted(set(means.loc[hit, "item"]))

    def example_row(self, item: str, strategy: str | None = None) -> Mapping[str, Any] | None:
        """The first base row of ``item`` by (seed, sample), or its first treated row of ``strategy`` by (rate, seed, sample)."""
        condition, order = ("base", ["seed", "sample"]) if strategy is None else ("treated", ["rate", "seed", "sample"])
        if self._rows is None and self.run is not None:
            return self.run.first_row(item, condition, order, strategy)
        rows = self._rows if self._rows is not None else pd.DataFrame()
        r = rows[rows["item"] == item]
        hit = r["condition"] == condition
        if strategy is not None:
            hit &= r["strategy"] == strategy
        r = r[hit].sort_values(order)
        return None if r.empty else r.iloc[0]

    def _units_from_fine(self, by_rank: bool) -> UnitMeans:
        assert self._fine is not None and self.run is not None
        fine, metrics, run = self._fine, list(self.metrics), self.run
        unit = ["item", "target_orig_rank"] if by_rank else ["item"]
        keys = ["condition", "strategy", "rate", *unit]

        def exact(part: pd.DataFrame, keys: list[str], conditions: tuple[str, ...]) -> pd.DataFrame:
            # One aggregate group per unit is the unit's mean; a unit split over several groups (its
            # original rank, domain or tags vary) needs its own aggregate.
            if part.duplicated(keys).any():
                part = _prepared_fine(run.group_means(keys, metrics, conditions=conditions), metrics)
                if part.duplicated(keys).any():
                    raise _NeedRows
            return part.sort_values(keys, na_position="last", kind="mergesort")[[*keys, *metrics]].reset_index(
                drop=True
            )

        means = exact(fine[fine["condition"].isin(_PAIRED_CONDITIONS)], keys, _PAIRED_CONDITIONS)
        base = exact(fine[fine["condition"] == "base"], unit, ("base",))
        described = fine.drop_duplicates(["item", "domain", "tags"])
        items = described.drop_duplicates("item").set_index("item")[["domain", "tags"]].copy()
        for item in described.loc[described["item"].duplicated(), "item"].unique():
            # The item's rows disagree on its description: the first row's, as Run.rows() orders them.
            row = run.first_row(str(item)) or {}
            items.loc[item, ["domain", "tags"]] = [str(row.get("domain") or ""), str(row.get("tags") or "")]
        ranked = fine.dropna(subset=["target_orig_rank"])
        counts = ranked.groupby(["item", "target_orig_rank"], sort=True)["n"].sum().reset_index()
        items["target_orig_rank"] = mode_rank(counts).reindex(items.index)
        return UnitMeans(means=means, base=base, items=items, metrics=tuple(metrics), by_rank=by_rank)


def _missing_id(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _prepared_fine(fine: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """SQL aggregates typed as :func:`geoaudit.stats.unit_means` types the rows."""
    out = fine.copy()
    out["item"] = out["item"].astype(str)
    if "strategy" in out:
        out["strategy"] = out["strategy"].fillna("").astype(str)
    if "rate" in out:
        out["rate"] = normalise_rate(out["rate"])
    for col in ("domain", "tags"):
        if col in out:
            out[col] = out[col].fillna("").astype(str)
    if "target_orig_rank" in out:
        out["target_orig_rank"] = pd.to_numeric(out["target_orig_rank"], errors="coerce")
    for m in metrics:
        out[m] = pd.to_numeric(out[m], errors="coerce").astype(float)
    return out


# ============================================================================ statistics of a run


def known_metrics() -> list[str]:
    """Metric names ``--metrics`` accepts (the simulation's row metrics, ``delta_rank``, ``target_rank``)."""
    return [*ROW_METRICS, "delta_rank", "target_rank"]


def run_default_metrics(meta: Mapping[str, Any]) -> list[str]:
    """What a run is tested on by default: its declared primary metric first, then each measured
    stage's metric (relevance, selection, and the answer metrics where every condition was answered).
    Runs from before stages existed get :data:`DEFAULT_METRICS`."""
    stages = meta.get("stages")
    if not stages:
        return list(DEFAULT_METRICS)
    out = [str(meta.get("primary") or (meta.get("config") or {}).get("primary") or "selection")]
    if "selection" in stages:
        out.append("selection")
    if "relevance" in stages:
        scope = (meta.get("engine") or {}).get("relevance_scope", "all")
        out.append("relevance" if scope == "all" else "query_loglik")
    if "answer" in stages and meta.get("answers", "all") == "all":
        out += ["pawc", "cited", "delta_rank"]
    return list(dict.fromkeys(m for m in out if m != "auto"))


def _parse_metrics(metrics: str | Sequence[str] | None, default: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    if metrics is None:
        return list(default)
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m).strip() for m in metrics]
    out: list[str] = []
    known = known_metrics()
    for name in names:
        if not name:
            continue
        if name == _ADV:  # the advantage half of delta_rank: one metric for users
            name = "delta_rank"
        if name not in known:
            raise InputError(f"unknown metric {name!r}", hint=f"known metrics: {', '.join(known)}")
        if name not in out:
            out.append(name)
    if not out:
        raise InputError("no metrics given", hint=f"e.g. --metrics {','.join(DEFAULT_METRICS)}")
    return out


@dataclass
class StatsResult:
    """The statistics of one run: the summary table, the A/A calibration and how they were obtained.

    Attributes:
        run_id: the run.
        summary: :func:`geoaudit.stats.summarize` columns (:data:`geoaudit.stats.SUMMARY_COLUMNS`),
            one row per strategy x rate x metric x comparison (x group).
        calibration: :func:`geoaudit.stats.calibration` of the identity rows (empty without identity).
        options: the statistical options used (metrics, comparisons, family, correction, ...).
        provenance: what the run was (engine, attribution, bench, n, seeds, samples, versions).
    """

    run_id: str
    summary: pd.DataFrame
    calibration: pd.DataFrame
    options: dict[str, Any]
    provenance: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    #: How far this engine can be trusted, from the run's own controls (:func:`engine_calibration`).
    engine: EngineCalibration | None = None
    #: What the numbers were computed from (per-unit means; the report's breakdowns reuse them).
    data: RunData | None = field(default=None, repr=False, compare=False)

    # -- reading
    def rows_for(
        self, strategy: str | None = None, metric: str | None = None, comparison: str | None = None
    ) -> pd.DataFrame:
        df = self.summary
        if strategy is not None:
            df = df[df["strategy"] == strategy]
        if metric is not None:
            df = df[df["metric"] == metric]
        if comparison is not None:
            df = df[df["comparison"] == comparison]
        return df

    def significant(self) -> pd.DataFrame:
        return self.summary[self.summary["verdict"].isin(["better", "worse"])]

    def mde_by_metric(self) -> dict[str, float]:
        """Median minimum detectable Δ per metric over the tested rows (NaN-free metrics only)."""
        out: dict[str, float] = {}
        for metric, g in self.summary.groupby("metric", sort=False):
            vals = g["mde"].dropna()
            if len(vals):
                out[str(metric)] = float(vals.median())
        return out

    def family_sizes(self) -> dict[str, int]:
        fam = self.summary.drop_duplicates("family")
        return {str(f): int(s) for f, s in zip(fam["family"], fam["family_size"])}

    def method_lines(self) -> list[str]:
        """How the numbers were obtained, in plain lines (printed under the table and in the report)."""
        p, o = self.provenance, self.options
        lines = [
            f"run {self.run_id}: {p['n_queries']} queries × {len(p['seeds'])} seed(s) × {p['samples']} sample(s) "
            f"per condition; engine {p['model']}, attribution {p['attribution']}, source order {p['order']}, "
            f"k={p['k']}; bench {p['bench_name']}",
            "Δ = treated − baseline per query, samples and seeds averaged within a query first; "
            "advantage: baseline = rivals (competitors adopted, you did not); net: baseline = base (nobody adopted)",
        ]
        if len(self.summary):
            first = self.summary.iloc[0]
            zero = {
                "pratt": "zero differences kept in the ranking without a sign (Pratt)",
                "wilcox": "zero differences dropped by the test, kept in the mean (scipy default)",
                "zsplit": "zero differences split between signs",
            }.get(str(first["zero_method"]), str(first["zero_method"]))
            corr = "Holm" if o["correction"] == "holm" else "Benjamini-Hochberg"
            fams = self.family_sizes()
            fam_text = (
                f"the whole run ({next(iter(fams.values()))} tests)"
                if list(fams) == ["run"]
                else f"{len(fams)} families by {o['family']} ({', '.join(f'{k}: {v}' for k, v in list(fams.items())[:4])}"
                f"{', …' if len(fams) > 4 else ''})"
            )
            lines.append(
                f"{fmt_level(first['ci_level'])} CI: "
                + "; ".join(sorted(set(map(str, self.summary["ci_method"]))))
                + "; rel. = ±(treated mean − baseline mean) / |baseline mean|, + = your page gained (GEO eq. 4, a ratio "
                "of means), Fieller's interval, undefined when the baseline mean is within its margin of 0"
            )
            tests = "; ".join(
                f"{e}: {t}"
                for e, t in self.summary.drop_duplicates("estimand")[["estimand", "test"]].itertuples(index=False)
            )
            lines.append(
                f"estimand and test ({first['alternative']}): {tests}; {zero}; {corr}-adjusted p within {fam_text}; "
                f"better / worse when adjusted p < {o['alpha']:g} and the estimate's whole interval is on that side of 0; "
                "mixed when the mean and the rank test disagree; effect r = matched-pairs rank-biserial (−1..1), "
                "Cohen's d_z in the exports"
            )
        if o["mode"] == "cseo":
            lines.append(
                "C-SEO Bench mode: one-sided Wilcoxon (greater), losses flagged by the reverse one-sided test, zero "
                "differences dropped by the test as scipy's default does, Holm within each domain × metric × "
                "adopter rate across strategies, SD with ddof = 0 (np.std)"
            )
        mde = self.mde_by_metric()
        if mde:
            lines.append(
                f"smallest change this run detects with {o['power']:.0%} power (n={p['n_queries']}, observed spread, "
                "the row's own test at alpha / its family size): "
                + ", ".join(f"{m} ±{fmt_num(v)}" for m, v in mde.items())
                + " — true effects below that are likely missed"
            )
        lines.extend(self.calibration_messages())
        lines.extend(self.notes)
        return lines

    def calibration_messages(self) -> list[str]:
        if self.calibration is None or self.calibration.empty:
            return []
        cal = self.calibration
        rows = cal[cal["comparison"] == "all"] if (cal["comparison"] == "all").any() else cal
        return [str(m) for m in rows["message"]]

    def calibration_warning(self) -> bool:
        return bool(self.calibration is not None and not self.calibration.empty and self.calibration["warning"].any())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: options, provenance, summary and calibration records (NaN as null), method lines."""
        return {
            "run": self.run_id,
            "options": self.options,
            "provenance": self.provenance,
            "summary": _records(self.summary),
            "calibration": _records(self.calibration),
            "engine_calibration": None if self.engine is None else self.engine.to_dict(),
            "method": self.method_lines(),
        }


def _records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    if df is None or df.empty:
        return []
    records: list[dict[str, Any]] = json.loads(df.to_json(orient="records", double_precision=10))
    return records


def _provenance(run: Run, data: RunData) -> dict[str, Any]:
    meta = run.meta
    cfg = meta.get("config") or {}
    engine = meta.get("engine") or cfg.get("engine") or {}
    bench = meta.get("bench") or {}
    prompt_version = engine.get("prompt_version")
    if data.n_rows and data.first_answer_id is not None:
        # The engine may resolve "auto" per model; the answers record the version actually used.
        ans = run.answer(data.first_answer_id)
        if ans is not None and ans.prompt_version:
            prompt_version = (
                ans.prompt_version
                if prompt_version in (None, ans.prompt_version)
                else f"{prompt_version} → {ans.prompt_version}"
            )
    return {
        "run_id": run.id,
        "status": meta.get("status", "?"),
        "planned_cells": meta.get("planned_cells"),
        "cells": run.counts()["cells"],
        "model": cfg.get("model", "?"),
        "rewrite_model": cfg.get("rewrite_model", "?"),
        "attribution": meta.get("attribution") or engine.get("attribution", "?"),
        "order": engine.get("order", "?"),
        "k": engine.get("k", cfg.get("k", "?")),
        "samples": engine.get("samples", "?"),
        "temperature": engine.get("temperature"),
        "max_tokens": engine.get("max_tokens"),
        "source_budget_chars": engine.get("source_budget_chars"),
        "pawc_variant": engine.get("pawc_variant"),
        "prompt_version": prompt_version,
        "overlap_threshold": engine.get("overlap_threshold"),
        "seeds": list(cfg.get("seeds") or []),
        "rates": list(cfg.get("rates") or []),
        "strategies": list(cfg.get("strategies") or []),
        "strategy_info": meta.get("strategies") or {},
        "n_queries": data.n_queries,
        "bench_name": bench.get("name", cfg.get("bench", "?")),
        "bench_source": bench.get("source", cfg.get("bench", "?")),
        "bench_format": bench.get("format", "?"),
        "bench_items": bench.get("items"),
        "bench_skipped": bench.get("skipped") or [],
        "bench_notes": bench.get("notes") or [],
        "domains": data.domains,
        "versions": meta.get("versions") or {},
        "command": meta.get("command", ""),
        "created_at": meta.get("created_at"),
        "finished_at": meta.get("finished_at"),
        "usage": meta.get("usage") or {},
        "rewrite_seed": cfg.get("rewrite_seed"),
    }


def _underlying(metrics: Sequence[str], comparisons: Sequence[str]) -> list[str]:
    """The stored metrics behind ``metrics``: delta_rank is delta_rank (net) and delta_rank_adv (advantage)."""
    underlying: list[str] = []
    for m in metrics:
        if m == "delta_rank":
            if "net" in comparisons:
                underlying.append("delta_rank")
            if "advantage" in comparisons:
                underlying.append(_ADV)
        else:
            underlying.append(m)
    return underlying


def _summarize_run(
    data: RunData,
    metrics: Sequence[str],
    *,
    comparisons: Sequence[str],
    hib: Mapping[str, bool],
    strategy_order: Sequence[str],
    by: str | None = None,
    **kw: Any,
) -> pd.DataFrame:
    """summarize() with delta_rank as one metric in both comparisons, corrected in one family."""
    underlying = _underlying(metrics, comparisons)
    units = data.units(by_rank=by == "orig_rank")
    if _ADV in underlying:
        # delta_rank_adv is already "treated vs rivals": as an ordinary metric whose rivals value is 0,
        # summarize's advantage comparison yields exactly it (base rows stay NaN: no net comparison).
        means = units.means.copy()
        means.loc[means["condition"] == "rivals", _ADV] = 0.0
        units = replace(units, means=means)
    out = summarize(
        units, underlying, comparisons=comparisons, higher_is_better=hib, paired_metrics=["delta_rank"], by=by, **kw
    )
    # Drop the undefined halves (Δrank vs rivals rows / the adv metric vs base): they have no p-value
    # and so never counted in any correction family.
    undefined = ((out["metric"] == "delta_rank") & (out["comparison"] == "advantage")) | (
        (out["metric"] == _ADV) & (out["comparison"] == "net")
    )
    out = out[~undefined].copy()
    out.loc[out["metric"] == _ADV, "family"] = out.loc[out["metric"] == _ADV, "family"].str.replace(_ADV, "delta_rank")
    out.loc[out["metric"] == _ADV, "metric"] = "delta_rank"
    m_order = {m: i for i, m in enumerate(metrics)}
    c_order = {c: i for i, c in enumerate(comparisons)}
    s_order = {s: i for i, s in enumerate(strategy_order)}
    out = out.assign(
        _m=out["metric"].map(m_order),
        _c=out["comparison"].map(c_order),
        _s=out["strategy"].map(lambda s: s_order.get(s, len(s_order))),
    ).sort_values(["_m", "_c", "_s", "strategy", "rate", "group"], kind="mergesort")
    return pd.DataFrame(out.drop(columns=["_m", "_c", "_s"]).reset_index(drop=True))


def run_stats(
    run: Run,
    *,
    metrics: str | Sequence[str] | None = None,
    comparisons: str | Sequence[str] = ("advantage", "net"),
    family: str | None = None,
    correction: str = "holm",
    mode: str = "default",
    by: str | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_boot: int = 2000,
    ci: str = "t",
    seed: int = 0,
    rows: pd.DataFrame | None = None,
    estimand: str | None = None,
) -> StatsResult:
    """The statistics of a run: what ``geoaudit stats RUN`` prints and exports.

    ``metrics`` (names or a comma-separated string; default :data:`DEFAULT_METRICS`) are tested for
    every strategy x adopter rate, in each of ``comparisons`` ("advantage", "net", or "both"), with
    :func:`geoaudit.stats.summarize` (paired per query; each metric's ``estimand`` - "mean", the
    default, or "pseudomedian", C-SEO mode's - with the interval its test inverts and the other test
    as a check; Holm/BH within ``family``; ``mode="cseo"`` for C-SEO Bench's one-sided protocol)
    using the run's own metric directions. ``by`` ("domain", "tag", "orig_rank") splits every row into groups.
    ``delta_rank`` is reported as one metric: advantage from the stored treated-vs-rivals Δrank,
    net from the treated-vs-base Δrank (C-SEO Bench's value). When the run contains ``identity``
    its A/A rejection rate is in ``calibration``.

    Raises:
        InputError: the run has no rows yet, or an unknown metric/comparison/option was given.
    """

    if isinstance(comparisons, str):
        comparisons = (
            list(COMPARISONS) if comparisons == "both" else [c.strip() for c in comparisons.split(",") if c.strip()]
        )
    comparisons = list(comparisons)
    for c in comparisons:
        if c not in COMPARISONS:
            raise InputError(f"unknown comparison {c!r}", hint="use advantage, net or both")
    if not comparisons:
        raise InputError("no comparison given", hint="use advantage, net or both")
    names = _parse_metrics(metrics, run_default_metrics(run.meta))
    # What the summary tests, and what the report's breakdowns (the first metric's advantage) may.
    needed = _underlying(names, comparisons)
    optional = [m for m in _underlying(names[:1], ["advantage"]) if m not in needed]
    data = RunData.load(run, needed, optional) if rows is None else RunData.from_rows(run, rows, needed, optional)
    if not data.n_rows:
        raise InputError(
            f"run {run.id} has no result rows yet",
            hint=f"run or resume its simulation first (see `geoaudit runs show {run.id}`)",
        )
    meta = run.meta
    hib = {**directions(), **(meta.get("higher_is_better") or {})}
    prov = _provenance(run, data)
    # The run's own tests and the controls' tests on the primary metric share every option.
    shared: dict[str, Any] = dict(
        hib=hib,
        strategy_order=prov["strategies"],
        family=family,
        correction=correction,
        alpha=alpha,
        power=power,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        mode=mode,
        estimand=estimand,
    )
    summary = _summarize_run(data, names, comparisons=comparisons, by=by, **shared)
    if summary.empty:
        raise InputError(
            f"run {run.id} has no treated rows to compare yet ({prov['cells']} of {prov['planned_cells']} cells done)",
            hint="resume the run with the same `geoaudit simulate` command",
        )
    cal = (
        calibration(summary, alpha) if "identity" in set(summary["strategy"]) else calibration(summary.iloc[0:0], alpha)
    )
    notes = []
    if "identity" in prov["strategies"] and cal.empty:
        ident = summary[summary["strategy"] == "identity"]
        if len(ident) and (ident["n_nonzero"] == 0).all():
            notes.append(
                "A/A control (identity): every identity delta is exactly 0 - the same input gave the same reading, "
                "so no test could reject falsely here; the false-positive rate on noisy (sampled) metrics is "
                "checked when answers are sampled in every condition"
            )
        else:
            notes.append(
                "A/A control (identity): no testable rows (too few non-zero deltas), so the tests' false-positive "
                "rate could not be checked on this run"
            )
    for strategy, (failed, total) in _target_rewrite_failures(run).items():
        if failed:
            notes.append(
                f"{strategy}: {failed} of {total} rewrites of your page failed the guards; the original page "
                "was used there, so those queries measure sampling noise, not the strategy"
            )
    if prov["status"] != "complete":
        notes.append(
            f"the run is {prov['status']}: {prov['cells']} of {prov['planned_cells']} cells done; numbers cover "
            "only the finished cells (re-run the simulate command to complete it)"
        )
    options = {
        # The family summarize used (its defaults: the whole run, or per domain in C-SEO mode).
        "metrics": names,
        "comparisons": comparisons,
        "family": family or ("cseo" if mode == "cseo" else "run"),
        "correction": correction,
        "mode": mode,
        "by": by,
        "alpha": alpha,
        "power": power,
        "n_boot": n_boot,
        "ci": ci,
        "seed": seed,
        "estimand": estimand or ("pseudomedian" if mode == "cseo" else "mean"),
    }
    result = StatsResult(run_id=run.id, summary=summary, calibration=cal, options=options, provenance=prov, notes=notes)
    # The controls are read on the run's declared primary metric, whatever metrics were asked for.
    primary = str(meta.get("primary") or names[0])
    controls = summary
    if (
        primary not in set(summary["metric"])
        and primary in known_metrics()
        and {"rank", "identity"} & set(prov["strategies"])
    ):
        primary_data = (
            RunData.load(run, _underlying([primary], list(COMPARISONS)))
            if rows is None
            else (RunData.from_rows(run, rows, _underlying([primary], list(COMPARISONS))))
        )
        controls = _summarize_run(primary_data, [primary], comparisons=list(COMPARISONS), by=None, **shared)
    result.engine = engine_calibration(run, result, data.base_rows, controls=controls, primary=primary)
    result.data = data
    return result


def breakdown_summary(result: StatsResult, metric: str, by: str, data: RunData | None = None) -> pd.DataFrame:
    """``metric``'s advantage rows split ``by`` domain or orig_rank, each group its own correction family,
    with the options of ``result``, from ``data`` (default: what ``result`` was computed from). The
    same rows as ``run_stats(run, metrics=[metric], comparisons=["advantage"], by=by, family="group",
    ...)`` without reading the run again: what the report's breakdowns show.

    Raises:
        InputError: nothing to compare (as :func:`run_stats`).
    """
    o = result.options
    data = data or result.data
    if data is None:
        raise InputError("this StatsResult carries no run data; compute it with run_stats")
    out = _summarize_run(
        data,
        [metric],
        comparisons=["advantage"],
        hib=_run_directions(data.run),
        strategy_order=result.provenance["strategies"],
        family="group",
        by=by,
        correction=o["correction"],
        alpha=o["alpha"],
        power=o["power"],
        n_boot=o["n_boot"],
        ci=o["ci"],
        seed=o["seed"],
        mode="default" if o["mode"] == "default" else "cseo",
        estimand=o.get("estimand"),
    )
    if out.empty:
        raise InputError(f"run {result.run_id} has no treated rows to compare yet")
    return out


def _run_directions(run: Run | None) -> dict[str, bool]:
    return {**directions(), **((run.meta.get("higher_is_better") if run is not None else None) or {})}


def _target_rewrite_failures(run: Run) -> dict[str, tuple[int, int]]:
    """Per strategy: (failed, total) rewrites of the target pages stored with the run."""
    out: dict[str, tuple[int, int]] = {}
    for rec in run.rewrite_counts():
        if rec["is_target"]:
            failed, total = out.get(rec["strategy"], (0, 0))
            out[rec["strategy"]] = (failed + rec["n"] * (rec["status"] == "failed"), total + rec["n"])
    return out


def write_stats(result: StatsResult, path: Path | str, fmt: str | None = None) -> Path:
    """Write the summary table as csv, parquet or json (by ``fmt`` or the file's suffix), atomically."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "csv").lower()
    if fmt not in ("csv", "parquet", "json"):
        raise InputError(f"unknown export format {fmt!r}", hint="use csv, parquet or json")
    with atomic_path(path) as tmp:
        if fmt == "csv":
            result.summary.to_csv(tmp, index=False)
        elif fmt == "parquet":
            result.summary.to_parquet(tmp, index=False)
        else:
            tmp.write_text(json.dumps(result.to_dict(), indent=1, default=str), encoding="utf-8")
    return path


# ============================================================================ engine calibration


@dataclass
class Control:
    """One control of the instrument: what was expected, what came out, and whether it held."""

    name: str
    expectation: str
    result: str
    passed: bool | None  # None: not run (the strategy was not in the run)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "expectation": self.expectation, "result": self.result, "passed": self.passed}


@dataclass
class EngineCalibration:
    """The engine's own figures, shown before any strategy's verdict: how far to trust this engine.

    Attributes:
        model: the engine model; stages: what it measured; primary: the declared primary metric.
        answers: sampled answers read (base condition, or all conditions).
        sentences: answer sentences with content words among them.
        attributable: share of those sentences attributed to a shown source (the run's attribution mode).
        unsupported: share with less than a third of their content words in any shown source
            (:data:`geoaudit.citations.UNSUPPORTED_BELOW`): likely invented.
        selection_mass: mean probability that the next token after the citation prefill is a shown
            source's number (base condition): how decisively the model was about to cite.
        controls: positive (rank), negative (identity) and congestion controls from this run.
    """

    model: str
    stages: list[str]
    primary: str
    attribution: str
    answers: int = 0
    sentences: int = 0
    attributable: float = math.nan
    unsupported: float = math.nan
    selection_mass: float = math.nan
    controls: list[Control] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The calibration in plain lines (terminal and report)."""
        out = [
            f"engine {self.model}: stages {', '.join(self.stages) or '?'}; primary metric declared before the run: "
            f"{self.primary}"
        ]
        if self.answers:
            out.append(
                f"answers: {self.answers} read ({self.sentences} sentences); {fmt_pct(self.attributable, signed=False)} of "
                f"sentences attributable to a source ({self.attribution} attribution), "
                f"{fmt_pct(self.unsupported, signed=False)} unsupported by every source (likely invented)"
            )
        if not is_missing(self.selection_mass):
            out.append(
                f"selection reading: {fmt_pct(self.selection_mass, signed=False)} of the next-token probability goes to "
                "a shown source's number on average (base condition)"
            )
        for c in self.controls:
            mark = "not run" if c.passed is None else ("passed" if c.passed else "FAILED")
            out.append(f"{c.name} control [{mark}]: expected {c.expectation}; {c.result}")
        return out

    def failed(self) -> list[Control]:
        return [c for c in self.controls if c.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stages": self.stages,
            "primary": self.primary,
            "attribution": self.attribution,
            "answers": self.answers,
            "sentences": self.sentences,
            "attributable": None if is_missing(self.attributable) else self.attributable,
            "unsupported": None if is_missing(self.unsupported) else self.unsupported,
            "selection_mass": None if is_missing(self.selection_mass) else self.selection_mass,
            "controls": [c.to_dict() for c in self.controls],
            "lines": self.lines(),
        }


def _row_text(r: Mapping[str, Any]) -> str:
    return (
        f"{r['estimand']} Δ {fmt_num(r['estimate'], signed=True)} ({fmt_level(r['ci_level'])} CI "
        f"{fmt_ci(r['estimate_ci_low'], r['estimate_ci_high'])}), n={int(r['n'])}, adjusted p "
        f"{fmt_p(r['p_holm'] if r['correction'] == 'holm' else r['p_bh'])} in a family of {int(r['family_size'])} "
        f"-> {r['verdict']}"
    )


def engine_calibration(
    run: Run,
    stats: StatsResult,
    rows: pd.DataFrame,
    *,
    controls: pd.DataFrame | None = None,
    primary: str | None = None,
) -> EngineCalibration:
    """Read the engine's calibration off a run: answer support, selection mass and the three controls.

    * positive control: ``rank`` (the target moved to the top of the sources) at 0 % adopters must
      significantly raise the primary metric (after the run's correction): position bias is among
      the most replicated effects in LLM answers (C-SEO Bench: the one lever that works);
    * negative control: ``identity`` (nothing changes) must reject nothing after correction;
    * congestion: rank's net gain when every competitor also moves up (100 %) must be smaller than
      when nobody else does (0 %): the zero-sum nature C-SEO Bench reports.
    """
    from geoaudit.citations import Sentence, support_shares

    meta = run.meta
    prov = stats.provenance
    primary = primary or str(meta.get("primary") or stats.options["metrics"][0])
    cal = EngineCalibration(
        model=str(prov.get("model", "?")),
        stages=list(meta.get("stages") or []),
        primary=primary,
        attribution=str(prov.get("attribution", "?")),
    )
    base = rows[rows["condition"] == "base"]
    sentences: list[Sentence] = []
    ids = [a for a in base["answer_id"].dropna().unique()] if "answer_id" in base else []
    samples = run.answer_samples([str(a) for a in ids])
    for answer_id in ids:
        found = samples.get(str(answer_id))
        if found is not None:
            cal.answers += len(found)
            for sample in found:
                sentences += sample.sentences
    if sentences:
        shares = support_shares(sentences)
        cal.sentences = int(shares["sentences"])
        cal.attributable, cal.unsupported = float(shares["attributable"]), float(shares["unsupported"])
    if "selection_mass" in base and base["selection_mass"].notna().any():
        cal.selection_mass = float(base["selection_mass"].mean())

    summary = stats.summary if controls is None else controls
    strategies = set(prov.get("strategies") or [])
    pos = summary[
        (summary["strategy"] == "rank")
        & (summary["metric"] == primary)
        & (summary["comparison"] == "advantage")
        & (summary["rate"] == 0.0)
    ]
    if "rank" not in strategies or pos.empty:
        cal.controls.append(
            Control(
                "positive",
                f"rank at 0 % adopters significantly raises {primary}",
                "rank at 0 % was not in this run",
                None,
            )
        )
    else:
        r = pos.iloc[0]
        cal.controls.append(
            Control(
                "positive",
                f"rank at 0 % adopters significantly raises {primary}",
                _row_text(r),
                bool(r["verdict"] == "better"),
            )
        )
    ident = summary[summary["strategy"] == "identity"]
    if "identity" not in strategies or ident.empty:
        cal.controls.append(Control("negative", "identity rejects nothing", "identity was not in this run", None))
    else:
        rejected = ident[ident["significant"].astype(bool)]
        tested = int(ident["p_value"].notna().sum())
        zero = int((ident["n_nonzero"] == 0).sum()) if "n_nonzero" in ident else 0
        cal.controls.append(
            Control(
                "negative",
                "identity rejects nothing after correction",
                f"{len(rejected)} of {len(ident)} identity rows significant ({tested} tested, {zero} with every delta "
                "exactly 0: the same input gave the same reading)",
                len(rejected) == 0,
            )
        )
    net = summary[(summary["strategy"] == "rank") & (summary["metric"] == primary) & (summary["comparison"] == "net")]
    rates = sorted(float(x) for x in net["rate"].dropna().unique())
    if "rank" not in strategies or len(rates) < 2 or rates[0] != 0.0:
        cal.controls.append(
            Control(
                "congestion",
                "rank's net gain shrinks as competitors adopt",
                "needs rank at 0 % and a higher adopter rate",
                None,
            )
        )
    else:
        lo = net[net["rate"] == rates[0]].iloc[0]
        hi = net[net["rate"] == rates[-1]].iloc[0]
        cal.controls.append(
            Control(
                "congestion",
                f"rank's net gain at {fmt_rate(rates[-1])} adopters below its gain at 0 %",
                f"net Δ at 0 %: {fmt_num(lo['mean_delta'], signed=True)}; at {fmt_rate(rates[-1])}: "
                f"{fmt_num(hi['mean_delta'], signed=True)}",
                bool(hi["mean_delta"] < lo["mean_delta"]),
            )
        )
    return cal
