"""``geoaudit stats`` and ``geoaudit report`` on runs of 10^5 and 10^6 result rows: wall time and peak memory.

A real run is made first: a small simulation (16 queries x 16 strategies x adopter rates 0, 0.25,
0.5, 1 x 2 seeds x 2 samples, 8,256 rows) against the in-process fake OpenAI server, whose engine
cites a seeded random subset of the sources and favours the first shown source and rewritten pages
(so rank helps, rewrites sometimes do and identity is noise). That run is then grown in its SQLite
store to the sizes asked for, keeping the schema, the meta and the shape of a real run:

* queries are replicated (new item ids, each the copy of a seed query: its domain, tags and the
  target's original rank), seeds and samples are added; every new result row takes its metrics from
  a randomly drawn (seeded) sample of the same query x strategy x rate x condition in the seed run,
  so per-query means differ between copies as they would between real queries;
* every base cell gets its own copy of its answer (the engine calibration reads all base answers),
  other cells point at the seed run's answer; the rewrites of each copied query are copied, and one
  ``cells`` row is written per cell.

With the default shape a run has ``queries x 2 seeds x 4 samples x (1 + 16 strategies x 4 rates x 2)``
rows: 100 queries -> 103,200 rows, 1,000 queries -> 1,032,000 rows. Each command runs as a
subprocess the way a user runs it (``python -m geoaudit stats RUN``, ``... report RUN -o DIR``),
timed with ``/usr/bin/time`` (wall seconds, maximum resident set size).

    python benches/perf/bench_stats_scale.py [--queries 100,1000] [--repeat 3] [--workdir DIR]
    python benches/perf/bench_stats_scale.py --code /path/to/other/checkout   # measure another version

``--workdir`` keeps the seed run and the grown runs between invocations (growing 10^6 rows takes
about a minute); ``--code`` puts another checkout first on PYTHONPATH for the timed commands only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
STRATEGIES = (
    "identity", "rank", "answer-first", "authoritative", "cite-sources", "cite-sources-grounded",
    "content-improvement", "easy-to-understand", "fluency", "key-facts", "keyword-stuffing",
    "keyword-stuffing-rule", "llms-txt-structure", "quotation", "statistics", "technical-terms",
)  # fmt: skip
RATES = (0.0, 0.25, 0.5, 1.0)
SEED_QUERIES, SEED_SEEDS, SEED_SAMPLES = 16, 2, 2
TOPICS = ("tea", "bikes", "soil", "tents", "bread", "lamps", "boots", "kettles")


# ----------------------------------------------------------------------------- the seed run


def _page(rng: random.Random, topic: str, i: int, j: int) -> str:
    years = rng.randint(2, 30)
    share = rng.randint(10, 90)
    return (
        f"Source {j} explains {topic} for query {i}. It describes how {topic} works, why people care "
        f"about {topic}, and what to look for when choosing {topic}. About {share}% of buyers keep "
        f"their {topic} for more than {years} years.\n\n"
        f"A second paragraph compares the common kinds of {topic}, the care they need over the years, "
        f"and the mistakes beginners make with {topic}. Experts recommend checking the build quality, "
        f"the warranty and the reviews of other owners before buying {topic}.\n\n"
        f"Finally, where to learn more about {topic}: local clubs, shops and neighbours who have used "
        f"{topic} for a long time, and the manuals that come with them."
    )


def write_bench(path: Path) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(SEED_QUERIES):
        topic = TOPICS[i % len(TOPICS)]
        docs = [
            {
                "url": f"https://site{j}.example/{topic}/{i}",
                "title": f"Page {j} about {topic}",
                "text": _page(rng, topic, i, j),
            }
            for j in range(5)
        ]
        rows.append(
            {
                "id": f"q{i}",
                "query": f"what should I know about {topic} ({i})?",
                "documents": docs,
                "target": i % 5,
                "domain": ("home", "food", "outdoor")[i % 3],
                "tags": ["shopping"],
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def responder(req: dict) -> str:
    """A scripted engine with sampling noise; rewrite requests get the page back with one sentence added."""
    from geoaudit.testing import last_user_message

    prompt = last_user_message(req)
    if "Source [1]:" not in prompt:
        return "This page explains the topic clearly. " + prompt.rsplit("Text:", 1)[-1].strip()
    rng = random.Random(f"{req.get('seed')}|{prompt}")
    blocks = re.split(r"^Source \[(\d+)\]:", prompt, flags=re.MULTILINE)[1:]
    texts = {int(n): body for n, body in zip(blocks[::2], blocks[1::2])}
    score = {
        n: rng.random() + (0.4 if "clearly" in body else 0.0) + (0.8 if n == 1 else 0.0) for n, body in texts.items()
    }
    order = sorted(texts, key=lambda n: -score[n])[: rng.randint(1, 3)]
    return " ".join(f"Point {j} about the question is stated here [{n}]." for j, n in enumerate(order))


def make_seed_run(home: Path) -> Path:
    """The real run everything is grown from (cached in ``home``)."""
    runs = sorted((home / "runs").glob("run-*/run.db")) if (home / "runs").is_dir() else []
    if runs:
        return runs[0].parent
    from geoaudit.engine import EngineConfig
    from geoaudit.simulate import Simulation, SimulationConfig
    from geoaudit.testing import FakeOpenAIServer, fake_settings

    bench = write_bench(home / "bench.jsonl")
    t0 = time.perf_counter()
    with FakeOpenAIServer(responder) as server:
        cfg = SimulationConfig(
            bench=str(bench),
            strategies=STRATEGIES,
            rates=RATES,
            seeds=tuple(range(SEED_SEEDS)),
            engine=EngineConfig(samples=SEED_SAMPLES, attribution="citations"),
        )
        sim = Simulation(fake_settings(server, home, concurrency=16), cfg, command="bench_stats_scale seed run")
        run = sim.run_sync().run
    print(f"seed run {run.id}: {run.counts()['rows']:,} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    path = run.dir
    run.close()
    return path


# ----------------------------------------------------------------------------- growing it


def grow(seed_dir: Path, dest: Path, queries: int, seeds: int, samples: int, strategies: int = len(STRATEGIES)) -> Path:
    """Copy the seed run to ``dest`` with ``queries`` queries, ``seeds`` seeds and ``samples`` samples,
    keeping the first ``strategies`` strategies of the seed run (identity and rank come first)."""
    if (dest / "run.db").is_file():
        return dest
    t0 = time.perf_counter()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(seed_dir / "run.db", tmp / "run.db")
    con = sqlite3.connect(tmp / "run.db")
    src = pd.read_sql_query("SELECT * FROM results", con)
    kept = list(STRATEGIES[:strategies])
    src = src[src["strategy"].isin(["", *kept])].reset_index(drop=True)
    cols = list(src.columns)
    src["_rate"] = src["rate"].fillna(-1.0)
    keys = ["item", "strategy", "_rate", "condition"]
    # Every (query, strategy, rate, condition) of the seed run with the rows (seeds x samples) it has.
    groups = src.groupby(keys, sort=True).indices
    key_list = list(groups)
    width = max(len(v) for v in groups.values())
    choices = np.array([np.resize(groups[k], width) for k in key_list])
    counts = np.array([len(groups[k]) for k in key_list])
    src_items = sorted(src["item"].unique())
    by_item = {it: np.array([i for i, k in enumerate(key_list) if k[0] == it]) for it in src_items}

    rng = np.random.default_rng(0)
    new_ids = [f"q{j:06d}" for j in range(queries)]
    parts = []
    for j, new in enumerate(new_ids):
        kidx = by_item[src_items[j % len(src_items)]]
        k = np.repeat(kidx, seeds * samples)
        seed = np.tile(np.repeat(np.arange(seeds), samples), len(kidx))
        sample = np.tile(np.arange(samples), len(kidx) * seeds)
        row = choices[k, rng.integers(0, counts[k])]
        parts.append(pd.DataFrame({"row": row, "item": new, "seed": seed, "sample": sample}))
    plan = pd.concat(parts, ignore_index=True)
    out = src.iloc[plan["row"].to_numpy()].reset_index(drop=True)
    out["item"], out["seed"], out["sample"] = (
        plan["item"].to_numpy(),
        plan["seed"].to_numpy(),
        plan["sample"].to_numpy(),
    )
    # A cell is one answer: its samples (contiguous, ``samples`` rows) share the first drawn row's answer.
    out["answer_id"] = np.repeat(out["answer_id"].to_numpy()[::samples], samples)
    # One answer per base cell (the engine calibration reads every base answer), copied from the seed run's.
    base = out["condition"] == "base"
    out.loc[base, "answer_id"] = (
        out.loc[base, "answer_id"] + "-" + out.loc[base, "item"] + "-" + out.loc[base, "seed"].astype(str)
    )
    answers = dict(con.execute("SELECT answer_id, answer FROM answers").fetchall())
    base_answers = out.loc[base, "answer_id"].drop_duplicates()
    rewrites = pd.read_sql_query("SELECT * FROM rewrites", con)
    rewrites = rewrites[rewrites["strategy"].isin(kept)]
    rw_parts = []
    for j, new in enumerate(new_ids):
        r = rewrites[rewrites["item"] == src_items[j % len(src_items)]].copy()
        r["item"] = new
        rw_parts.append(r)
    new_rewrites = pd.concat(rw_parts, ignore_index=True)
    cells = out.drop_duplicates(["item", "strategy", "rate", "seed", "condition"])
    with con:
        con.execute("DELETE FROM results")
        con.execute("DELETE FROM cells")
        con.execute("DELETE FROM rewrites")
        out_rows = out[cols].astype(object).where(out[cols].notna(), None)
        con.executemany(
            f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            out_rows.itertuples(index=False, name=None),
        )
        con.executemany(
            "INSERT OR IGNORE INTO answers VALUES (?, ?)", ((a, answers[a.split("-", 1)[0]]) for a in base_answers)
        )
        rw_cols = list(rewrites.columns)
        con.executemany(
            f"INSERT INTO rewrites ({', '.join(rw_cols)}) VALUES ({', '.join('?' * len(rw_cols))})",
            new_rewrites.astype(object).where(new_rewrites.notna(), None).itertuples(index=False, name=None),
        )
        con.executemany(
            "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?)",
            (
                (
                    f"{c.item}|{c.strategy}|{c.rate}|{c.seed}|{c.condition}",
                    c.item,
                    c.strategy,
                    None if pd.isna(c.rate) else float(c.rate),
                    int(c.seed),
                    c.condition,
                    c.answer_id,
                    "grown",
                )
                for c in cells.itertuples(index=False)
            ),
        )
        meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
        meta["config"]["seeds"] = list(range(seeds))
        meta["config"]["strategies"] = kept
        meta["config"]["engine"]["samples"] = samples
        meta["engine"]["samples"] = samples
        meta["bench"]["items"] = queries
        meta["planned_cells"] = len(cells)
        meta["command"] = (
            f"grown by bench_stats_scale from {seed_dir.name}: {queries} queries x {len(kept)} strategies "
            f"x {seeds} seeds x {samples} samples"
        )
        for key in ("config", "engine", "bench", "planned_cells", "command"):
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(meta[key])))
    con.execute("VACUUM")
    con.close()
    tmp.rename(dest)
    print(
        f"grew {dest.name}: {len(out):,} rows, {len(cells):,} cells, {len(base_answers):,} base answers, "
        f"{len(new_rewrites):,} rewrites in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return dest


# ----------------------------------------------------------------------------- timing


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr tail) of one command, by /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        # cwd matters: `python -m` puts it first on sys.path, ahead of PYTHONPATH.
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", tf.name, *cmd],
            env=env,
            cwd=cwd,
            check=False,
            capture_output=True,
            text=True,
        )
        wall, rss_kb = tf.read().split()[-2:]
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return float(wall), int(rss_kb) / 1024, done.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", default="100,1000", help="comma-separated query counts (100 -> ~10^5 rows)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--strategies", type=int, default=len(STRATEGIES), help="keep the first N (identity, rank first)")
    ap.add_argument("--args", default="", help="extra options for both commands, e.g. '--mode cseo'")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temporary directory)")
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose geoaudit the timed commands run")
    ap.add_argument("--only", choices=("stats", "report"), default=None)
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-stats-scale-"))
    seed_home, home = work / "seed", work / "home"
    seed_home.mkdir(parents=True, exist_ok=True)
    seed_dir = make_seed_run(seed_home)
    env = {**os.environ, "GEOAUDIT_HOME": str(home), "PYTHONPATH": str(args.code.resolve()), "COLUMNS": "160"}
    print(f"code: {args.code.resolve()} (git {_git_head(args.code)}); load average {os.getloadavg()[0]:.2f}")
    print(
        f"shape: {args.strategies} strategies x {len(RATES)} rates x {args.seeds} seeds x {args.samples} samples; "
        f"extra options: {args.args or 'none'}"
    )
    print("| rows | queries | command | wall s (min-max of runs) | peak RSS MB (max) |")
    print("|---|---|---|---|---|")
    for q in (int(x) for x in args.queries.split(",")):
        name = f"run-scale-q{q}-s{args.strategies}-x{args.seeds}-m{args.samples}"
        run_dir = grow(seed_dir, home / "runs" / name, q, args.seeds, args.samples, args.strategies)
        n_rows = sqlite3.connect(run_dir / "run.db").execute("SELECT COUNT(*) FROM results").fetchone()[0]
        commands = {
            "stats": [sys.executable, "-m", "geoaudit", "stats", run_dir.name, *args.args.split()],
            "report": [
                sys.executable,
                "-m",
                "geoaudit",
                "report",
                run_dir.name,
                "-o",
                str(work / "reports" / run_dir.name),
                *args.args.split(),
            ],
        }
        for name, cmd in commands.items():
            if args.only and name != args.only:
                continue
            walls, rss = [], []
            for _ in range(args.repeat):
                w, m, _err = timed(cmd, env, args.code.resolve())
                walls.append(w)
                rss.append(m)
            print(
                f"| {n_rows:,} | {q:,} | {name} | {min(walls):.1f}-{max(walls):.1f} ({', '.join(f'{w:.1f}' for w in walls)}) "
                f"| {max(rss):.0f} |",
                flush=True,
            )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def _git_head(path: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, OSError):
        return "?"


if __name__ == "__main__":
    main()
