"""The competitive simulation protocol and its resumable run store, over a real local LLM server."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from geoaudit.config import Settings
from geoaudit.engine import EngineConfig
from geoaudit.errors import ConfigError, InputError, UnknownStrategyError
from geoaudit.runs import export_rows, open_run
from geoaudit.simulate import (
    Simulation,
    SimulationConfig,
    adopters,
    parse_rates,
    parse_seeds,
)
from geoaudit.testing import FakeOpenAIServer, Reply, last_user_message

TOPICS = ["tea", "bikes", "soil", "tents", "bread", "lamps"]


def write_bench(path: Path, n_items: int = 6, k: int = 5) -> Path:
    rows = []
    for i in range(n_items):
        docs = [
            {
                "url": f"https://site{j}.example/{TOPICS[i % 6]}",
                "title": f"Page {j}",
                "text": f"Source {j} explains {TOPICS[i % 6]} item {i}. It has detail number {j} about {TOPICS[i % 6]}.",
            }
            for j in range(k)
        ]
        rows.append(
            {
                "id": f"q{i}",
                "query": f"what about {TOPICS[i % 6]} {i}?",
                "documents": docs,
                "target": (i * 2) % k,
                "domain": "home" if i % 2 else "food",
                "tags": ["t"],
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def citing_responder(req: dict) -> str:
    """A scripted engine: rewrites mark the text; answers cite rewritten sources first, then in shown order."""
    prompt = last_user_message(req)
    if "Source [1]:" not in prompt:  # a rewrite request: echo the document, marked
        return "REWRITTEN " + prompt.rsplit("Text:", 1)[-1].strip()
    blocks = re.split(r"^Source \[(\d+)\]:", prompt, flags=re.M)[1:]
    texts = {int(n): body for n, body in zip(blocks[::2], blocks[1::2])}
    order = sorted(texts, key=lambda n: ("REWRITTEN" not in texts[n], n))
    return " ".join(f"Fact {j} is stated here [{n}]." for j, n in enumerate(order[:3]))


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    return write_bench(tmp_path / "bench.jsonl")


def make_sim(settings: Settings, bench: Path, **kw) -> Simulation:
    cfg = SimulationConfig(
        bench=str(bench),
        strategies=kw.pop("strategies", ("identity", "rank", "fluency")),
        rates=kw.pop("rates", (0.0, 0.5, 1.0)),
        seeds=kw.pop("seeds", (0,)),
        engine=EngineConfig(samples=kw.pop("samples", 2), attribution="citations", k=kw.pop("k", 5)),
        **kw,
    )
    return Simulation(settings, cfg)


def test_parse_rates_and_seeds() -> None:
    assert parse_rates("1, 0,0.25,50%") == (0.0, 0.25, 0.5, 1.0)
    assert parse_seeds("3") == (0, 1, 2) and parse_seeds("4,9") == (4, 9)
    for bad in ("1.5", "-0.1", "half", ""):
        with pytest.raises(ConfigError):
            parse_rates(bad)
    with pytest.raises(ConfigError):
        SimulationConfig(bench="demo", rates=(2.0,))


def test_adopters_are_nested_and_exclude_target(bench_file: Path) -> None:
    from geoaudit.bench import load_bench

    item = load_bench(bench_file).items[1]
    shown = list(range(5))
    sets = [set(adopters(item, shown, r, seed=3)) for r in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert [len(s) for s in sets] == [0, 1, 2, 3, 4]
    assert all(a <= b for a, b in itertools.pairwise(sets))
    assert all(item.target not in s for s in sets)
    assert sets[-1] == set(shown) - {item.target}


def test_errors_before_any_work(fake_llm_settings: Settings, fake_server: FakeOpenAIServer, bench_file: Path) -> None:
    with pytest.raises(UnknownStrategyError):
        make_sim(fake_llm_settings, bench_file, strategies=("identity", "no-such-strategy"))
    with pytest.raises(InputError):
        make_sim(fake_llm_settings, bench_file, k=8)
    assert fake_server.requests == []


def test_whole_run_bookkeeping(fake_llm_settings: Settings, fake_server: FakeOpenAIServer, bench_file: Path) -> None:
    fake_server.responder = citing_responder
    sim = make_sim(fake_llm_settings, bench_file)
    result = sim.run_sync()
    df = result.run.rows()
    # 6 items x (1 base + 3 strategies x 3 rates x 2 conditions) cells x 2 samples
    assert result.planned_cells == 6 * (1 + 3 * 3 * 2)
    assert len(df) == result.planned_cells * 2
    base = df[df.condition == "base"]
    assert set(base.strategy) == {""} and base.rate.isna().all()
    # rivals at rate 0 are the base condition: same answer, no extra call
    r0 = df[(df.condition == "rivals") & (df.rate == 0.0)]
    assert set(r0.answer_id) <= set(base.answer_id)
    # adopter counts: round(a * (k-1)) rivals, +1 when treated
    for (cond, rate), n in {("rivals", 0.5): 2, ("treated", 0.5): 3, ("treated", 1.0): 5, ("treated", 0.0): 1}.items():
        assert set(df[(df.condition == cond) & (df.rate == rate)].adopters) == {n}
    # rank moves the adopting target to the top: it is shown first when it adopts alone
    ranked = df[(df.strategy == "rank") & (df.condition == "treated") & (df.rate == 0.0)]
    assert set(ranked.target_rank) == {1}
    # identity rewrites nothing, yet its answers are drawn with seeds of their own (A/A control)
    ident = df[(df.strategy == "identity") & (df.condition == "treated") & (df.rate == 0.0)]
    assert not set(ident.answer_id) & set(base.answer_id)
    recs = result.run.rewrites()
    assert {r["strategy"] for r in recs} == {"identity", "fluency"}  # rank rewrites nothing
    assert all(r["rewritten"] == r["original"] for r in recs if r["strategy"] == "identity")
    assert all(r["rewritten"].startswith("REWRITTEN") for r in recs if r["strategy"] == "fluency")
    # delta_rank exists exactly on treated rows
    assert df[df.condition == "treated"].delta_rank.notna().all()
    assert df[df.condition != "treated"].delta_rank.isna().all()
    meta = result.run.meta
    assert meta["status"] == "complete" and meta["config"]["model"] == "openai/fake-model"
    assert meta["attribution"] == "citations" and "fluency" in meta["strategies"]
    # Stats consume the rows directly.
    from geoaudit.stats import summarize

    summary = summarize(df, ["pawc", "delta_rank"], paired_metrics=["delta_rank"], n_boot=200)
    assert {"identity", "rank", "fluency"} <= set(summary.strategy)


def test_rank_strategy_gains_when_engine_cites_in_order(
    fake_llm_settings: Settings, fake_server: FakeOpenAIServer, bench_file: Path
) -> None:
    fake_server.responder = citing_responder
    result = make_sim(fake_llm_settings, bench_file, strategies=("rank",), rates=(0.0,), samples=1).run_sync()
    df = result.run.rows()
    treated = df[df.condition == "treated"].set_index("item")
    base = df[df.condition == "base"].set_index("item")
    # The scripted engine cites the first three shown sources: the target moved to position 1 is always cited.
    assert (treated.cited == 1.0).all()
    assert (treated.delta_rank >= 0).all() and (treated.delta_rank > 0).any()
    assert (treated.pawc >= base.loc[treated.index].pawc - 1e-9).all()


def test_rerun_is_complete_and_calls_nothing(
    fake_llm_settings: Settings, fake_server: FakeOpenAIServer, bench_file: Path, tmp_path: Path
) -> None:
    fake_server.responder = citing_responder
    first = make_sim(fake_llm_settings, bench_file).run_sync()
    n_calls = len(fake_server.requests)
    again = make_sim(fake_llm_settings, bench_file).run_sync()
    assert again.run.id == first.run.id and again.computed_cells == 0
    assert len(fake_server.requests) == n_calls
    out = tmp_path / "x.csv"
    n = export_rows(again.run, out, "csv")
    assert n == first.planned_cells and out.read_text().startswith("item,")


_RUNNER = textwrap.dedent(
    """
    import sys
    from geoaudit.config import Settings
    from geoaudit.engine import EngineConfig
    from geoaudit.simulate import Simulation, SimulationConfig

    settings = Settings(model="openai/fake-model", api_base=sys.argv[3], api_key="test", data_dir=sys.argv[1],
                        retries=3, backoff=0.01, timeout=10.0, concurrency=2)
    cfg = SimulationConfig(bench=sys.argv[2], strategies=("identity", "rank", "fluency"),
                           rates=(0.0, 0.5, 1.0), seeds=(0, 1),
                           engine=EngineConfig(samples=2, attribution="citations"))
    sim = Simulation(settings, cfg)
    print(sim.run_id, flush=True)
    sim.run_sync(lambda st: print("done", st.done, flush=True))
    """
)


def test_resume_after_kill_9_gives_exactly_the_uninterrupted_rows(tmp_path: Path, bench_file: Path) -> None:
    # One server for every process: the endpoint is part of the run id (the same model elsewhere is another run).
    delay = {"s": 0.02}
    with FakeOpenAIServer(lambda req: Reply(text=citing_responder(req), delay=delay["s"])) as server:
        home = tmp_path / "killed"
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(home), str(bench_file), server.url], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        deadline = time.time() + 60
        for line in proc.stdout:
            if (line.startswith("done") and int(line.split()[1]) >= 40) or time.time() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        settings = Settings(data_dir=home)
        killed = open_run(settings, run_id)
        partial = killed.counts()["cells"]
        planned = 6 * 2 * (1 + 3 * 3 * 2)
        assert 0 < partial < planned
        meta = killed.meta
        assert meta["status"] == "interrupted"  # stored "running", but no process holds the run's lock
        # The killed invocation's calls were saved with its cells: at least the fresh answers of its
        # finished base cells (2 samples each). Before, a killed invocation recorded no usage at all.
        base_done = killed.conn.execute("SELECT COUNT(*) FROM cells WHERE condition='base'").fetchone()[0]
        assert base_done > 0 and meta["usage"]["calls"] >= 2 * base_done
        killed_calls = meta["usage"]["calls"]
        killed.close()
        # Resume with the same command; then run the same thing uninterrupted elsewhere.
        delay["s"] = 0.0
        subprocess.run(
            [sys.executable, "-c", _RUNNER, str(home), str(bench_file), server.url],
            check=True,
            capture_output=True,
            timeout=120,
        )
        fresh = tmp_path / "fresh"
        subprocess.run(
            [sys.executable, "-c", _RUNNER, str(fresh), str(bench_file), server.url],
            check=True,
            capture_output=True,
            timeout=120,
        )
    keys = ["item", "strategy", "rate", "seed", "condition", "sample"]
    resumed = open_run(settings, run_id).rows().drop(columns=["answer_id"]).sort_values(keys).reset_index(drop=True)
    clean = (
        open_run(Settings(data_dir=fresh), run_id)
        .rows()
        .drop(columns=["answer_id"])
        .sort_values(keys)
        .reset_index(drop=True)
    )
    assert len(resumed) == len(clean) == planned * 2
    assert resumed.equals(clean)
    usage = open_run(settings, run_id).meta["usage"]
    assert usage["invocations"] == 2 and usage["calls"] > killed_calls


def test_cli_simulate_and_runs(fake_server: FakeOpenAIServer, bench_file: Path, tmp_path: Path) -> None:
    fake_server.responder = citing_responder
    env = {**os.environ, "GEOAUDIT_HOME": str(tmp_path / "cli-home")}
    base = [sys.executable, "-m", "geoaudit"]
    out = subprocess.run(
        base
        + [
            "simulate",
            "--bench",
            str(bench_file),
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
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout[out.stdout.index("{") :])
    assert summary["rows"] == 6 * (1 + 2 * 2 * 2)
    listed = subprocess.run(base + ["runs", "list", "--json"], capture_output=True, text=True, env=env)
    assert summary["run"] in listed.stdout
    bad = subprocess.run(
        base + ["simulate", "--bench", str(bench_file), "--adopters", "0,2"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "outside [0, 1]" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.embedded
def test_tiny_run_with_the_embedded_model(embedded_settings: Settings, tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "tiny.jsonl", n_items=2)
    cfg = SimulationConfig(
        bench=str(bench), strategies=("identity", "rank"), rates=(0.0,), engine=EngineConfig(samples=1, max_tokens=40)
    )
    result = Simulation(embedded_settings, cfg).run_sync()
    df = result.run.rows()
    assert len(df) == 2 * (1 + 2 * 2)  # base + (rivals, treated) x 2 strategies, per item
    meta = result.run.meta
    assert meta["config"]["model"] == "local/smollm2" and meta["attribution"] == "hybrid"
    assert meta["engine"]["prompt_version"] == "answer-local-v1"
    assert set(df[(df.strategy == "rank") & (df.condition == "treated")].target_rank) == {1}
    answer = result.run.answer(df.answer_id.iloc[0])
    assert answer is not None and answer.samples[0].raw.strip()
    assert meta["usage"]["calls"] >= 6


def test_bad_run_references_and_models_fail_before_any_work(tmp_path: Path, bench_file: Path) -> None:
    settings = Settings(data_dir=tmp_path / "h")
    with pytest.raises(InputError, match="not a run directory"):
        open_run(settings, str(tmp_path))
    with pytest.raises(ConfigError):
        parse_seeds("0")
    from geoaudit.errors import UnknownModelError

    cfg = SimulationConfig(bench=str(bench_file), strategies=("identity",), model="nope/x")
    with pytest.raises(UnknownModelError):
        Simulation(settings.replace(model="nope/x"), cfg)
    assert not (tmp_path / "h" / "runs").exists() or not list((tmp_path / "h" / "runs").iterdir())
