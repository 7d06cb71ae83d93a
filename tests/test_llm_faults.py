"""Faults at the LLM endpoint, as a matrix: each ends in a bounded retry then a clear failure.

Every case runs over real HTTP against :class:`geoaudit.testing.FakeOpenAIServer`. The promises: a
faulty reply is retried a bounded number of times, then raises one ``BackendError`` line; it is
never cached and never returned as an answer; the gateway's usage counts it; and once the endpoint
recovers, the same request is really asked again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geoaudit.config import Settings
from geoaudit.errors import BackendError
from geoaudit.llm import Gateway, LLMCache, LLMRequest, LLMResponse
from geoaudit.testing import FAULTS, FakeOpenAIServer, Reply

#: name -> the faulty reply, for every fault the issue lists (and a few more seen in the wild).
FAULT_REPLIES: dict[str, Reply] = {
    "empty content": Reply(text=""),
    "only whitespace": Reply(text=" \n\t "),
    **{f: Reply(text="a fine answer [1].", fault=f) for f in FAULTS},
    "429 storm": Reply(status=429, headers={"Retry-After": "0"}),
    "503": Reply(status=503),
}


@pytest.fixture
def recording_sleep() -> tuple[list[float], object]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return waits, sleep


@pytest.mark.parametrize("fault", list(FAULT_REPLIES))
def test_each_fault_is_retried_then_fails_clearly_and_is_never_cached(
    fault: str, fake_server: FakeOpenAIServer, fake_llm_settings: Settings
) -> None:
    fake_server.responder = lambda req: FAULT_REPLIES[fault]
    gw = Gateway(fake_llm_settings.replace(retries=2))
    with pytest.raises(BackendError) as info:
        gw.complete(LLMRequest.chat("what is tea?", seed=1))
    message = str(info.value)
    assert info.value.attempts == 3 and len(fake_server.requests) == 3, message
    assert "gave up after 3 attempts" in message and "\n" not in message and "openai/fake-model" in message
    assert (gw.usage.failed, gw.usage.retries, gw.usage.calls) == (1, 2, 0)
    if fault in ("empty content", "only whitespace", "null_content", "empty_choices"):
        assert gw.usage.unusable == 3 and "unusable" in gw.usage.summary()
    if fault == "429 storm":
        assert gw.usage.rate_limited == 3 and "rate-limited" in gw.usage.summary()
    assert gw.cache is not None and gw.cache.stats()["entries"] == 0
    # The endpoint recovers: the same request is asked again and its real answer returned.
    fake_server.responder = lambda req: "Tea is a drink [1]."
    again = gw.complete(LLMRequest.chat("what is tea?", seed=1))
    assert again.text == "Tea is a drink [1]." and not again.cached and len(fake_server.requests) == 4


@pytest.mark.parametrize("fault", ["empty content", "only whitespace", "truncated_json", "cut", "no_choices"])
def test_a_transient_fault_is_retried_and_the_good_reply_used(
    fault: str, fake_server: FakeOpenAIServer, fake_llm_settings: Settings
) -> None:
    replies = iter([FAULT_REPLIES[fault], FAULT_REPLIES[fault], Reply(text="Tea is a drink [1].")])
    fake_server.responder = lambda req: next(replies)
    gw = Gateway(fake_llm_settings)
    assert gw.complete(LLMRequest.chat("q")).text == "Tea is a drink [1]."
    assert gw.usage.retries == 2 and gw.usage.failed == 0
    assert Gateway(fake_llm_settings).complete(LLMRequest.chat("q")).cached  # the good reply is cached


def test_an_empty_reply_cached_by_an_older_version_is_asked_again(
    fake_server: FakeOpenAIServer, fake_llm_settings: Settings
) -> None:
    gw = Gateway(fake_llm_settings)
    request = LLMRequest.chat("what is tea?")
    assert gw.cache is not None
    gw.cache.put(gw.key(request), request, gw.model, LLMResponse(text="", model=gw.model))
    fake_server.responder = lambda req: "Tea is a drink [1]."
    resp = gw.complete(request)
    assert resp.text == "Tea is a drink [1]." and not resp.cached and len(fake_server.requests) == 1
    assert LLMCache(fake_llm_settings.cache_path).get(gw.key(request)) is not None  # now replaced


def test_a_reply_with_logprobs_but_no_text_is_usable(
    fake_server: FakeOpenAIServer, fake_llm_settings: Settings
) -> None:
    # The judge reads a score from the first token's alternatives even when the text is blank.
    fake_server.responder = lambda req: Reply(text=" ", logprobs=[{"4": -0.1, "5": -2.0}])
    resp = Gateway(fake_llm_settings).complete(LLMRequest.chat("score?", top_logprobs=2))
    assert resp.top_logprobs == [{"4": -0.1, "5": -2.0}] and len(fake_server.requests) == 1


def test_a_429_storm_is_bounded_and_honours_retry_after(
    fake_server: FakeOpenAIServer, fake_llm_settings: Settings, recording_sleep: tuple[list[float], object]
) -> None:
    waits, sleep = recording_sleep
    fake_server.responder = lambda req: Reply(status=429, headers={"Retry-After": "7"})
    gw = Gateway(fake_llm_settings.replace(retries=3, concurrency=4), sleep=sleep)  # type: ignore[arg-type]
    requests = [LLMRequest.chat(f"q{i}") for i in range(6)]
    import asyncio

    async def all_of_them() -> list[object]:
        return await asyncio.gather(*(gw.acomplete(r) for r in requests), return_exceptions=True)

    results = asyncio.run(all_of_them())
    assert all(isinstance(r, BackendError) and r.status == 429 for r in results)
    assert len(fake_server.requests) == 6 * 4  # bounded: retries + 1 attempts per call, no more
    assert len(waits) == 6 * 3 and min(waits) >= 7.0  # every wait honours the server's Retry-After
    assert gw.usage.rate_limited == 24 and gw.usage.failed == 6


def test_a_retry_after_beyond_the_cap_fails_at_once(
    fake_server: FakeOpenAIServer, fake_llm_settings: Settings, recording_sleep: tuple[list[float], object]
) -> None:
    waits, sleep = recording_sleep
    fake_server.responder = lambda req: Reply(status=429, headers={"Retry-After": "3600"})
    gw = Gateway(fake_llm_settings, sleep=sleep)  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="asks to wait 3600 s"):
        gw.complete(LLMRequest.chat("q"))
    assert len(fake_server.requests) == 1 and waits == []


def test_cli_ask_llm_fails_on_an_empty_reply_and_recovers(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "GEOAUDIT_HOME": str(tmp_path / "h"), "GEOAUDIT_RETRIES": "1", "GEOAUDIT_BACKOFF": "0.01"}
    cmd = [sys.executable, "-m", "geoaudit", "ask-llm", "hi", "--model", "openai/x", "--api-base", fake_server.url]
    fake_server.responder = lambda req: ""
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "empty reply" in bad.stderr and "Traceback" not in bad.stderr
    fake_server.responder = lambda req: "hello there"
    good = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert good.returncode == 0 and "hello there" in good.stdout
