"""The run store (geoaudit.runs): schema, locking, statuses, usage and failed cells, over real SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_simulate import citing_responder, write_bench

from geoaudit.config import Settings
from geoaudit.engine import EngineConfig
from geoaudit.errors import InputError
from geoaudit.runs import Cell, export_rows, open_run
from geoaudit.simulate import Simulation, SimulationConfig
from geoaudit.testing import FakeOpenAIServer


def small_config(bench: Path, **kw: object) -> SimulationConfig:
    return SimulationConfig(
        bench=str(bench),
        strategies=kw.pop("strategies", ("identity", "rank")),  # type: ignore[arg-type]
        rates=kw.pop("rates", (0.0, 1.0)),
        seeds=(0,),  # type: ignore[arg-type]
        engine=EngineConfig(samples=1, attribution="citations"),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def small_bench(tmp_path: Path) -> Path:
    return write_bench(tmp_path / "bench.jsonl", n_items=3)


def _cli(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEOAUDIT_HOME": str(home), "GEOAUDIT_RETRIES": "1", "GEOAUDIT_BACKOFF": "0.01"}
    return subprocess.run(
        [sys.executable, "-m", "geoaudit", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


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


def test_run_ids_are_stable() -> None:
    # Pinned (sim2): the same command must keep resuming the same run across releases; an endpoint
    # enters the id only when one is set. A change here needs a RUN_VERSION bump and a changelog entry.
    # Strategies and rates are explicit: the library's defaults moved to the CLI's (CHANGELOG).
    fixed = {"strategies": ("identity",), "rates": (0.0, 1.0), "answers": "all"}
    cfg = SimulationConfig(bench="demo", model="local/smollm2", rewrite_model="local/smollm2", **fixed)
    assert cfg.run_id("fp") == "run-38a6c81127"
    other = SimulationConfig(bench="demo", model="openai/x", rewrite_model="openai/x", **fixed)
    assert other.run_id("fp") == "run-de3da38af7"


# ----------------------------------------------------------------------------- schema and migration


def test_a_v1_run_with_duplicated_base_rows_is_repaired_and_stays_unique(tmp_path: Path) -> None:
    import sqlite3

    from geoaudit.engine import Answer
    from geoaudit.runs import RUN_MIGRATIONS, Run
    from geoaudit.store import connect

    run_dir = tmp_path / "run-v1"
    conn = connect(run_dir / "run.db", RUN_MIGRATIONS[:1])  # a run written by the previous version
    base = ("q0", "", None, 0, "base", 0)
    for cited in (0.0, 1.0):  # two writers: SQLite took the NULL-rate rows as distinct
        conn.execute(
            "INSERT INTO results (item, strategy, rate, seed, condition, sample, cited) VALUES (?,?,?,?,?,?,?)",
            (*base, cited),
        )
    conn.execute(
        "INSERT INTO meta VALUES ('usage', ?)",
        (json.dumps({"calls": 8, "cached": 2, "invocations": 3, "prompt_tokens": 100, "cost": 0.5}),),
    )
    conn.close()
    with Run(run_dir) as run:
        rows = run.rows()
        assert len(rows) == 1 and rows.cited.iloc[0] == 1.0  # the last written is kept
        usage = run.usage()
        assert (usage["invocations"], usage["calls"], usage["cached"], usage["cost"]) == (3, 8, 2, 0.5)
        answer = Answer(
            query="q",
            sources=[],
            samples=[],
            attribution="citations",
            prompt_version="v",
            config=EngineConfig(),
            model="m",
            seed=0,
        )
        cell = Cell("q0", "", None, 0, "base")
        assert cell.id == "q0|||0|base"  # item|strategy|rate|seed|condition
        run.save_cell(cell, answer, [{**cell._asdict(), "sample": 0, "cited": 0.5}])
        run.save_cell(cell, answer, [{**cell._asdict(), "sample": 0, "cited": 0.5}])
        assert len(run.rows()) == 1
    with sqlite3.connect(run_dir / "run.db") as raw:
        names = [r[0] for r in raw.execute("SELECT name FROM _geoaudit_migrations ORDER BY name")]
    assert names == ["run_v1", "run_v2", "run_v3"]


# ----------------------------------------------------------------------------- failed cells


def _bikes_fail(req: dict) -> str:
    from geoaudit.testing import last_user_message

    return "" if "bikes 1" in last_user_message(req) else citing_responder(req)


def test_failed_cells_are_recorded_not_scored_counted_and_retried_alone(
    fake_llm_settings: Settings, fake_server: FakeOpenAIServer, small_bench: Path
) -> None:
    fake_server.responder = _bikes_fail  # item q1's every answer is an empty reply
    with Simulation(fake_llm_settings, small_config(small_bench)) as sim:
        result = sim.run_sync()
        per_item = 1 + 2 * 2 * 2
        assert (result.planned_cells, result.failed_cells, result.computed_cells) == (
            3 * per_item,
            per_item,
            2 * per_item,
        )
        rows = result.run.rows()
        assert "q1" not in set(rows["item"]) and len(rows) == 2 * per_item  # never scored as "not cited"
        meta = result.run.meta
        assert meta["status"] == "failed" and meta["failed_cells"] == per_item
        assert "empty reply" in meta["error"] and f"{per_item} of {3 * per_item} cells failed" in meta["error"]
        failed = result.run.failed_cells()
        assert {f["item"] for f in failed} == {"q1"} and all("gave up after 4 attempts" in f["error"] for f in failed)
        assert meta["usage"]["unusable"] == 4 and meta["usage"]["failed"] == 1  # one shared base call, 4 attempts
        assert result.run.counts()["failed_cells"] == per_item
    fake_server.responder = citing_responder  # the endpoint recovers
    before = len(fake_server.requests)
    with Simulation(fake_llm_settings, small_config(small_bench)) as sim:
        again = sim.run_sync()
        assert (again.computed_cells, again.resumed_cells, again.failed_cells) == (per_item, 2 * per_item, 0)
        from geoaudit.testing import last_user_message

        assert all("bikes 1" in last_user_message(r) for r in fake_server.requests[before:])
        meta = again.run.meta
        assert meta["status"] == "complete" and meta["failed_cells"] == 0 and meta["error"] is None
        assert again.run.failed_cells() == [] and len(again.run.rows()) == 3 * per_item
        assert meta["usage"]["invocations"] == 2


def test_a_rewrite_the_backend_did_not_produce_fails_its_cells_instead_of_scoring_the_original(
    fake_llm_settings: Settings, fake_server: FakeOpenAIServer, small_bench: Path
) -> None:
    from geoaudit.testing import last_user_message

    def no_rewrites(req: dict) -> str:
        return "" if "Source [1]:" not in last_user_message(req) else citing_responder(req)

    fake_server.responder = no_rewrites
    with Simulation(fake_llm_settings, small_config(small_bench, strategies=("fluency",))) as sim:
        result = sim.run_sync()
        # Per item: base and rivals@0 need no rewrite; treated@0, rivals@1, treated@1 do.
        assert (result.failed_cells, result.computed_cells) == (3 * 3, 3 * 2)
        assert all("rewrite with fluency failed" in f["error"] for f in result.run.failed_cells())
        rows = result.run.rows()
        assert set(rows[rows.strategy == "fluency"].condition) == {"rivals"}


# ----------------------------------------------------------------------------- plan size


def test_a_huge_plan_is_refused_before_anything_is_allocated(
    fake_llm_settings: Settings, fake_server: FakeOpenAIServer, small_bench: Path
) -> None:
    from geoaudit.errors import ConfigError
    from geoaudit.simulate import parse_seeds

    with pytest.raises(ConfigError, match="100,000,000 is above the limit"):
        parse_seeds("100000000")  # before: a 100-million-element tuple, then 4 GB of cells
    cfg = SimulationConfig(bench=str(small_bench), strategies=("identity", "rank"), rates=(0.0, 1.0), seeds=(0, 1))
    with pytest.raises(ConfigError, match=r"plans 54 cells \(3 items x 2 seeds") as info:
        Simulation(fake_llm_settings, cfg, max_cells=50)
    assert info.value.hint and "--max-cells" in info.value.hint
    assert not fake_llm_settings.runs_dir.exists() and fake_server.requests == []
    with Simulation(fake_llm_settings, cfg, max_cells=54) as sim:
        assert sim.planned_cells == len(sim.cells()) == 54
        assert not sim.run_dir.exists()  # planning writes nothing; the run opens when it runs


# ----------------------------------------------------------------------------- one writer per run


def _raw_meta(run_dir: Path, key: str) -> object:
    import sqlite3

    with sqlite3.connect(run_dir / "run.db") as c:
        row = c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def test_two_identical_simulate_commands_at_once_do_not_double_the_work(small_bench: Path, tmp_path: Path) -> None:
    import signal
    import threading
    import time

    from geoaudit.runs import list_runs

    gate = threading.Event()  # holds the first process's calls, so the second one surely overlaps it

    def held(req: dict) -> str:
        gate.wait(90)
        return citing_responder(req)

    home = tmp_path / "home"
    with FakeOpenAIServer(held) as server:
        cmd = [
            sys.executable,
            "-m",
            "geoaudit",
            "simulate",
            "--bench",
            str(small_bench),
            "--strategies",
            "identity,rank",
            "--adopters",
            "0,1",
            "--model",
            "openai/fake",
            "--api-base",
            server.url,
            "--attribution",
            "citations",
            "--concurrency",
            "2",
            "--json",
        ]
        env = {**os.environ, "GEOAUDIT_HOME": str(home), "GEOAUDIT_TIMEOUT": "120"}
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.time() + 120
            while len(server.requests) < 2 and time.time() < deadline and first.poll() is None:
                time.sleep(0.1)
            assert len(server.requests) == 2, "the first process never reached the endpoint"
            (listed,) = list_runs(Settings(data_dir=home))
            assert listed["status"] == "running"
            second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
            # Before: both exited 0, the work was done twice and base rows were duplicated.
            assert second.returncode == 1, second.stderr
            assert f"run {listed['id']} is already running (pid {first.pid}" in second.stderr
            assert "Traceback" not in second.stderr and len(server.requests) == 2
            first.send_signal(signal.SIGINT)  # Ctrl-C: the run says so, and its lock is gone
            _, err = first.communicate(timeout=60)
            assert first.returncode == 130, err
        finally:
            if first.poll() is None:
                first.kill()
        run_dir = home / "runs" / listed["id"]
        assert _raw_meta(run_dir, "status") == "interrupted"
        gate.set()
        third = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
        assert third.returncode == 0, third.stderr
    summary = json.loads(third.stdout[third.stdout.index("{") :])
    per_item = 1 + 2 * 2 * 2
    assert summary["status"] == "complete" and summary["rows"] == 3 * per_item and summary["failed_cells"] == 0
    with open_run(Settings(data_dir=home), listed["id"]) as run:
        rows = run.rows()
        assert len(rows[rows.condition == "base"]) == 3  # one base row per item, never two
        assert run.meta["usage"]["invocations"] == 2  # the refused process never started one


def test_cli_simulate_exits_1_and_counts_failed_cells(
    fake_server: FakeOpenAIServer, small_bench: Path, tmp_path: Path
) -> None:
    fake_server.responder = _bikes_fail
    home = tmp_path / "home"
    out = _cli(
        "simulate",
        "--bench",
        str(small_bench),
        "--strategies",
        "identity,rank",
        "--adopters",
        "0,1",
        "--model",
        "openai/fake",
        "--api-base",
        fake_server.url,
        "--attribution",
        "citations",
        "--json",
        home=home,
    )
    per_item = 1 + 2 * 2 * 2
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"{per_item} of {3 * per_item} cells failed" in out.stderr and "retry only those" in out.stderr
    assert "27 cells = 3 items x 1 seeds" in out.stderr  # the plan is announced before any work
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    assert (summary["failed_cells"], summary["status"], summary["computed_cells"]) == (per_item, "failed", 2 * per_item)
    listed = _cli("runs", "list", "--json", home=home)
    (run,) = json.loads(listed.stdout)
    assert (run["status"], run["failed_cells"], run["cells"]) == ("failed", per_item, 2 * per_item)
    shown = json.loads(_cli("runs", "show", run["id"], home=home).stdout)
    assert shown["failed_cells"] == per_item and "empty reply" in shown["failed_cell_errors"][0]["error"]
    huge = _cli("simulate", "--bench", str(small_bench), "--seeds", "100000000", home=home, timeout=60)
    assert huge.returncode == 2 and "above the limit" in huge.stderr and "Traceback" not in huge.stderr


def test_a_simulation_closes_what_it_opened_and_frees_the_run(
    fake_llm_settings: Settings, fake_server: FakeOpenAIServer, small_bench: Path
) -> None:
    import sqlite3

    from geoaudit.runs import Run

    fake_server.responder = citing_responder
    with Simulation(fake_llm_settings, small_config(small_bench)) as sim:
        sim.run_sync()
    for conn in (sim.run.conn, sim.rewrite_store.conn, sim.gateway.cache.conn):  # type: ignore[union-attr]
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with Run(sim.run.dir) as again:
        again.acquire()  # nobody holds the lock any more
        assert again.meta["status"] == "complete"


@pytest.mark.parametrize("fault", ["only whitespace", "truncated_json", "cut", "error_body", "no_choices", "429 storm"])
def test_every_endpoint_fault_fails_cells_never_scores_them(
    fault: str, fake_llm_settings: Settings, fake_server: FakeOpenAIServer, small_bench: Path
) -> None:
    from test_llm_faults import FAULT_REPLIES

    from geoaudit.testing import last_user_message

    fake_server.responder = lambda req: (
        FAULT_REPLIES[fault] if "bikes 1" in last_user_message(req) else citing_responder(req)
    )
    with Simulation(fake_llm_settings.replace(retries=1), small_config(small_bench, rates=(1.0,))) as sim:
        result = sim.run_sync()
        per_item = 1 + 2 * 1 * 2
        assert result.failed_cells == per_item and "q1" not in set(result.run.rows()["item"])
        meta = result.run.meta
        assert meta["status"] == "failed" and meta["failed_cells"] == per_item
        assert meta["usage"]["failed"] == 1 and meta["usage"]["retries"] == 1  # one shared base call, bounded
        assert "gave up after 2 attempts" in meta["error"]
