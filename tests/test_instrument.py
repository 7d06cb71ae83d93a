"""The embedded default as a measuring instrument (issue 12), on the real SmolLM2 model.

It must give the same reading twice (fresh data directories, and after kill -9 and resume), stay
still where nothing changed (the A/A control rejects nothing, over many seeds), and respond to what
it should respond to (moving the page to the top of the sources raises its selection share).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from geoaudit.analysis import run_stats
from geoaudit.config import Settings
from geoaudit.engine import EngineConfig
from geoaudit.runs import Run
from geoaudit.simulate import Simulation, SimulationConfig

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [
    "simulate",
    "--bench",
    "demo",
    "--limit",
    "3",
    "--strategies",
    "identity,rank,answer-first",
    "--adopters",
    "0,1",
    "--answers",
    "base",
    "--max-tokens",
    "24",
    "--source-budget",
    "300",
    "--concurrency",
    "2",
]


def _simulate(home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GEOAUDIT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "geoaudit", *COMMAND], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _rows(home: Path) -> pd.DataFrame:
    (run_dir,) = list((home / "runs").iterdir())
    run = Run(run_dir)
    try:
        return (
            run.rows()
            .drop(columns=["answer_id"])
            .sort_values(["item", "strategy", "rate", "seed", "condition", "sample"])
            .reset_index(drop=True)
        )
    finally:
        run.close()


def _cells(home: Path) -> int:
    runs = home / "runs"
    if not runs.is_dir():
        return 0
    import sqlite3

    for db in runs.glob("*/run.db"):
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0])
        except sqlite3.Error:
            return 0
    return 0


def test_same_command_same_rows_fresh_and_after_kill(tmp_path: Path) -> None:
    first = _simulate(tmp_path / "a")
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err.decode()[-2000:]

    # The same command in a fresh data directory, killed with -9 once a few cells are stored, then resumed.
    killed = _simulate(tmp_path / "b")
    deadline = time.monotonic() + 600
    while _cells(tmp_path / "b") < 3 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert killed.poll() is None, "the run finished before it could be killed; make it longer"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = _simulate(tmp_path / "b")
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert "already done" in out.decode()

    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_aa_control_rejects_nothing_over_many_seeds(tmp_path: Path) -> None:
    """Identity changes nothing, so every selection and relevance delta must be exactly 0 in every
    seed, even with the cache off (every reading recomputed, in a different order) and the sources
    shuffled per seed; the A/A rejection rate is then 0 <= alpha."""
    settings = Settings(data_dir=tmp_path / "home", cache=False, concurrency=2)
    cfg = SimulationConfig(
        bench="demo",
        limit=4,
        strategies=("identity",),
        rates=(0.0, 1.0),
        seeds=tuple(range(6)),
        engine=EngineConfig(order="shuffled", source_budget_chars=250, stages=("relevance", "selection")),
    )
    sim = Simulation(settings, cfg)
    sim.run_sync()
    rows = sim.run.rows()
    treated = rows[rows["condition"] == "treated"]
    assert len(treated) == 4 * 6 * 2
    stats = run_stats(sim.run, metrics=["selection", "relevance"])
    ident = stats.summary[stats.summary["strategy"] == "identity"]
    assert (ident["mean_delta"] == 0).all()
    assert not ident["significant"].any()
    assert stats.engine is not None
    (negative,) = [c for c in stats.engine.controls if c.name == "negative"]
    assert negative.passed is True
    sim.run.close()


def test_positive_control_rank_raises_selection(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "home", concurrency=2)
    cfg = SimulationConfig(
        bench="demo",
        limit=10,
        strategies=("identity", "rank"),
        rates=(0.0, 1.0),
        engine=EngineConfig(source_budget_chars=250, stages=("selection",)),
    )
    sim = Simulation(settings, cfg)
    sim.run_sync()
    stats = run_stats(sim.run)
    assert stats.options["metrics"][0] == "selection"
    assert stats.engine is not None
    controls = {c.name: c for c in stats.engine.controls}
    assert controls["positive"].passed is True, controls["positive"].result
    assert controls["congestion"].passed is True, controls["congestion"].result
    assert controls["negative"].passed is True, controls["negative"].result
    sim.run.close()
