"""The run store (geoaudit.runs): schema, locking, statuses, usage and failed cells, over real SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geoaudit.config import Settings
from geoaudit.engine import EngineConfig
from geoaudit.errors import InputError
from geoaudit.runs import export_rows, open_run
from geoaudit.simulate import Simulation, SimulationConfig
from geoaudit.testing import FakeOpenAIServer

sys.path.insert(0, str(Path(__file__).parent))
from test_simulate import citing_responder, write_bench  # noqa: E402


def small_config(bench: Path, **kw: object) -> SimulationConfig:
    return SimulationConfig(
        bench=str(bench), strategies=kw.pop("strategies", ("identity", "rank")),  # type: ignore[arg-type]
        rates=kw.pop("rates", (0.0, 1.0)), seeds=(0,),  # type: ignore[arg-type]
        engine=EngineConfig(samples=1, attribution="citations"), **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def small_bench(tmp_path: Path) -> Path:
    return write_bench(tmp_path / "bench.jsonl", n_items=3)


def _cli(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEOAUDIT_HOME": str(home), "GEOAUDIT_RETRIES": "1", "GEOAUDIT_BACKOFF": "0.01"}
    return subprocess.run([sys.executable, "-m", "geoaudit", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_export_to_a_directory_is_a_clean_error_and_leaves_nothing_behind(
    fake_llm_settings: Settings, fake_server: FakeOpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    fake_server.responder = citing_responder
    result = Simulation(fake_llm_settings, small_config(small_bench)).run_sync()
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    with pytest.raises(InputError, match="is a directory"):
        export_rows(result.run, out_dir, "csv")
    cli = _cli("runs", "export", result.run.id, "-o", str(out_dir), home=fake_llm_settings.data_dir)
    assert cli.returncode == 2 and "is a directory" in cli.stderr and "Traceback" not in cli.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bench.jsonl", "exports", "geoaudit-home"])
    assert list(out_dir.iterdir()) == []
    # A writer that fails half-way leaves neither a partial file nor a temporary one.
    target = tmp_path / "x.parquet"
    with pytest.raises(InputError):
        export_rows(result.run, target, "xlsx")
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert export_rows(result.run, target, "parquet") == result.planned_cells
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_same_model_name_on_another_endpoint_is_another_run(
    fake_server: FakeOpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    from geoaudit.testing import fake_settings

    fake_server.responder = citing_responder
    home = tmp_path / "home"
    first = Simulation(fake_settings(fake_server, home), small_config(small_bench)).run_sync()
    with FakeOpenAIServer(lambda req: "Another server answers [2].") as other:
        second = Simulation(fake_settings(other, home), small_config(small_bench)).run_sync()
        # Before: "0 cells computed, N already done" and the first server's answers were reported.
        assert second.run.id != first.run.id and second.computed_cells == second.planned_cells
        assert len(other.requests) > 0
        assert second.run.meta["config"]["api_base"] == other.url
    answer = second.run.answer(str(second.run.rows().answer_id.iloc[0]))
    assert answer is not None and answer.samples[0].raw == "Another server answers [2]."


def test_run_ids_without_an_endpoint_are_unchanged() -> None:
    # Pinned: runs made before the endpoint entered the id must still resume (local and default endpoints).
    cfg = SimulationConfig(bench="demo", model="local/smollm2", rewrite_model="local/smollm2")
    assert cfg.run_id("fp") == "run-c888c5e01d"
    assert SimulationConfig(bench="demo", model="openai/x", rewrite_model="openai/x").run_id("fp") == "run-341a8e2443"
