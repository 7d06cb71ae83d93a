"""``geoaudit stats`` on a real run (fake LLM server over HTTP): the table, the exports, the errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import build_run, write_hostile_bench

from geoaudit.runs import Run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("stats")
    bench = write_hostile_bench(root / "bench.jsonl", n_items=16)
    return build_run(root / "home", bench, ("identity", "rank"), (0.0, 1.0), samples=1)


def _stats(run: Run, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEOAUDIT_HOME": str(run.dir.parent.parent), "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "geoaudit", "stats", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_table_says_what_is_signal_and_what_is_noise(small_run: Run) -> None:
    done = _stats(small_run, small_run.id[:9], "--n-boot", "300")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in ("pawc · advantage", "pawc · net", "cited · advantage", "delta_rank · advantage", "delta_rank · net"):
        assert title in out, title
    assert "Δ [95% CI]" in out and "p Holm" in out and "baseline → treated" in out
    # rank moves the target to the top when nobody else does: a real gain; identity is noise.
    lines = [ln for ln in out.splitlines() if ln.strip().startswith(("rank", "identity"))]
    assert any(ln.strip().startswith("rank") and "0%" in ln and "better" in ln for ln in lines)
    assert all("better" not in ln and "worse" not in ln for ln in lines if ln.strip().startswith("identity"))
    assert "rank raises pawc" in out
    # How it was obtained, the A/A calibration and the MDE are printed under the table.
    for needle in (
        "16 queries",
        "openai/fake-model",
        "attribution citations",
        "95% CI: t interval, df = non-zero pairs - 1",
        "mean: paired t-test",
        "Holm-adjusted p within the whole run",
        "A/A control (identity",
        "smallest change this run detects with 80% power",
    ):
        assert needle in out, needle
    # A narrow terminal stacks cells instead of cutting numbers off.
    narrow = _stats(small_run, small_run.id, "--n-boot", "300", "--metrics", "pawc", columns=80)
    assert narrow.returncode == 0 and "…" not in narrow.stdout
    assert max(len(ln) for ln in narrow.stdout.splitlines()) <= 80


def test_json_csv_parquet_exports_agree_with_independent_numbers(small_run: Run, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from scipy import stats as sps

    csv, parquet = tmp_path / "s.csv", tmp_path / "s.parquet"
    done = _stats(
        small_run, str(small_run.dir), "--json", "--n-boot", "300", "--csv", str(csv), "--parquet", str(parquet)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["run"] == small_run.id and data["options"]["family"] == "run"
    summary = pd.DataFrame(data["summary"])
    # 2 strategies x 2 rates x 3 metrics x 2 comparisons, delta_rank in both comparisons.
    assert len(summary) == 2 * 2 * 3 * 2
    assert set(summary.loc[summary.metric == "delta_rank", "comparison"]) == {"advantage", "net"}
    assert (summary["family_size"] == summary["wilcoxon_p"].notna().sum()).all()
    from_csv, from_parquet = pd.read_csv(csv), pd.read_parquet(parquet)
    assert len(from_csv) == len(from_parquet) == len(summary)
    assert np.allclose(from_csv["mean_delta"], summary["mean_delta"], equal_nan=True)
    assert list(from_parquet["verdict"]) == list(summary["verdict"])

    # Independently: Δrank's advantage is the stored treated-vs-rivals Δrank, per query, tested by scipy.
    rows = small_run.rows()
    for rate in (0.0, 1.0):
        t = rows[(rows.strategy == "rank") & (rows.rate == rate) & (rows.condition == "treated")]
        per_item = t.groupby("item")["delta_rank_adv"].mean()
        got = summary[
            (summary.strategy == "rank")
            & (summary.rate == rate)
            & (summary.metric == "delta_rank")
            & (summary.comparison == "advantage")
        ].iloc[0]
        assert got["n"] == len(per_item) == 16
        assert got["treated_mean"] == pytest.approx(per_item.mean()) and got["baseline_mean"] == 0
        nonzero = int((per_item != 0).sum())
        if nonzero < 5:  # too few queries moved for any test: said, not tested
            assert got["status"] == "insufficient data" and pd.isna(got["wilcoxon_p"])
        else:
            assert got["status"] == "ok"
            assert got["wilcoxon_p"] == pytest.approx(sps.wilcoxon(per_item.to_numpy(), zero_method="pratt").pvalue)
    # At 0 % adopters rank moves the target up in most queries: that row is tested.
    assert (
        summary[
            (summary.strategy == "rank")
            & (summary.rate == 0.0)
            & (summary.metric == "delta_rank")
            & (summary.comparison == "advantage")
        ].iloc[0]["status"]
        == "ok"
    )
    # pawc net: treated minus base per query.
    base = rows[rows.condition == "base"].groupby("item")["pawc"].mean()
    treated = (
        rows[(rows.strategy == "rank") & (rows.rate == 0.0) & (rows.condition == "treated")]
        .groupby("item")["pawc"]
        .mean()
    )
    got = summary[
        (summary.strategy == "rank")
        & (summary.rate == 0.0)
        & (summary.metric == "pawc")
        & (summary.comparison == "net")
    ].iloc[0]
    assert got["mean_delta"] == pytest.approx((treated - base).mean())
    assert got["delta_ci_low"] < got["mean_delta"] < got["delta_ci_high"]


def test_cseo_mode_and_breakdown(small_run: Run) -> None:
    done = _stats(small_run, small_run.id, "--mode", "cseo", "--metrics", "delta_rank", "--n-boot", "200", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    summary = data["summary"]
    # C-SEO Bench's families: one per domain x metric x comparison x adopter rate, across strategies.
    assert {r["family"] for r in summary} == {
        f"domain={d}/delta_rank/{c}/rate={r}"
        for d in ("food", "home")
        for c in ("advantage", "net")
        for r in ("0", "1")
    }
    assert all(r["family_size"] <= 2 for r in summary)  # identity and rank
    assert {r["alternative"] for r in summary} == {"greater"} and {r["zero_method"] for r in summary} == {"wilcox"}
    assert {r["estimand"] for r in summary} == {"pseudomedian"} and {r["sd_ddof"] for r in summary} == {0}
    assert {r["ci_level"] for r in summary} == {0.9}  # each bound: the one-sided 95 % bound of its test
    assert any("C-SEO Bench mode" in line for line in data["method"])
    by = _stats(
        small_run,
        small_run.id,
        "--by",
        "orig_rank",
        "--metrics",
        "pawc",
        "--comparison",
        "advantage",
        "--n-boot",
        "200",
    )
    assert by.returncode == 0, by.stderr
    assert "orig_rank" in by.stdout and "insufficient data" in by.stdout  # 4 queries per rank: too few


@pytest.mark.parametrize(
    "args, message",
    [
        (["run-does-not-exist"], "no run 'run-does-not-exist'"),
        (["{run}", "--metrics", "pawc,nonsense"], "unknown metric 'nonsense'"),
        (["{run}", "--comparison", "sideways"], "unknown comparison 'sideways'"),
        (["{run}", "--correction", "bonferroni"], "unknown correction 'bonferroni'"),
        (["{run}", "--estimand", "median"], "unknown estimand 'median'"),
        (["{run}", "--ci", "normal"], "unknown CI method 'normal'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(small_run: Run, args: list[str], message: str) -> None:
    done = _stats(small_run, *[a.format(run=small_run.id) for a in args])
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
