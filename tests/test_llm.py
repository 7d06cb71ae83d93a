"""The LLM gateway over real HTTP (a local OpenAI-compatible server) and with the real embedded model."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from geoaudit.config import Settings, load_settings
from geoaudit.errors import BackendError, ConfigError, UnknownModelError
from geoaudit.llm import Gateway, LLMCache, LLMRequest, cache_key
from geoaudit.testing import FakeOpenAIServer, Reply, last_user_message


def echo(req: dict) -> str:
    return "echo: " + last_user_message(req)


def test_cache_miss_then_hit_over_http(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = echo
    gw = Gateway(fake_llm_settings)
    first = gw.complete(LLMRequest.chat("hello", seed=1))
    second = gw.complete(LLMRequest.chat("hello", seed=1))
    assert first.text == second.text == "echo: hello"
    assert (first.cached, second.cached) == (False, True)
    assert len(fake_server.requests) == 1
    # The request really carried the sampling parameters, seed included.
    sent = fake_server.requests[0]
    assert sent["seed"] == 1 and sent["temperature"] == 0.0 and sent["messages"][-1]["content"] == "hello"
    # A new gateway on the same data dir reads the persisted cache.
    third = Gateway(fake_llm_settings).complete(LLMRequest.chat("hello", seed=1))
    assert third.cached and len(fake_server.requests) == 1
    assert gw.usage.calls == 1 and gw.usage.cached == 1


def test_no_cache_always_calls(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = echo
    gw = Gateway(fake_llm_settings.replace(cache=False))
    gw.complete(LLMRequest.chat("a"))
    gw.complete(LLMRequest.chat("a"))
    assert len(fake_server.requests) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 2},
        {"temperature": 0.7},
        {"max_tokens": 10},
        {"prompt_version": "v2"},
        {"top_p": 0.9},
        {"model": "openai/other"},
    ],
)
def test_cache_key_covers_every_sampling_parameter(change: dict) -> None:
    base = LLMRequest.chat("q", seed=1)
    changed = LLMRequest.chat("q", **{"seed": 1, **change})
    model = change.get("model", "openai/m")
    assert cache_key(base, "openai/m") != cache_key(changed, model)
    assert cache_key(base, "openai/m") == cache_key(LLMRequest.chat("q", seed=1), "openai/m")


def test_concurrency_bound_is_honoured(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: Reply(text="x", delay=0.15)
    gw = Gateway(fake_llm_settings.replace(concurrency=4))
    reqs = [LLMRequest.chat(f"q{i}") for i in range(16)]
    started = time.perf_counter()
    out = gw.complete_many(reqs)
    elapsed = time.perf_counter() - started
    assert len(out) == 16 and len(fake_server.requests) == 16
    assert fake_server.max_in_flight == 4
    # 16 calls / 4 slots * 0.15 s = 0.6 s ideal; sequential would be 2.4 s.
    assert elapsed < 2.0


def test_identical_concurrent_requests_share_one_call(
    fake_server: FakeOpenAIServer, fake_llm_settings: Settings
) -> None:
    fake_server.responder = lambda req: Reply(text="same", delay=0.2)
    gw = Gateway(fake_llm_settings)
    out = gw.complete_many([LLMRequest.chat("dup")] * 5)
    assert [r.text for r in out] == ["same"] * 5
    assert len(fake_server.requests) == 1
    assert gw.usage.calls == 1 and gw.usage.cached == 4


def test_retries_on_500_then_succeeds(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    replies = iter([Reply(status=500), Reply(status=503), Reply(text="finally")])
    fake_server.responder = lambda req: next(replies)
    gw = Gateway(fake_llm_settings)
    assert gw.complete(LLMRequest.chat("q")).text == "finally"
    assert len(fake_server.requests) == 3 and gw.usage.retries == 2


def test_429_retry_after_is_honoured(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    replies = iter([Reply(status=429, headers={"Retry-After": "1"}), Reply(text="ok")])
    fake_server.responder = lambda req: next(replies)
    gw = Gateway(fake_llm_settings)
    started = time.perf_counter()
    assert gw.complete(LLMRequest.chat("q")).text == "ok"
    assert time.perf_counter() - started >= 0.95


def test_clear_error_after_last_retry(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: Reply(status=500)
    gw = Gateway(fake_llm_settings.replace(retries=2))
    with pytest.raises(BackendError) as info:
        gw.complete(LLMRequest.chat("q"))
    assert info.value.attempts == 3 and len(fake_server.requests) == 3
    assert "gave up after 3 attempts" in str(info.value) and "\n" not in str(info.value)
    assert gw.usage.failed == 1
    # Nothing was cached for the failure: a healthy server is asked again.
    fake_server.responder = echo
    assert gw.complete(LLMRequest.chat("q")).text == "echo: q"


def test_timeouts_are_retried_then_fail(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: Reply(text="late", delay=1.5)
    gw = Gateway(fake_llm_settings.replace(timeout=0.3, retries=1))
    from geoaudit.llm import import_litellm

    import_litellm()  # its first import takes seconds on a busy machine; it is not what is timed here
    started = time.perf_counter()
    with pytest.raises(BackendError) as info:
        gw.complete(LLMRequest.chat("q"))
    assert info.value.attempts == 2
    assert time.perf_counter() - started < 5


def test_client_errors_are_not_retried(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: Reply(status=400)
    gw = Gateway(fake_llm_settings)
    with pytest.raises(BackendError) as info:
        gw.complete(LLMRequest.chat("q"))
    assert info.value.attempts == 1 and len(fake_server.requests) == 1


def test_usage_and_logprobs_are_reported(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: Reply(
        text="4", prompt_tokens=11, completion_tokens=1, logprobs=[{"4": -0.1, "5": -2.5}]
    )
    gw = Gateway(fake_llm_settings)
    resp = gw.complete(LLMRequest.chat("score?", top_logprobs=2))
    assert resp.top_logprobs == [{"4": -0.1, "5": -2.5}]
    assert fake_server.requests[0]["top_logprobs"] == 2
    assert (gw.usage.prompt_tokens, gw.usage.completion_tokens) == (11, 1)
    assert "11 prompt + 1 completion tokens" in gw.usage.summary()


def test_unknown_model_string_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        Gateway(Settings(data_dir=tmp_path, model="not-a-model"))


_WRITER = textwrap.dedent(
    """
    import sys
    from geoaudit.config import Settings
    from geoaudit.llm import Gateway, LLMRequest
    from geoaudit.testing import fake_settings, FakeOpenAIServer

    with FakeOpenAIServer(lambda req: "x" * 2000) as server:
        gw = Gateway(fake_settings(server, sys.argv[1], concurrency=4))
        print("ready", flush=True)
        i = 0
        while True:
            gw.complete_many([LLMRequest.chat(f"q{i}-{j}") for j in range(4)])
            i += 1
    """
)


def test_cache_survives_kill_9(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(home)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 20
        cache_file = home / "cache.db"
        while time.time() < deadline:
            time.sleep(0.3)
            if cache_file.exists():
                with sqlite3.connect(cache_file) as c:
                    try:
                        if c.execute("SELECT COUNT(*) FROM responses").fetchone()[0] >= 40:
                            break
                    except sqlite3.OperationalError:
                        pass
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    with sqlite3.connect(cache_file) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = c.execute("SELECT key, response FROM responses").fetchall()
    assert len(rows) >= 40
    for _, blob in rows:
        assert json.loads(blob)["text"] == "x" * 2000
    # The cache is usable again, and the killed run's answers are hits.
    cache = LLMCache(cache_file)
    assert cache.stats()["entries"] == len(rows)
    assert cache.get(rows[0][0]) is not None


def test_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('model = "openai/from-file"\nconcurrency = 3\ntimeout = 9\n')
    monkeypatch.setenv("GEOAUDIT_CONFIG", str(cfg))
    s = load_settings()
    assert (s.model, s.concurrency, s.timeout) == ("openai/from-file", 3, 9.0)
    monkeypatch.setenv("GEOAUDIT_CONCURRENCY", "5")
    s = load_settings()
    assert (s.model, s.concurrency) == ("openai/from-file", 5)
    s = load_settings(concurrency=7, model=None)
    assert (s.model, s.concurrency) == ("openai/from-file", 7)
    monkeypatch.setenv("GEOAUDIT_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match="GEOAUDIT_CONCURRENCY"):
        load_settings()
    monkeypatch.delenv("GEOAUDIT_CONCURRENCY")
    cfg.write_text("bogus_key = 1\n")
    with pytest.raises(ConfigError, match="bogus_key"):
        load_settings()


@pytest.mark.parametrize(
    "bad",
    [
        {"concurrency": 0},
        {"concurrency": -2},
        {"retries": -1},
        {"timeout": float("nan")},
        {"timeout": 0},
        {"timeout": -5.0},
        {"timeout": float("inf")},
        {"backoff": float("nan")},
        {"backoff": -0.1},
    ],
)
def test_settings_reject_values_that_hang_or_misbehave(tmp_path: Path, bad: dict) -> None:
    # Settings built directly (the library path) must fail at once, not when Semaphore(0) waits forever.
    with pytest.raises(ConfigError, match=next(iter(bad))):
        Settings(data_dir=tmp_path, **bad)
    with pytest.raises(ConfigError):
        Settings(data_dir=tmp_path).replace(**bad)


def test_nan_in_the_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOAUDIT_TIMEOUT", "nan")
    with pytest.raises(ConfigError, match="GEOAUDIT_TIMEOUT"):
        load_settings()


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geoaudit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_cli_help_lists_commands_quickly() -> None:
    started = time.perf_counter()
    out = _cli("--help")
    assert out.returncode == 0
    for cmd in ("models", "ask-llm", "cache"):
        assert cmd in out.stdout
    # --help must not import litellm / llama.cpp (each costs seconds).
    assert time.perf_counter() - started < 5


def test_cli_errors_are_one_line_without_traceback(fake_server: FakeOpenAIServer) -> None:
    bad = _cli("ask-llm", "hi", "--model", "nonsense")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "litellm model string" in bad.stderr
    fake_server.responder = lambda req: Reply(status=500)
    down = _cli(
        "ask-llm",
        "hi",
        "--model",
        "openai/x",
        "--api-base",
        fake_server.url,
        env={"GEOAUDIT_RETRIES": "1", "GEOAUDIT_BACKOFF": "0.01"},
    )
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert "gave up after 2 attempts" in down.stderr


def test_cli_ask_llm_against_local_server(fake_server: FakeOpenAIServer) -> None:
    fake_server.responder = echo
    out = _cli("ask-llm", "ping", "--model", "openai/x", "--api-base", fake_server.url, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["text"] == "echo: ping" and data["cached"] is False


@pytest.mark.embedded
def test_embedded_model_is_deterministic_for_a_seed(embedded_settings: Settings) -> None:
    gw = Gateway(embedded_settings.replace(cache=False))
    req = LLMRequest.chat("Name a fruit.", temperature=0.8, seed=7, max_tokens=16)
    a, b = gw.complete(req), gw.complete(req)
    assert a.text and a.text == b.text
    assert a.model == "local/smollm2" and a.prompt_tokens > 0 and a.completion_tokens > 0
    assert "cost $0 (embedded local model)" in gw.usage.summary()


@pytest.mark.embedded
def test_embedded_model_through_cli() -> None:
    out = _cli("ask-llm", "Say hello.", "--max-tokens", "12", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"] == "local/smollm2" and data["text"].strip()


def test_bad_endpoint_and_missing_local_model_fail_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api-base"):
        Gateway(Settings(data_dir=tmp_path, model="openai/x", api_base="not-a-url"))
    with pytest.raises(UnknownModelError, match="no GGUF file"):
        Gateway(Settings(data_dir=tmp_path, model="local/nowhere.gguf"))


class _InProcessModel:
    """A backend shaped like the embedded provider: one lock per model, work in a worker thread."""

    def __init__(self, seconds: float) -> None:
        import threading

        self.seconds = seconds
        self.lock = threading.Lock()
        self.inside = 0  # calls in the backend (running or waiting for the model's lock)
        self.max_inside = 0
        self.calls = 0
        self._count = threading.Lock()

    def _work(self, text: str) -> str:
        with self.lock:
            time.sleep(self.seconds)
            return "echo: " + text

    async def acomplete(self, request: LLMRequest, model: str, *, timeout: float):  # type: ignore[no-untyped-def]
        import asyncio

        from geoaudit.llm import LLMResponse

        with self._count:
            self.calls += 1
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
        try:
            text = await asyncio.to_thread(self._work, request.messages[-1][1])
        finally:
            with self._count:
                self.inside -= 1
        return LLMResponse(text=text, model=model)


def test_in_process_calls_never_queue_behind_the_model_lock_nor_time_out_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 11 #13: calls waited on the model's lock inside the timeout; timed-out threads cannot be
    # cancelled, so retries queued behind them and the load snowballed until the run died.
    # The fake model below has one lock, i.e. one llama.cpp context: the gateway must give it one slot.
    monkeypatch.setenv("GEOAUDIT_LOCAL_CONTEXTS", "1")
    model = _InProcessModel(seconds=0.25)
    settings = Settings(data_dir=tmp_path, model="local/smollm2", timeout=0.3, retries=2, backoff=0.01, concurrency=8)
    gw = Gateway(settings, backend=model)
    gw.timeout_grace = 0.0  # the remote-call grace would hide the effect on a fast test
    other = Gateway(settings, backend=model)  # a second gateway on the same model shares its one slot
    import asyncio

    async def both() -> list:
        return await asyncio.gather(
            gw.amap([LLMRequest.chat(f"q{i}") for i in range(4)]),
            other.amap([LLMRequest.chat(f"r{i}") for i in range(2)]),
        )

    first, second = asyncio.run(both())
    assert [r.text for r in first + second] == [f"echo: q{i}" for i in range(4)] + ["echo: r0", "echo: r1"]
    assert model.max_inside == 1  # nothing ever waited inside the backend
    assert model.calls == 6 and gw.usage.retries == 0 and gw.usage.failed == 0
    # A single in-process call longer than the timeout finishes: it could not be cancelled anyway.
    slow = _InProcessModel(seconds=0.6)
    gw_slow = Gateway(settings, backend=slow)
    gw_slow.timeout_grace = 0.0
    assert gw_slow.complete(LLMRequest.chat("long")).text == "echo: long"
    assert slow.calls == 1 and gw_slow.usage.retries == 0
