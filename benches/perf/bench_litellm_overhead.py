"""Where litellm's CPU per call goes, and what its configuration can take off.

Sequential ``litellm.acompletion`` calls (set up as geoaudit sets litellm up) against a local
OpenAI-compatible server with no latency, in its own process; the figure is this process's CPU
time per call (so the server's CPU and the machine's load do not count, though contention still
inflates it). Two parts:

1. ``--profile``: a pyinstrument profile of the calls, its time split into what litellm does per
   call (HTTP request through the OpenAI SDK, price lookup, logging payload, ...).
2. A/B of configuration toggles, interleaved in one process over ``--rounds`` rounds (medians):
   each toggle is switched on, measured over ``--calls`` calls, switched off. ``httpx`` (litellm's
   httpx transport instead of aiohttp) is measured in a second process, since clients are cached.

    python benches/perf/bench_litellm_overhead.py [--calls 150] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: Frames whose time is one part of a call (the first match on the way down the stack wins).
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("price lookup for the response cost", ("update_response_metadata",)),
    ("success-logging payload (built with no callback set)", ("async_success_handler", "_client_async_logging_helper")),
    ("HTTP request + response (OpenAI SDK, httpx, aiohttp)", ("make_openai_chat_completion_request",)),
    ("response object conversion", ("convert_to_model_response_object",)),
    ("request set-up (logging object, params, thread hop)", ("function_setup", "run_in_executor", "completion")),
    ("waiting for the socket (idle)", ("select",)),
]


def start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "geoaudit.testing", "--latency", "0"], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def breakdown(session: Any) -> list[tuple[str, float]]:
    totals: dict[str, float] = {name: 0.0 for name, _ in PARTS}
    other = 0.0
    root = session.root_frame()

    def walk(frame: Any) -> None:
        nonlocal other
        for name, functions in PARTS:
            if frame.function in functions:
                totals[name] += frame.time
                return
        if not frame.children:
            other += frame.time
            return
        own = frame.time - sum(c.time for c in frame.children)
        other += max(own, 0.0)
        for child in frame.children:
            walk(child)

    walk(root)
    total = root.time or 1.0
    return [(name, t / total) for name, t in totals.items()] + [("everything else", other / total)]


async def calls(litellm: Any, kw: dict[str, Any], n: int, extra: dict[str, Any]) -> float:
    c0 = time.process_time()
    for i in range(n):
        await litellm.acompletion(messages=[{"role": "user", "content": f"q {i}"}], seed=i, **kw, **extra)
    return (time.process_time() - c0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)  # the httpx child process
    args = ap.parse_args()
    server, url = start_server()
    try:
        from geoaudit.llm import import_litellm

        litellm = import_litellm()
        if args.only == "httpx":
            litellm.disable_aiohttp_transport = True
        kw = dict(
            model="openai/bench", api_base=url, api_key="x", temperature=0.0, max_tokens=50, timeout=10, num_retries=0
        )
        extra: dict[str, Any] = {}

        def t_msglog(on: bool) -> None:
            litellm.turn_off_message_logging = on

        def t_price(on: bool) -> None:
            if on:
                litellm.register_model(
                    {
                        "openai/bench": {
                            "input_cost_per_token": 1e-7,
                            "output_cost_per_token": 2e-7,
                            "litellm_provider": "openai",
                            "mode": "chat",
                        }
                    }
                )
            else:
                litellm.model_cost.pop("openai/bench", None)
                litellm.model_cost.pop("bench", None)

        def t_gc(on: bool) -> None:
            if on:
                gc.collect()
                gc.freeze()
            else:
                gc.unfreeze()

        def t_tokens(on: bool) -> None:
            litellm.disable_token_counter = on

        client: list[Any] = []

        def t_client(on: bool) -> None:
            if on:
                import openai

                client[:] = client or [openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)]
                extra["client"] = client[0]
            else:
                extra.pop("client", None)

        from litellm._internal_context import is_internal_call

        tokens: list[Any] = []

        def t_internal(on: bool) -> None:
            if on:
                tokens.append(is_internal_call.set(True))
            else:
                is_internal_call.reset(tokens.pop())

        toggles: dict[str, Callable[[bool], None] | None] = {
            "baseline (geoaudit's set-up: local price map, no telemetry, no callbacks)": None,
            "litellm.turn_off_message_logging = True": t_msglog,
            "the model priced (register_model): no failed price lookup": t_price,
            "gc.freeze() after import": t_gc,
            "litellm.disable_token_counter = True": t_tokens,
            "a caller-made AsyncOpenAI client (client reuse)": t_client,
            "no success logging at all (litellm's internal-call flag; not a setting)": t_internal,
        }
        if args.only == "httpx":
            toggles = {"httpx transport (litellm.disable_aiohttp_transport = True)": None}

        async def run() -> None:
            await litellm.acompletion(messages=[{"role": "user", "content": "warm"}], **kw)
            if args.profile and not args.only:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005)
                profiler.start()
                c0 = time.process_time()
                for i in range(args.calls * 2):
                    await litellm.acompletion(messages=[{"role": "user", "content": f"p {i}"}], seed=i, **kw)
                cpu = (time.process_time() - c0) / (args.calls * 2) * 1000
                profiler.stop()
                print(f"profile of {args.calls * 2} sequential calls ({cpu:.2f} ms CPU per call under the profiler):")
                for name, share in breakdown(profiler.last_session):
                    print(f"  {share:6.1%}  {name}")
            results: dict[str, list[float]] = {k: [] for k in toggles}
            for _ in range(args.rounds):
                for name, toggle in toggles.items():
                    if toggle:
                        toggle(True)
                    try:
                        results[name].append(await calls(litellm, kw, args.calls, extra))
                    finally:
                        if toggle:
                            toggle(False)
            for name, values in results.items():
                print(f"  {statistics.median(values):5.2f} ms  (range {min(values):.2f}-{max(values):.2f})  {name}")

        if not args.only:
            print(
                f"CPU per call, median of {args.rounds} rounds of {args.calls} sequential calls; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
        asyncio.run(run())
    finally:
        server.terminate()
        server.wait()
    if not args.only:
        subprocess.run(
            [sys.executable, __file__, "--only", "httpx", "--calls", str(args.calls), "--rounds", str(args.rounds)],
            check=False,
        )


if __name__ == "__main__":
    main()
