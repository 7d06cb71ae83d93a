"""The run store: one directory per simulation run, its configuration and its result rows.

``<data dir>/runs/<run id>/run.db`` is a plain SQLite database (readable with ``sqlite3`` or
Datasette): ``meta`` (configuration, provenance, status, usage as JSON values), ``cells`` (one per
finished (item, strategy, rate, seed, condition) cell), ``results`` (one row per answer sample of a
cell, with the target's metrics as columns, see :data:`geoaudit.metrics.ROW_METRICS`), ``answers``
(every answer, with its sources and attribution) and ``rewrites`` (every rewrite used).

A cell's rows are written in one transaction, so a killed run loses at most the cells in flight
and never duplicates rows. The simulation (:mod:`geoaudit.simulate`) writes here; statistics and
reports (:mod:`geoaudit.analysis`, :mod:`geoaudit.report`) only read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from geoaudit.config import Settings
from geoaudit.documents import atomic_path, now_iso
from geoaudit.engine import Answer
from geoaudit.errors import InputError
from geoaudit.metrics import PAIRED_METRICS, ROW_METRICS
from geoaudit.store import Migration, Transaction, connect

def _run_v1(conn: Any) -> None:
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE cells (
            cell TEXT PRIMARY KEY, item TEXT, strategy TEXT, rate REAL, seed INTEGER, condition TEXT,
            answer_id TEXT, finished_at TEXT
        )"""
    )
    metric_cols = ", ".join(f"{m} REAL" for m in (*ROW_METRICS, *PAIRED_METRICS))
    conn.execute(
        f"""CREATE TABLE results (
            item TEXT NOT NULL, domain TEXT, tags TEXT, strategy TEXT NOT NULL, rate REAL,
            seed INTEGER NOT NULL, condition TEXT NOT NULL, sample INTEGER NOT NULL,
            target_orig_rank INTEGER, target_rank INTEGER, adopters INTEGER,
            target_rewrite TEXT, answer_id TEXT, {metric_cols},
            PRIMARY KEY (item, strategy, rate, seed, condition, sample)
        )"""
    )
    conn.execute("CREATE TABLE answers (answer_id TEXT PRIMARY KEY, answer TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE rewrites (
            doc_id TEXT, strategy TEXT, item TEXT, is_target INTEGER, status TEXT, reason TEXT,
            flags INTEGER, guards TEXT, original TEXT, rewritten TEXT, model TEXT, key TEXT,
            PRIMARY KEY (doc_id, strategy, item)
        )"""
    )


RUN_MIGRATIONS: list[Migration] = [("run_v1", _run_v1)]


class Run:
    """One run directory: its configuration and result rows (``geoaudit.stats`` reads :meth:`rows`)."""

    def __init__(self, path: Path | str) -> None:
        self.dir = Path(path)
        self.id = self.dir.name
        self.conn = connect(self.dir / "run.db", RUN_MIGRATIONS)

    # -- metadata
    def set_meta(self, **values: Any) -> None:
        with Transaction(self.conn) as c:
            for k, v in values.items():
                c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v, default=str)))

    @property
    def meta(self) -> dict[str, Any]:
        return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT key, value FROM meta")}

    # -- cells
    def done_cells(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT cell FROM cells")}

    def save_cell(self, cell: str, key: dict[str, Any], answer: Answer, rows: list[dict[str, Any]]) -> None:
        answer_id = "a" + hashlib.sha256(json.dumps(answer.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
        cols = [
            "item", "domain", "tags", "strategy", "rate", "seed", "condition", "sample", "target_orig_rank",
            "target_rank", "adopters", "target_rewrite", "answer_id", *ROW_METRICS, *PAIRED_METRICS,
        ]
        with Transaction(self.conn) as c:
            c.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?)", (answer_id, json.dumps(answer.to_dict()))
            )
            c.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple({**r, "answer_id": answer_id}.get(col) for col in cols) for r in rows],
            )
            c.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?)",
                (cell, key["item"], key["strategy"], key["rate"], key["seed"], key["condition"], answer_id, now_iso()),
            )

    def save_rewrites(self, records: list[dict[str, Any]]) -> None:
        with Transaction(self.conn) as c:
            c.executemany(
                "INSERT OR REPLACE INTO rewrites VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (r["doc_id"], r["strategy"], r["item"], int(r["is_target"]), r["status"], r["reason"],
                     r["flags"], json.dumps(r["guards"]), r["original"], r["rewritten"], r["model"], r["key"])
                    for r in records
                ],
            )

    # -- reading
    def rows(self) -> Any:
        """All result rows as a pandas DataFrame (one per answer sample; base rows have strategy "" and rate NaN)."""
        import pandas as pd

        df = pd.read_sql_query("SELECT * FROM results ORDER BY item, strategy, rate, seed, condition, sample", self.conn)
        df["rate"] = df["rate"].astype(float)
        return df

    def answer(self, answer_id: str) -> Answer | None:
        row = self.conn.execute("SELECT answer FROM answers WHERE answer_id=?", (answer_id,)).fetchone()
        return Answer.from_dict(json.loads(row[0])) if row else None

    def rewrites(self) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM rewrites ORDER BY strategy, item, is_target DESC"):
            d = dict(r)
            d["guards"] = json.loads(d["guards"] or "{}")
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        return {
            "cells": int(self.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]),
            "rows": int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]),
        }

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_run(settings: Settings, run: str) -> Run:
    """Open a finished or partial run by id (or unique id prefix, or a run directory path).

    Raises:
        InputError: no such run.
    """
    path = Path(run).expanduser()
    if (path / "run.db").is_file():
        return Run(path)
    if path.is_absolute() or "/" in run or path.exists():
        raise InputError(f"{run} is not a run directory (it has no run.db)", hint="see `geoaudit runs list`")
    root = settings.runs_dir
    matches = sorted(p for p in root.glob(f"{run}*") if (p / "run.db").is_file()) if root.is_dir() else []
    if len(matches) == 1:
        return Run(matches[0])
    if not matches:
        raise InputError(f"no run {run!r} in {root}", hint="see `geoaudit runs list`")
    raise InputError(f"run id {run!r} is ambiguous: {', '.join(p.name for p in matches[:5])}")


def list_runs(settings: Settings) -> list[dict[str, Any]]:
    root = settings.runs_dir
    out = []
    for p in sorted(root.glob("*/run.db")) if root.is_dir() else []:
        run = Run(p.parent)
        meta = run.meta
        out.append({"id": run.id, **run.counts(), "planned_cells": meta.get("planned_cells"),
                    "status": meta.get("status", "?"), "created_at": meta.get("created_at"),
                    "bench": (meta.get("config") or {}).get("bench"),
                    "strategies": (meta.get("config") or {}).get("strategies"),
                    "model": (meta.get("config") or {}).get("model")})
        run.close()
    return out


def export_rows(run: Run, path: Path, fmt: str) -> int:
    """Write one row per item x condition (samples averaged) as csv, parquet or jsonl, atomically."""
    df = run.rows()
    if df.empty:
        raise InputError(f"run {run.id} has no result rows yet")
    keys = ["item", "domain", "tags", "strategy", "rate", "seed", "condition"]
    numeric = [c for c in df.columns if c not in keys + ["answer_id", "target_rewrite", "sample"]]
    grouped = df.assign(rate=df["rate"].fillna(-1)).groupby(keys, dropna=False)
    out = grouped[numeric].mean().reset_index()
    out["samples"] = grouped.size().values
    out["rate"] = out["rate"].where(out["rate"] >= 0)
    writers = {
        "csv": lambda p: out.to_csv(p, index=False),
        "parquet": lambda p: out.to_parquet(p, index=False),
        "jsonl": lambda p: out.to_json(p, orient="records", lines=True),
    }
    if fmt not in writers:
        raise InputError(f"unknown export format {fmt!r}", hint="use csv, parquet or jsonl")
    with atomic_path(path) as tmp:
        writers[fmt](tmp)
    return len(out)


__all__ = ["RUN_MIGRATIONS", "Run", "export_rows", "list_runs", "open_run"]
