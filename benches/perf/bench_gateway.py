"""Gateway throughput against a local OpenAI-compatible server with a fixed per-call latency.

The server runs in its own process (as a real endpoint would), so it does not share the GIL with
the gateway. Prints calls/s achieved vs the ideal (slots / latency), and a fully cached rerun vs
the cold run. Targets (issue #2): >= 90 % of ideal; cached rerun >= 100x faster than cold.

    python benches/perf/bench_gateway.py [--calls 400] [--slots 16] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from geoaudit.config import Settings
from geoaudit.llm import Gateway, LLMRequest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.1)
    args = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "geoaudit.testing", "--latency", str(args.latency)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as home:
            gw = Gateway(Settings(model="openai/bench", api_base=url, api_key="x", data_dir=home,
                                  concurrency=args.slots, retries=0))
            gw.complete(LLMRequest.chat("warm-up: import litellm, open the HTTP pool"))
            reqs = [LLMRequest.chat(f"query {i}", seed=i) for i in range(args.calls)]
            t0 = time.perf_counter()
            gw.complete_many(reqs)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            gw.complete_many(reqs)
            warm = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait()
    ideal = args.slots / args.latency
    achieved = args.calls / cold
    print(f"calls={args.calls} slots={args.slots} latency={args.latency * 1000:.0f} ms (server in its own process)")
    print(f"cold:   {cold:6.2f} s  {achieved:7.1f} calls/s  ideal {ideal:.1f} calls/s  -> {achieved / ideal:5.1%} of ideal (target >= 90%)")
    print(f"cached: {warm:6.3f} s  {args.calls / warm:7.1f} calls/s  -> {cold / warm:5.0f}x faster than cold (target >= 100x)")


if __name__ == "__main__":
    main()
