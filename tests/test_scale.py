"""The client at scale: slot priority, worker processes, replicas behind litellm's Router, a
simulation that keeps its slots busy, and a finished run that re-runs without loading anything.

Every test runs against real local HTTP servers (FakeOpenAIServer) and real SQLite; none asserts
a duration (speed is measured by benches/perf/bench_gateway.py, bench_simulate.py, bench_endpoints.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from test_simulate import citing_responder, write_bench

from geoaudit.config import Settings, load_settings
from geoaudit.engine import EngineConfig
from geoaudit.errors import ConfigError
from geoaudit.llm import Gateway, LLMRequest, Slots, resolve_endpoints
from geoaudit.simulate import Simulation, SimulationConfig
from geoaudit.testing import FakeOpenAIServer, Reply, fake_settings, last_user_message


def _config(bench: Path, **kw: object) -> SimulationConfig:
    return SimulationConfig(
        bench=str(bench),
        strategies=kw.pop("strategies", ("identity", "fluency")),  # type: ignore[arg-type]
        rates=kw.pop("rates", (0.0, 1.0)),
        seeds=(0,),  # type: ignore[arg-type]
        engine=EngineConfig(samples=1, attribution="citations"),
        **kw,  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------- slots


def test_slots_go_to_waiters_by_priority_then_arrival() -> None:
    async def main() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        await slots.acquire()

        async def waiter(name: str, priority: int) -> None:
            async with slots.hold(priority):
                order.append(name)

        tasks = [
            asyncio.ensure_future(waiter(n, p))
            for n, p in (("answer-1", 1), ("answer-2", 1), ("rewrite-1", 0), ("answer-3", 1), ("rewrite-2", 0))
        ]
        while len(slots._waiters) < 5:
            await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*tasks)
        assert slots.in_use == 0
        return order

    assert asyncio.run(main()) == ["rewrite-1", "rewrite-2", "answer-1", "answer-2", "answer-3"]


def test_a_cancelled_waiter_loses_no_slot() -> None:
    async def main() -> int:
        slots = Slots(2)
        await slots.acquire()
        await slots.acquire()
        waiting = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # hands the slot to the waiter...
        waiting.cancel()  # ...which is cancelled before it runs: the slot must come back
        await asyncio.gather(waiting, return_exceptions=True)
        slots.release()
        await asyncio.wait_for(slots.acquire(), 1)
        await asyncio.wait_for(slots.acquire(), 1)
        return slots.in_use

    assert asyncio.run(main()) == 2


def test_queued_rewrites_reach_the_endpoint_before_queued_answers(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    gate = threading.Event()
    seen: list[str] = []

    def respond(req: dict) -> str:
        text = last_user_message(req)
        seen.append(text)
        if text == "first":
            gate.wait(30)
        return "ok"

    fake_server.responder = respond
    gw = Gateway(fake_settings(fake_server, tmp_path, concurrency=1))

    async def main() -> None:
        first = asyncio.ensure_future(gw.acomplete(LLMRequest.chat("first", purpose="answer")))
        while not seen:
            await asyncio.sleep(0.01)
        names = [("a1", "answer"), ("a2", "answer"), ("r1", "rewrite"), ("a3", "answer"), ("r2", "rewrite")]
        rest = [asyncio.ensure_future(gw.acomplete(LLMRequest.chat(n, purpose=p))) for n, p in names]
        while len(gw._semaphore(gw.model)._waiters) < len(names):
            await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(first, *rest)

    try:
        asyncio.run(main())
    finally:
        gate.set()
        gw.close()
    assert seen == ["first", "r1", "r2", "a1", "a2", "a3"]


# ----------------------------------------------------------------------------- endpoints


def test_replicas_share_the_calls_and_the_first_endpoint_is_the_identity(tmp_path: Path) -> None:
    with (
        FakeOpenAIServer(lambda r: "a", latency=0.02) as a,
        FakeOpenAIServer(lambda r: "b", latency=0.02) as b,
        FakeOpenAIServer(lambda r: "c", latency=0.02) as c,
    ):
        settings = fake_settings(a, tmp_path, replicas=(b.url, c.url), concurrency=3)
        reqs = [LLMRequest.chat(f"q{i}") for i in range(60)]
        with Gateway(settings) as gw:
            assert gw.slots == 9 and gw.api_base == a.url and gw.endpoint_id == f"openai/fake-model@{a.url}"
            out = gw.complete_many(reqs)
            assert gw.usage.calls == 60 and gw.usage.failed == 0
        served = [len(s.requests) for s in (a, b, c)]
        assert sum(served) == 60 and all(n > 0 for n in served), served
        assert {r.text for r in out} == {"a", "b", "c"}
        # The same model on its first endpoint alone: every reply is a cache hit, whichever replica gave it.
        with Gateway(fake_settings(a, tmp_path)) as alone:
            again = alone.complete_many(reqs)
            assert alone.usage.cached == 60 and [r.text for r in again] == [r.text for r in out]
        assert sum(len(s.requests) for s in (a, b, c)) == 60


def test_a_replica_failing_mid_run_is_routed_around_and_nothing_is_lost(tmp_path: Path) -> None:
    """The brief's failover check: one of two replicas answers HTTP 500 after its 5th request."""
    count = [0]
    lock = threading.Lock()

    def breaking(req: dict) -> Reply | str:
        with lock:
            count[0] += 1
            n = count[0]
        return Reply(status=500) if n > 5 else citing_responder(req)

    bench = write_bench(tmp_path / "bench.jsonl", n_items=4)
    with FakeOpenAIServer(citing_responder) as good, FakeOpenAIServer(breaking) as bad:
        settings = fake_settings(good, tmp_path / "home", replicas=(bad.url,), concurrency=4, retries=4, backoff=0.01)
        with Simulation(settings, _config(bench)) as sim:
            result = sim.run_sync()
            meta = result.run.meta
            assert result.failed_cells == 0 and meta["status"] == "complete" and meta["failed_cells"] == 0
            assert result.run.counts()["cells"] == result.planned_cells
            assert meta["usage"]["failed"] == 0 and meta["usage"]["retries"] >= 1  # the 500s were retried
            assert [d["api_base"] for d in meta["endpoints"]["engine"]["deployments"]] == [good.url, bad.url]
            assert meta["config"]["api_base"] == good.url
        assert count[0] > 5 and len(good.requests) > 0


def test_the_run_id_names_the_model_not_its_replicas(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench.jsonl", n_items=2)
    with FakeOpenAIServer() as other:
        one = Simulation(fake_settings(fake_server, tmp_path), _config(bench))
        two = Simulation(fake_settings(fake_server, tmp_path, replicas=(other.url,)), _config(bench))
        elsewhere = Simulation(fake_settings(other, tmp_path), _config(bench))
        try:
            assert one.run_id == two.run_id != elsewhere.run_id
        finally:
            for sim in (one, two, elsewhere):
                sim.close()


def test_router_files_yaml_and_toml(tmp_path: Path) -> None:
    yaml_file = tmp_path / "router.yaml"
    yaml_file.write_text(
        textwrap.dedent("""\
        model_list:
          - model_name: hosted_vllm/qwen
            litellm_params: {model: hosted_vllm/qwen, api_base: "http://127.0.0.1:9001/v1", max_parallel_requests: 32, rpm: 600}
          - model_name: hosted_vllm/qwen
            litellm_params: {model: hosted_vllm/qwen, api_base: "http://127.0.0.1:9002/v1", max_parallel_requests: 16}
        router_settings: {cooldown_time: 5}
        """)
    )
    ep = resolve_endpoints(Settings(data_dir=tmp_path, router_file=yaml_file), "hosted_vllm/qwen")
    assert ep.slots == 48 and ep.identity == "http://127.0.0.1:9001/v1" and ep.routed
    kwargs = ep.router_kwargs()
    # Unequal replicas are drawn in proportion to their slots; the gateway alone retries.
    assert (
        kwargs["routing_strategy"] == "simple-shuffle" and kwargs["num_retries"] == 0 and kwargs["cooldown_time"] == 5
    )
    model_list = ep.model_list(None)
    assert [m["litellm_params"].get("weight") for m in model_list] == [None, 16]  # the first has its rpm
    # Slots are the gateway's; litellm's own limit would answer 429 instead of waiting.
    assert not any("max_parallel_requests" in m["litellm_params"] for m in model_list)
    assert ep.for_workers(2).deployments[0].params["rpm"] == 300  # each worker's Router gets its share
    # A model the file does not list keeps its usual endpoint.
    assert not resolve_endpoints(Settings(data_dir=tmp_path, router_file=yaml_file), "openai/gpt-4o-mini").routed

    toml_file = tmp_path / "router.toml"
    toml_file.write_text(
        textwrap.dedent("""\
        [[model_list]]
        model_name = "openai/m"
        litellm_params = { model = "openai/m", api_base = "http://127.0.0.1:9001/v1" }
        [[model_list]]
        model_name = "openai/m"
        litellm_params = { model = "openai/m", api_base = "http://127.0.0.1:9002/v1" }
        """)
    )
    ep = resolve_endpoints(Settings(data_dir=tmp_path, router_file=toml_file, concurrency=5), "openai/m")
    assert ep.slots == 10 and ep.router_kwargs()["routing_strategy"] == "least-busy"

    for text, message in (
        ("model_list: []", "no model_list"),
        ("model_list: [{model_name: m}]", "needs model_name and litellm_params.model"),
        ("model_list: [{model_name: m, litellm_params: {model: m}}]\nrouter_settings: {num_retries: 3}", "retries"),
        ("model_list: [{model_name: m, litellm_params: {model: m, api_base: 'ftp://x'}}]", r"not an http\(s\) URL"),
        ("model_list: [\n", "not valid YAML"),
    ):
        yaml_file.write_text(text)
        with pytest.raises(ConfigError, match=message):
            resolve_endpoints(Settings(data_dir=tmp_path, router_file=yaml_file), "m")
    yaml_file.write_text("model_list: [{model_name: m, litellm_params: {model: m, api_base: 'http://h/v1'}}]")
    with pytest.raises(ConfigError, match="both in the router file"):
        resolve_endpoints(Settings(data_dir=tmp_path, router_file=yaml_file, api_base="http://h/v1"), "m")
    with pytest.raises(ConfigError, match="first endpoint"):
        resolve_endpoints(Settings(data_dir=tmp_path, replicas=("http://h/v1",)), "m")


def test_replicas_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GEOAUDIT_API_BASE", "http://127.0.0.1:9001/v1")
    monkeypatch.setenv("GEOAUDIT_REPLICAS", "http://127.0.0.1:9002/v1, http://127.0.0.1:9003/v1")
    monkeypatch.setenv("GEOAUDIT_WORKERS", "2")
    s = load_settings(data_dir=tmp_path)
    assert s.replicas == ("http://127.0.0.1:9002/v1", "http://127.0.0.1:9003/v1") and s.workers == 2
    with pytest.raises(ConfigError):
        Settings(data_dir=tmp_path, workers=0)


# ----------------------------------------------------------------------------- worker processes


def test_worker_processes_make_the_calls_and_a_killed_worker_loses_nothing(tmp_path: Path) -> None:
    gate = threading.Event()

    def respond(req: dict) -> str:
        gate.wait(30)
        return "answer " + last_user_message(req)

    with FakeOpenAIServer(respond) as server:
        settings = fake_settings(server, tmp_path, workers=2, concurrency=8, retries=3, backoff=0.01)
        with Gateway(settings) as gw:
            reqs = [LLMRequest.chat(f"q{i}") for i in range(40)]

            async def main() -> list[str]:
                calls = asyncio.ensure_future(gw.amap(reqs))
                while len(server.requests) < 8:  # both workers are up, all slots in flight
                    await asyncio.sleep(0.02)
                pool = gw.backend.pool  # type: ignore[attr-defined]
                assert len(pool.pids) == 2 and os.getpid() not in pool.pids
                busy = max(pool._workers, key=lambda w: len(w.pending))
                assert busy.pending
                os.kill(busy.proc.pid, signal.SIGKILL)  # a worker dies with calls in flight
                await asyncio.sleep(0.2)
                gate.set()
                return [r.text for r in await calls]

            try:
                texts = asyncio.run(main())
            finally:
                gate.set()
            assert texts == [f"answer q{i}" for i in range(40)]
            assert gw.usage.failed == 0 and gw.usage.retries >= 1 and gw.usage.calls == 40
            pool = gw.backend.pool  # type: ignore[attr-defined]
        assert pool.pids == []  # closing the gateway stopped the workers
        with Gateway(fake_settings(server, tmp_path)) as cached:  # the parent wrote every reply to the cache
            assert all(cached.is_cached(r) for r in reqs)


def test_workers_import_this_geoaudit_even_from_a_directory_holding_another(
    fake_server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "checkout" / "geoaudit"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('an older checkout')\n")
    monkeypatch.chdir(decoy.parent)  # `python -m` would put this directory first on sys.path
    with Gateway(fake_settings(fake_server, tmp_path / "home", workers=2, retries=0)) as gw:
        assert gw.complete(LLMRequest.chat("hello")).text == "ok"


# ----------------------------------------------------------------------------- the simulation's schedule


def test_rewrites_start_while_the_base_answer_is_in_flight(tmp_path: Path) -> None:
    rewrite_seen = threading.Event()
    answers_released_by_timeout: list[str] = []

    def respond(req: dict) -> str:
        prompt = last_user_message(req)
        if "Source [1]:" not in prompt:
            rewrite_seen.set()
        elif not rewrite_seen.wait(15):  # an answer is held until some rewrite has been asked for
            answers_released_by_timeout.append(prompt[:40])
        return citing_responder(req)

    bench = write_bench(tmp_path / "bench.jsonl", n_items=1)
    with FakeOpenAIServer(respond) as server:
        with Simulation(fake_settings(server, tmp_path / "home", concurrency=8), _config(bench)) as sim:
            result = sim.run_sync()
    assert result.failed_cells == 0 and answers_released_by_timeout == []


def test_a_small_window_of_cells_gives_the_same_rows(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    fake_server.responder = citing_responder
    bench = write_bench(tmp_path / "bench.jsonl", n_items=3)
    frames = []
    for name, window in (("wide", None), ("narrow", 2)):
        with Simulation(fake_settings(fake_server, tmp_path / name), _config(bench, rates=(0.0, 0.5, 1.0))) as sim:
            sim.window = window
            result = sim.run_sync()
            assert result.failed_cells == 0 and result.run.counts()["cells"] == result.planned_cells
            frames.append(result.run.rows().drop(columns=["answer_id"]))
            assert not sim._base and not sim._rewrites  # every item's shared work was let go
    assert frames[0].equals(frames[1])


def test_a_finished_run_reruns_without_importing_litellm_or_pandas(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_server.responder = citing_responder
    bench = write_bench(tmp_path / "bench.jsonl", n_items=2)
    settings = fake_settings(fake_server, tmp_path / "home")
    with Simulation(settings, _config(bench)) as sim:
        first = sim.run_sync()
        assert first.failed_cells == 0
    script = textwrap.dedent(f"""
        import json, sys
        from geoaudit.engine import EngineConfig
        from geoaudit.simulate import Simulation, SimulationConfig
        from geoaudit.testing import FakeOpenAIServer
        from geoaudit.config import Settings
        settings = Settings(model="openai/fake-model", api_base={fake_server.url!r}, api_key="test",
                            data_dir={str(tmp_path / "home")!r})
        config = SimulationConfig(bench={str(bench)!r}, strategies=("identity", "fluency"), rates=(0.0, 1.0),
                                  seeds=(0,), engine=EngineConfig(samples=1, attribution="citations"))
        with Simulation(settings, config) as sim:
            result = sim.run_sync()
            print(json.dumps([result.run.id, result.computed_cells, result.resumed_cells,
                              sorted(m for m in ("litellm", "pandas", "llama_cpp") if m in sys.modules)]))
    """)
    before = len(fake_server.requests)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert out.returncode == 0, out.stderr
    run_id, computed, resumed, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert (run_id, computed, resumed, loaded) == (first.run.id, 0, first.planned_cells, [])
    assert len(fake_server.requests) == before


def test_an_unknown_provider_still_fails_before_a_run_directory_exists(tmp_path: Path) -> None:
    from geoaudit.errors import UnknownModelError

    bench = write_bench(tmp_path / "bench.jsonl", n_items=1)
    settings = Settings(model="nosuchprovider/x", data_dir=tmp_path / "home")
    with pytest.raises(UnknownModelError):
        Simulation(settings, _config(bench))
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())


# ----------------------------------------------------------------------------- bench pages


def test_extracted_bench_pages_are_cached_and_never_stale(tmp_path: Path) -> None:
    from geoaudit.bench import PAGE_CACHE_FILE, load_bench

    root = tmp_path / "mybench"
    (root / "pages").mkdir(parents=True)
    for j in range(5):
        (root / "pages" / f"p{j}.html").write_text(
            f"<html><head><title>Page {j}</title></head><body><article><h1>Page {j}</h1>"
            f"<p>Paragraph about topic {j} with enough words to be the main content of the page.</p>"
            f"</article></body></html>"
        )
    (root / "queries.jsonl").write_text(
        json.dumps({"id": "q0", "query": "topic?", "candidates": [f"pages/p{j}.html" for j in range(5)], "target": 0})
        + "\n"
    )
    settings = Settings(data_dir=tmp_path / "home")
    plain = load_bench(root)
    first = load_bench(root, settings=settings)
    assert (tmp_path / "home" / PAGE_CACHE_FILE).is_file()
    again = load_bench(root, settings=settings)
    assert plain.items == first.items == again.items
    page = root / "pages" / "p2.html"
    page.write_text(page.read_text().replace("topic 2", "a changed topic"))
    changed = load_bench(root, settings=settings)
    assert "a changed topic" in changed.items[0].documents[2].text
    assert changed.items[0].documents[2] == load_bench(root).items[0].documents[2]


def test_cli_takes_repeated_api_base_as_replicas(tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "bench.jsonl", n_items=1)
    with FakeOpenAIServer(citing_responder) as a, FakeOpenAIServer(citing_responder) as b:
        env = {**os.environ, "GEOAUDIT_HOME": str(tmp_path / "home"), "GEOAUDIT_API_KEY": "x"}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "geoaudit",
                "simulate",
                "--bench",
                str(bench),
                "--strategies",
                "identity",
                "--adopters",
                "0,1",
                "--model",
                "openai/fake",
                "--api-base",
                a.url,
                "--api-base",
                b.url,
                "--concurrency",
                "2",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        meta = json.loads(
            (Path(summary["path"]) / "run.db").exists()
            and subprocess.run(
                [sys.executable, "-m", "geoaudit", "runs", "show", summary["run"]],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            ).stdout
        )
        assert [d["api_base"] for d in meta["endpoints"]["engine"]["deployments"]] == [a.url, b.url]
        assert meta["config"]["api_base"] == a.url and summary["status"] == "complete"
