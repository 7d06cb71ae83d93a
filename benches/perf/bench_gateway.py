"""Gateway throughput against a local OpenAI-compatible server with a fixed per-call latency.

The server runs in its own process (as a real endpoint would), serving at most ``--slots``
requests at once (a GPU server's batch slots), so the ideal is slots / latency calls/s. Prints
calls/s achieved vs that ideal, the client's CPU per call (this process plus its worker
processes), and a fully cached rerun vs the cold run. Targets (issue 16): >= 90 % of ideal at
100 ms with 32 slots; cached rerun >= 100x faster than cold.

    python benches/perf/bench_gateway.py [--calls 2000] [--slots 32] [--latency 0.1] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

from geoaudit.config import Settings
from geoaudit.llm import Gateway, LLMRequest


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--client-slots",
        type=int,
        default=None,
        help="the gateway's --concurrency (default: --slots); more keep a short queue at the server",
    )
    args = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "geoaudit.testing", "--latency", str(args.latency), "--capacity", str(args.slots)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as home:
            gw = Gateway(
                Settings(
                    model="openai/bench",
                    api_base=url,
                    api_key="x",
                    data_dir=home,
                    concurrency=args.client_slots or args.slots,
                    retries=0,
                    workers=args.workers,
                )
            )
            # Warm-up outside the timing: litellm's import, worker start-up, the HTTP connection pool.
            gw.complete_many([LLMRequest.chat(f"warm-up {i}") for i in range(2 * args.slots)])
            pids = list((getattr(gw.backend, "pool", None) and gw.backend.pool.pids) or [])  # type: ignore[attr-defined]
            reqs = [LLMRequest.chat(f"query {i}", seed=i) for i in range(args.calls)]
            parent0, workers0 = self_cpu(), sum(proc_cpu(p) for p in pids)
            srv0 = proc_cpu(server.pid)
            t0 = time.perf_counter()
            gw.complete_many(reqs)
            cold = time.perf_counter() - t0
            parent, in_workers = self_cpu() - parent0, sum(proc_cpu(p) for p in pids) - workers0
            cpu = parent + in_workers
            srv = proc_cpu(server.pid) - srv0
            t0 = time.perf_counter()
            gw.complete_many(reqs)
            warm = time.perf_counter() - t0
            gw.close()
    finally:
        server.terminate()
        server.wait()
    ideal = args.slots / args.latency
    achieved = args.calls / cold
    load = os.getloadavg()[0]
    print(
        f"calls={args.calls} slots={args.slots} gateway slots={args.client_slots or args.slots} "
        f"latency={args.latency * 1000:.0f} ms workers={args.workers} "
        f"(server in its own process, {args.slots} requests at once); load average {load:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"cold:   {cold:6.2f} s  {achieved:7.1f} calls/s  ideal {ideal:.1f} calls/s  -> {achieved / ideal:5.1%} of ideal "
        f"(target >= 90%)"
    )
    print(
        f"client CPU {cpu / args.calls * 1000:.2f} ms per call (this process {parent / args.calls * 1000:.2f} + "
        f"{len(pids)} workers {in_workers / args.calls * 1000:.2f}); server CPU {srv / args.calls * 1000:.2f} ms per call"
    )
    print(
        f"cached: {warm:6.3f} s  {args.calls / warm:7.1f} calls/s  -> {cold / warm:5.0f}x faster than cold (target >= 100x)"
    )


if __name__ == "__main__":
    main()
