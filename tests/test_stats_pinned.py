"""Statistics at scale must not change a number: the outputs of two small real runs, pinned.

The inputs in ``tests/fixtures/stats_pin/<run>/`` are two real runs made by fake-server simulations
(the scripted noisy engine of ``tests/test_report.py``): run ``a`` (20 queries x identity, rank,
statistics, answer-first x adopter rates 0, 0.5, 1, one seed, 2 samples, sources in the given
order) and run ``b`` (12 queries x identity, rank, key-facts x rates 0, 1, two seeds, 2 samples,
sources shuffled per seed, so the target's original rank varies within a query). Stored are their
result rows, meta, rewrite records (without the texts) and base answers; the tests rebuild a real
run store from them.

The expected outputs (``expected/``) were computed from those stores by the code *before* the
statistics were rewritten for scale (issue 16): every summary column, the A/A calibration, the
method lines, notes and engine-calibration lines of ``run_stats`` under several option sets, and
run ``a``'s HTML report. The pandas path (``summarize`` on the rows) must reproduce them bit for
bit; ``run_stats`` and the report average samples in SQLite, whose summation order may differ from
pandas' in the last bit, so floats there are compared to 1e-12 relative and everything discrete
(verdicts, counts, families) exactly.

Regenerate only when a change to these outputs is intended (and say so in the commit):
``python tests/test_stats_pinned.py --simulate`` (new input runs) or ``--expected`` (new outputs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from geoaudit.runs import Run

FIXTURES = Path(__file__).parent / "fixtures" / "stats_pin"
RUNS = ("a", "b")

#: run_stats options per pinned output; each applies to the runs listed.
CONFIGS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "default": (RUNS, {}),
    "cseo": (RUNS, {"mode": "cseo"}),
    "bca_domain": (("a",), {"ci": "bca", "n_boot": 400, "by": "domain"}),
    "studentized": (
        ("a",),
        {
            "ci": "studentized",
            "n_boot": 300,
            "comparisons": "advantage",
            "metrics": "pawc,cited,share_of_voice,first_citation_rank",
        },
    ),
    "percentile_tag": (("a",), {"ci": "percentile", "n_boot": 300, "by": "tag"}),
    "orig_rank": (RUNS, {"by": "orig_rank", "family": "group", "metrics": ["pawc"], "comparisons": ["advantage"]}),
    "domain_group": (RUNS, {"by": "domain", "family": "group", "metrics": ["pawc"], "comparisons": ["advantage"]}),
    "pseudomedian": (RUNS, {"estimand": "pseudomedian", "metrics": "pawc,cited,delta_rank"}),
    "bh_metric": (
        ("a",),
        {"correction": "bh", "family": "metric", "alpha": 0.1, "metrics": "pawc,cited,delta_rank,citation_count"},
    ),
}
# Empty cells of these columns are "" (base rows' strategy); of every other column NULL.
TEXT_COLUMNS = ("item", "domain", "tags", "strategy", "condition", "target_rewrite", "answer_id")
DISCRETE = [
    "strategy",
    "metric",
    "comparison",
    "by",
    "group",
    "status",
    "verdict",
    "reason",
    "note",
    "n",
    "n_dropped",
    "estimand",
    "ci_method",
    "ci_verified",
    "higher_is_better",
    "test",
    "alternative",
    "zero_method",
    "n_nonzero",
    "companion_test",
    "wins",
    "ties",
    "losses",
    "family",
    "family_size",
    "correction",
    "significant",
    "mode",
    "sd_ddof",
]


# ----------------------------------------------------------------------------- the input runs


def restore(name: str, root: Path) -> Run:
    """A real run store rebuilt from the fixture files of run ``name``."""
    src = FIXTURES / name
    run = Run(root / f"run-pinned-{name}")
    header = pd.read_csv(src / "results.csv", nrows=0).columns
    rows = pd.read_csv(
        src / "results.csv", keep_default_na=False, na_values={c: [""] for c in header if c not in TEXT_COLUMNS}
    )
    meta = json.loads((src / "meta.json").read_text(encoding="utf-8"))
    rewrites = pd.read_csv(src / "rewrites.csv", keep_default_na=False)
    answers = [json.loads(line) for line in (src / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    cols = list(rows.columns)
    c = run.conn
    with c:

        def value(v: Any) -> Any:
            if isinstance(v, float) and np.isnan(v):
                return None
            return v.item() if isinstance(v, np.generic) else v

        c.executemany(
            f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(value(v) for v in r) for r in rows.itertuples(index=False, name=None)],
        )
        cells = rows.drop_duplicates(["item", "strategy", "rate", "seed", "condition"])
        c.executemany(
            "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    f"{r.item}|{r.strategy}|{r.rate}|{r.seed}|{r.condition}",
                    r.item,
                    r.strategy,
                    value(r.rate),
                    int(r.seed),
                    r.condition,
                    r.answer_id,
                    "pinned",
                )
                for r in cells.itertuples(index=False)
            ],
        )
        c.executemany("INSERT INTO answers VALUES (?, ?)", [(a["answer_id"], json.dumps(a["answer"])) for a in answers])
        rw_cols = list(rewrites.columns)
        c.executemany(
            f"INSERT INTO rewrites ({', '.join(rw_cols)}) VALUES ({', '.join('?' * len(rw_cols))})",
            [tuple(value(v) for v in r) for r in rewrites.itertuples(index=False, name=None)],
        )
        for k, v in meta.items():
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))
    return run


@pytest.fixture(scope="module")
def pinned_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("pinned")
    return {name: restore(name, root) for name in RUNS}


# ----------------------------------------------------------------------------- the outputs


def outputs(run: Run, name: str) -> dict[str, Any]:
    """Every pinned output of ``run`` (its fixture name ``name``), computed by the code under test."""
    from geoaudit.analysis import run_stats

    out: dict[str, Any] = {}
    for key, (runs, options) in CONFIGS.items():
        if name not in runs:
            continue
        st = run_stats(run, **options)
        out[key] = {
            "summary": st.summary,
            "calibration": st.calibration,
            "lines": {
                "method": st.method_lines(),
                "notes": st.notes,
                "engine": st.engine.lines() if st.engine is not None else [],
            },
        }
    return out


def summarize_rows(run: Run) -> pd.DataFrame:
    """The pandas path: ``summarize`` on the long rows, as a notebook user calls it."""
    from geoaudit.metrics import directions
    from geoaudit.stats import summarize

    rows = run.rows()
    return summarize(
        rows, ["pawc", "cited", "first_citation_rank"], higher_is_better=directions(), n_boot=300, ci="bca", seed=3
    )


def report_html(run: Run) -> str:
    from geoaudit.report import build_report

    return build_report(run, n_boot=500)


def _expected_dir(name: str) -> Path:
    return FIXTURES / name / "expected"


def _assert_frames(got: pd.DataFrame, expected: pd.DataFrame, *, exact: bool, what: str) -> None:
    got = got.reset_index(drop=True)
    assert list(got.columns) == list(expected.columns), what
    assert len(got) == len(expected), what
    if exact:
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True, obj=what)
        return
    for col in expected.columns:
        e, g = expected[col], got[col]
        if col in DISCRETE or not pd.api.types.is_numeric_dtype(e) or pd.api.types.is_bool_dtype(e):
            pd.testing.assert_series_equal(g, e, check_dtype=False, check_exact=True, obj=f"{what}: {col}")
        else:
            ge, ee = g.to_numpy(float), e.to_numpy(float)
            same = (np.isnan(ge) & np.isnan(ee)) | (ge == ee) | np.isclose(ge, ee, rtol=1e-12, atol=1e-15)
            assert same.all(), (
                f"{what}: {col} differs at rows {np.flatnonzero(~same)[:5]}: {ge[~same][:5]} vs {ee[~same][:5]}"
            )


@pytest.mark.parametrize("name", RUNS)
def test_run_stats_reproduces_the_pinned_outputs(pinned_runs: dict[str, Run], name: str) -> None:
    got = outputs(pinned_runs[name], name)
    exp_dir = _expected_dir(name)
    lines = json.loads((exp_dir / "lines.json").read_text(encoding="utf-8"))
    assert sorted(got) == sorted(lines)
    for key, res in got.items():
        _assert_frames(
            res["summary"],
            pd.read_parquet(exp_dir / f"{key}.summary.parquet"),
            exact=False,
            what=f"run {name} {key} summary",
        )
        _assert_frames(
            res["calibration"],
            pd.read_parquet(exp_dir / f"{key}.calibration.parquet"),
            exact=False,
            what=f"run {name} {key} calibration",
        )
        assert res["lines"] == lines[key], f"run {name} {key} lines"


def test_summarize_on_rows_is_bit_for_bit_the_pinned_one(pinned_runs: dict[str, Run]) -> None:
    for name in RUNS:
        expected = pd.read_parquet(_expected_dir(name) / "summarize_rows.parquet")
        _assert_frames(summarize_rows(pinned_runs[name]), expected, exact=True, what=f"run {name} summarize(rows)")


def test_report_is_the_pinned_html(pinned_runs: dict[str, Run]) -> None:
    expected = (_expected_dir("a") / "report.html").read_text(encoding="utf-8")
    got = report_html(pinned_runs["a"])
    if got != expected:  # show where, not 200 kB of HTML
        at = (
            next(i for i, (x, y) in enumerate(zip(got, expected)) if x != y)
            if len(got) == len(expected) or any(x != y for x, y in zip(got, expected))
            else min(len(got), len(expected))
        )
        pytest.fail(
            f"report differs at character {at}: got {got[at - 200 : at + 200]!r}\nexpected {expected[at - 200 : at + 200]!r}"
        )


# ----------------------------------------------------------------------------- regenerating


def _simulate(name: str, work: Path) -> Run:
    from test_report import COMMAND, noisy_responder, write_hostile_bench

    from geoaudit.engine import EngineConfig
    from geoaudit.simulate import Simulation, SimulationConfig
    from geoaudit.testing import FakeOpenAIServer, fake_settings

    if name == "a":
        n_items, strategies, rates, seeds, order = (
            20,
            ("identity", "rank", "statistics", "answer-first"),
            (0.0, 0.5, 1.0),
            (0,),
            "given",
        )
    else:
        n_items, strategies, rates, seeds, order = 12, ("identity", "rank", "key-facts"), (0.0, 1.0), (0, 1), "shuffled"
    bench = write_hostile_bench(work / f"bench-{name}.jsonl", n_items=n_items)
    items = [json.loads(line) for line in bench.read_text(encoding="utf-8").splitlines()]
    for i, it in enumerate(items):  # overlapping tags, so a breakdown by tag has groups
        it["tags"] = ["t", "even" if i % 2 == 0 else "odd"] + (["third"] if i % 3 == 0 else [])
    bench.write_text("\n".join(json.dumps(it) for it in items) + "\n", encoding="utf-8")
    with FakeOpenAIServer(noisy_responder) as server:
        cfg = SimulationConfig(
            bench=f"bench-{name}.jsonl",
            strategies=strategies,
            rates=rates,
            seeds=seeds,
            engine=EngineConfig(samples=2, attribution="citations", order=order),
        )
        import os

        cwd = os.getcwd()
        os.chdir(work)  # a relative bench path: the stored meta does not name the machine's temp dir
        try:
            return Simulation(fake_settings(server, work / f"home-{name}"), cfg, command=COMMAND).run_sync().run
        finally:
            os.chdir(cwd)


def _export(run: Run, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    rows = run.rows()
    rows.to_csv(dest / "results.csv", index=False)
    meta = {k: v for k, v in run.meta.items() if k not in ("usage", "failed_cells")}
    (dest / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    rw = pd.read_sql_query(
        "SELECT doc_id, strategy, item, is_target, status, reason, flags, guards, model, key "
        "FROM rewrites ORDER BY strategy, item, doc_id",
        run.conn,
    )
    rw.to_csv(dest / "rewrites.csv", index=False)
    base_ids = rows.loc[rows["condition"] == "base", "answer_id"].drop_duplicates()
    with (dest / "answers.jsonl").open("w", encoding="utf-8") as fh:
        for a in base_ids:
            (text,) = run.conn.execute("SELECT answer FROM answers WHERE answer_id=?", (a,)).fetchone()
            fh.write(json.dumps({"answer_id": a, "answer": json.loads(text)}) + "\n")


def _write_expected(root: Path) -> None:
    for name in RUNS:
        run = restore(name, root)
        exp = _expected_dir(name)
        exp.mkdir(parents=True, exist_ok=True)
        lines = {}
        for key, res in outputs(run, name).items():
            res["summary"].to_parquet(exp / f"{key}.summary.parquet", index=False)
            res["calibration"].to_parquet(exp / f"{key}.calibration.parquet", index=False)
            lines[key] = res["lines"]
        (exp / "lines.json").write_text(json.dumps(lines, indent=1) + "\n", encoding="utf-8")
        summarize_rows(run).to_parquet(exp / "summarize_rows.parquet", index=False)
        if name == "a":
            (exp / "report.html").write_text(report_html(run), encoding="utf-8")
        run.close()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        if "--simulate" in sys.argv:
            for name in RUNS:
                run = _simulate(name, Path(tmp))
                _export(run, FIXTURES / name)
                run.close()
        if "--expected" in sys.argv or "--simulate" in sys.argv:
            _write_expected(Path(tmp) / "restored")
