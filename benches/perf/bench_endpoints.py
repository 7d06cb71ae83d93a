"""Many endpoints: one gateway over several replicas of a model (litellm's Router), each a local
server in its own process with a fixed latency and a fixed number of requests served at once.

The ideal is the sum of the replicas' capacities, servers x slots / latency calls/s. Prints the
throughput achieved and its share of that ideal (target issue 16: >= 0.9), and with ``--fail-after N`` what a replica that starts answering HTTP 500 after N requests costs
(failed calls: target 0; the gateway retries them on the other replicas).

    python benches/perf/bench_endpoints.py [--servers 3] [--slots 16] [--latency 0.5] [--calls 1500]
                                           [--workers 1] [--fail-after N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from geoaudit.config import Settings
from geoaudit.llm import Gateway, LLMRequest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument(
        "--slots", type=int, default=16, help="requests each server serves at once (= gateway slots per endpoint)"
    )
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--calls", type=int, default=1500)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--fail-after", type=int, default=None, help="the last server answers 500 after this many requests")
    args = ap.parse_args()
    procs = []
    for i in range(args.servers):
        cmd = [sys.executable, "-m", "geoaudit.testing", "--latency", str(args.latency), "--capacity", str(args.slots)]
        if args.fail_after is not None and i == args.servers - 1:
            cmd += ["--fail-after", str(args.fail_after)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    try:
        urls = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as home:
            settings = Settings(
                model="openai/bench",
                api_base=urls[0],
                replicas=tuple(urls[1:]),
                api_key="x",
                data_dir=home,
                concurrency=args.slots,
                retries=4,
                backoff=0.05,
                workers=args.workers,
            )
            gw = Gateway(settings)
            gw.complete_many([LLMRequest.chat(f"warm-up {i}") for i in range(2 * gw.slots)])
            before = gw.usage.calls
            reqs = [LLMRequest.chat(f"query {i}", seed=i) for i in range(args.calls)]
            t0 = time.perf_counter()
            out = gw.complete_many(reqs)
            wall = time.perf_counter() - t0
            usage = gw.usage
            gw.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    ideal = args.servers * args.slots / args.latency
    achieved = args.calls / wall
    print(
        f"{args.servers} replicas x {args.slots} slots, latency {args.latency * 1000:.0f} ms, {args.calls} calls, "
        f"workers {args.workers}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"wall {wall:6.2f} s  {achieved:7.1f} calls/s  ideal (sum of capacities) {ideal:.1f} calls/s -> "
        f"{achieved / ideal:5.1%} (target >= 90%)"
    )
    print(
        f"calls answered: {len(out)}, failed: {usage.failed}, retries: {usage.retries}, "
        f"model calls {usage.calls - before} (+ warm-up)"
    )
    if args.fail_after is not None:
        print(
            f"the last replica answered HTTP 500 from its request {args.fail_after + 1} on; "
            + (
                "every call was still answered (retried on the other replicas)"
                if not usage.failed
                else f"{usage.failed} calls failed"
            )
        )


if __name__ == "__main__":
    main()
