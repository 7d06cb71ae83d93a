"""Simulation throughput: 50 items x 3 strategies x 3 adopter rates against a local latency server.

Compares wall time with (a) the ideal, sum of call latencies / concurrency, and (b) the same workload
one call at a time, as GEO's released code runs it (measured on a subset, scaled by call count).
Targets (issue #6): >= 0.9 of ideal, >= 30x the sequential loop.

    python benches/perf/bench_simulate.py [--items 50] [--latency 0.5] [--concurrency 32]
    python benches/perf/bench_simulate.py --embedded [--items 3]   # answers/min on local/smollm2
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from geoaudit.config import Settings
from geoaudit.engine import EngineConfig
from geoaudit.llm import LLMRequest
from geoaudit.simulate import Simulation, SimulationConfig

WORDS = ("soil water roots compost nitrogen season harvest seedlings mulch drainage clay sand "
         "shade frost pests yield pruning bloom").split()
STRATEGIES = ("fluency", "statistics-grounded", "quotation-grounded")
RATES = (0.0, 0.5, 1.0)


def make_bench(path: Path, items: int, words: int) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(items):
        docs = [{"url": f"https://s{j}.example/{i}", "title": f"Garden guide {j}",
                 "text": " ".join(rng.choice(WORDS) for _ in range(words)) + "."} for j in range(5)]
        rows.append({"id": f"q{i}", "query": f"how to improve garden soil {i}", "documents": docs,
                     "target": rng.randrange(5)})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def run(settings: Settings, bench: Path, limit: int | None, samples: int = 1) -> tuple[float, int]:
    cfg = SimulationConfig(bench=str(bench), strategies=STRATEGIES, rates=RATES, limit=limit,
                           engine=EngineConfig(samples=samples, max_tokens=120))
    sim = Simulation(settings, cfg)
    # Warm up outside the timing: litellm's import (~3.5 s) and the HTTP connection pool.
    sim.gateway.complete(LLMRequest.chat("warm-up", seed=-1))
    calls_before = sim.gateway.usage.calls
    t0 = time.perf_counter()
    sim.run_sync()
    return time.perf_counter() - t0, sim.gateway.usage.calls - calls_before


def fake_mode(args: argparse.Namespace, home: Path, bench: Path) -> None:
    server = subprocess.Popen([sys.executable, "-m", "geoaudit.testing", "--latency", str(args.latency)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()

        def settings(name: str, conc: int) -> Settings:
            return Settings(model="openai/bench", api_base=url, api_key="x", data_dir=home / name,
                            concurrency=conc, retries=0)

        wall, calls = run(settings("concurrent", args.concurrency), bench, None)
        seq_items = max(1, args.items // 10)
        seq_wall, seq_calls = run(settings("sequential", 1), bench, seq_items)
    finally:
        server.terminate()
        server.wait()
    ideal = calls * args.latency / args.concurrency
    seq_scaled = seq_wall * calls / seq_calls
    print(f"workload: {args.items} items x {len(STRATEGIES)} strategies x {len(RATES)} rates, 1 sample; "
          f"{calls} LLM calls (rewrites + answers), latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"wall {wall:7.2f} s | ideal (latency sum / concurrency) {ideal:6.2f} s -> {ideal / wall:5.1%} of ideal (target >= 90%)")
    print(f"sequential, one call at a time: {seq_wall:.2f} s for {seq_calls} calls ({seq_items} items), "
          f"scaled to {calls} calls: {seq_scaled:.1f} s -> {seq_scaled / wall:5.1f}x faster (target >= 30x)")


def embedded_mode(args: argparse.Namespace, home: Path, bench: Path) -> None:
    from geoaudit.embedded import load

    llm = load("smollm2").llm
    text = " ".join(random.Random(1).choice(WORDS) for _ in range(700))
    toks = llm.tokenize(text.encode())
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks)
    pp_rate = len(toks) / (time.perf_counter() - t0)
    llm.reset()
    settings = Settings(data_dir=home / "embedded")
    cfg = SimulationConfig(bench=str(bench), strategies=("identity", "rank"), rates=(0.0, 1.0),
                           limit=args.items, engine=EngineConfig(samples=1, max_tokens=120))
    sim = Simulation(settings, cfg)
    t0 = time.perf_counter()
    sim.run_sync()
    wall = time.perf_counter() - t0
    u = sim.gateway.usage
    print(f"embedded local/smollm2: {u.calls} answers in {wall:.1f} s -> {u.calls / wall * 60:.1f} answers/min")
    print(f"prompt tokens: {u.prompt_tokens} ({u.prompt_tokens / wall:.0f}/s end to end, including generation "
          f"of {u.completion_tokens} tokens); llama.cpp's raw prompt processing here: {pp_rate:.0f} tokens/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--words", type=int, default=120)
    ap.add_argument("--embedded", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        bench = make_bench(home / "bench.jsonl", args.items, args.words)
        (embedded_mode if args.embedded else fake_mode)(args, home, bench)


if __name__ == "__main__":
    main()
