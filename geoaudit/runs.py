"""The run store: one directory per simulation run, its configuration and its result rows.

``<data dir>/runs/<run id>/run.db`` is a plain SQLite database (readable with ``sqlite3`` or
Datasette):

* ``meta``: configuration, provenance, status, as JSON values;
* ``cells``: one per finished (item, strategy, rate, seed, condition) cell;
* ``results``: one row per answer sample of a cell, with the target's metrics as columns (see
  :data:`geoaudit.metrics.ROW_METRICS`); unique per (item, strategy, rate, seed, condition, sample),
  base rows (rate NULL) included;
* ``answers`` (every answer, with its sources and attribution) and ``rewrites`` (every rewrite used);
* ``failed_cells``: cells whose LLM calls failed after their retries, with the error (``run_v2``);
  a later finish of the cell removes its row;
* ``usage``: one row per invocation of the run (pid, start, LLM calls, cache hits, failures,
  retries, tokens, cost), updated in the same transaction as each cell (``run_v2``).

``meta["status"]`` is ``running``, ``complete`` (every planned cell done), ``failed`` (the
invocation ended with failed cells, or with an error, in ``meta["error"]``) or ``interrupted``
(Ctrl-C, or killed). Writers hold the run's lock, ``<run dir>/lock`` (an OS file lock, ``flock``): one process writes a
run at a time; a second one stops with :class:`~geoaudit.errors.RunBusyError`. The OS drops the
lock when its process ends, ``kill -9`` included, so a run marked ``running`` whose lock nobody
holds was interrupted, and :attr:`Run.meta` says ``interrupted``.

A cell's rows, its failure record and the invocation's usage so far are written in one
transaction, so a killed run loses at most the cells in flight (and their usage), and never
duplicates rows. The simulation (:mod:`geoaudit.simulate`) writes here; statistics and reports
(:mod:`geoaudit.analysis`, :mod:`geoaudit.report`) only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from geoaudit.citations import AnswerSample
from geoaudit.config import Settings
from geoaudit.documents import atomic_path, now_iso
from geoaudit.engine import Answer
from geoaudit.errors import InputError, RunBusyError
from geoaudit.metrics import PAIRED_METRICS, ROW_METRICS
from geoaudit.store import Migration, Transaction, connect

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

USAGE_COUNTERS = (
    "calls",
    "cached",
    "failed",
    "retries",
    "unusable",
    "rate_limited",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "cost_unknown_calls",
    "local_calls",
)


#: The order of :meth:`Run.rows` (the results table's key).
ROW_ORDER = "item, strategy, rate, seed, condition, sample"
#: The columns that say which query, condition and sample a result row is (statistics read these
#: beside the metrics they test).
ROW_KEYS: tuple[str, ...] = (
    "item", "domain", "tags", "strategy", "rate", "seed", "condition", "sample", "target_orig_rank",
)  # fmt: skip
#: Every column a finished cell writes, and the statement that writes them (built once, not per cell).
_RESULT_COLUMNS: tuple[str, ...] = (
    *ROW_KEYS, "target_rank", "adopters", "target_rewrite", "answer_id", *ROW_METRICS, *PAIRED_METRICS,
)  # fmt: skip
_INSERT_RESULT = (
    f"INSERT OR REPLACE INTO results ({', '.join(_RESULT_COLUMNS)}) VALUES ({', '.join('?' * len(_RESULT_COLUMNS))})"
)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _run_v1(conn: Any) -> None:
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE cells (
            cell TEXT PRIMARY KEY, item TEXT, strategy TEXT, rate REAL, seed INTEGER, condition TEXT,
            answer_id TEXT, finished_at TEXT
        )"""
    )
    # The columns of the first schema, spelled out: a migration must not change with the registry.
    v1_metrics = (
        "word",
        "position",
        "pawc",
        "cited",
        "citation_count",
        "first_citation_rank",
        "share_of_voice",
        "no_citation_rate",
        "hallucinated_citations",
        "valid_citations",
        "delta_rank",
        "delta_rank_adv",
    )
    metric_cols = ", ".join(f"{m} REAL" for m in v1_metrics)
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


def _run_v2(conn: Any) -> None:
    """Unique base rows, failed cells, usage per invocation.

    v1's results key held ``rate``, NULL on base rows, and SQLite treats NULLs as distinct: two
    writers duplicated base rows. Duplicates are dropped (keeping the last written) and a unique
    index over ``COALESCE(rate, -1)`` makes the key hold. A v1 run's summed usage (in ``meta``)
    becomes one ``usage`` row counting its invocations.
    """
    conn.execute(
        """DELETE FROM results WHERE rowid NOT IN (
            SELECT MAX(rowid) FROM results GROUP BY item, strategy, COALESCE(rate, -1), seed, condition, sample)"""
    )
    conn.execute(
        "CREATE UNIQUE INDEX results_key ON results (item, strategy, COALESCE(rate, -1), seed, condition, sample)"
    )
    conn.execute(
        """CREATE TABLE failed_cells (
            cell TEXT PRIMARY KEY, item TEXT, strategy TEXT, rate REAL, seed INTEGER, condition TEXT,
            error TEXT NOT NULL, attempts INTEGER, failed_at TEXT NOT NULL
        )"""
    )
    counters = ", ".join(f"{c} {'REAL' if c == 'cost' else 'INTEGER'} NOT NULL DEFAULT 0" for c in USAGE_COUNTERS)
    conn.execute(
        f"""CREATE TABLE usage (
            invocation INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER, host TEXT, started_at TEXT,
            updated_at TEXT, invocations INTEGER NOT NULL DEFAULT 1, {counters}
        )"""
    )
    row = conn.execute("SELECT value FROM meta WHERE key='usage'").fetchone()
    old = json.loads(row[0]) if row else None
    if isinstance(old, dict) and old.get("invocations"):
        cols = [c for c in USAGE_COUNTERS if isinstance(old.get(c), (int, float))]
        conn.execute(
            f"INSERT INTO usage (invocations, started_at, {', '.join(cols)}) VALUES ({', '.join('?' * (len(cols) + 2))})",
            (int(old["invocations"]), "before run_v2", *(old[c] for c in cols)),
        )


def _run_v3(conn: Any) -> None:
    # The deterministic readings of the engine's relevance and selection stages.
    for name in ("selection", "relevance", "query_loglik", "selection_mass"):
        conn.execute(f"ALTER TABLE results ADD COLUMN {name} REAL")


RUN_MIGRATIONS: list[Migration] = [("run_v1", _run_v1), ("run_v2", _run_v2), ("run_v3", _run_v3)]


def usage_summary(usage: dict[str, Any]) -> str:
    """One line for a run's summed usage (what reports and ``runs show`` print)."""
    extra = ", ".join(
        f"{usage[k]:,} {label}"
        for k, label in (
            ("failed", "failed calls"),
            ("retries", "retries"),
            ("unusable", "unusable replies"),
            ("rate_limited", "rate-limited replies"),
        )
        if usage.get(k)
    )
    return (
        f"{usage['calls']:,} model calls and {usage['cached']:,} cache hits over {usage['invocations']} "
        f"invocation(s)" + (f" ({extra})" if extra else "") + f"; {usage['prompt_tokens']:,} prompt + "
        f"{usage['completion_tokens']:,} completion tokens; cost ${usage['cost']:.4f} (litellm price map; "
        "local models cost $0); saved as cells finish, so a killed invocation's cells in flight are not counted"
    )


class Cell(NamedTuple):
    """One unit of work of a run: one answer (its samples) for an item, seed and condition.

    ``strategy`` is "" and ``rate`` None for the base condition (nobody adopts). A tuple, not a
    dict: a run plans up to hundreds of thousands of them.
    """

    item: str
    strategy: str
    rate: float | None
    seed: int
    condition: str

    @property
    def id(self) -> str:
        """The cell's key in the run store: ``item|strategy|rate|seed|condition``."""
        rate = "" if self.rate is None else f"{self.rate:.6g}"
        return f"{self.item}|{self.strategy}|{rate}|{self.seed}|{self.condition}"


class _FileLock:
    """An exclusive, non-blocking OS lock on one file (``flock``; the OS drops it when the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the run is locked
        if not _try_lock(fh, exclusive=True):
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            _unlock(self._fh)
            self._fh.close()
            self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def held_elsewhere(self) -> bool:
        """Whether any open file (another process, or another Run object here) holds the lock."""
        if self._fh is not None:
            return False
        try:
            fh = open(self.path, encoding="utf-8")  # noqa: SIM115 - closed in the finally below
        except FileNotFoundError:
            return False
        try:
            if _try_lock(fh, exclusive=False):
                _unlock(fh)
                return False
            return True
        finally:
            fh.close()

    def holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}


def _try_lock(fh: IO[str], *, exclusive: bool) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fh.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    import msvcrt  # pragma: no cover - Windows: a byte-range lock on the first byte, same use

    try:  # pragma: no cover
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
        return True
    except OSError:  # pragma: no cover
        return False


def _unlock(fh: IO[str]) -> None:
    if fcntl is not None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return
    import msvcrt  # pragma: no cover

    fh.seek(0)  # pragma: no cover
    msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]  # pragma: no cover


class Run:
    """One run directory: its configuration and result rows (``geoaudit.stats`` reads :meth:`rows`).

    Readers need nothing more; a writer (the simulation) calls :meth:`acquire` first, then
    :meth:`begin_invocation`, and :meth:`release` at the end (``close`` releases too).
    """

    def __init__(self, path: Path | str) -> None:
        self.dir = Path(path)
        self.id = self.dir.name
        self.conn = connect(self.dir / "run.db", RUN_MIGRATIONS)
        self._lock = _FileLock(self.dir / "lock")
        self.invocation: int | None = None
        self._cols: list[str] | None = None

    # -- the writer's lock
    def acquire(self) -> None:
        """Become the run's only writer.

        Raises:
            RunBusyError: another process (or another ``Run`` of this directory) is writing it.
        """
        if self._lock.held:
            return
        if not self._lock.acquire():
            who = self._lock.holder()
            pid = f"pid {who['pid']}" if who.get("pid") else "another process"
            since = f" since {who['since']}" if who.get("since") else ""
            raise RunBusyError(
                f"run {self.id} is already running ({pid}{' on ' + str(who['host']) if who.get('host') else ''}{since})",
                hint="wait for it to finish (the same command then resumes nothing left to do), or stop it and re-run to resume",
            )

    def release(self) -> None:
        self._lock.release()

    @property
    def running_elsewhere(self) -> bool:
        """Whether another process (or another Run object) holds this run's lock right now."""
        return self._lock.held_elsewhere()

    # -- metadata
    def set_meta(self, **values: Any) -> None:
        with Transaction(self.conn) as c:
            for k, v in values.items():
                c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v, default=str)))

    @property
    def meta(self) -> dict[str, Any]:
        """The stored meta values, with three read live: ``usage`` (summed over the ``usage`` table, so
        a killed invocation's calls count), ``failed_cells`` (cells that failed and are not done), and
        ``status``: a stored ``running`` that no process holds the lock of reads ``interrupted``."""
        out = {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT key, value FROM meta")}
        usage = self.usage()
        if usage["invocations"]:
            out["usage"] = usage
        out["failed_cells"] = self.counts()["failed_cells"]
        if out.get("status") == "running" and not self._lock.held and not self.running_elsewhere:
            out["status"] = "interrupted"
        return out

    # -- cells
    def done_cells(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT cell FROM cells")}

    def begin_invocation(self) -> int:
        """Start counting this process's LLM usage in a new ``usage`` row (see :meth:`save_cell`)."""
        with Transaction(self.conn) as c:
            cur = c.execute(
                "INSERT INTO usage (pid, host, started_at, updated_at) VALUES (?, ?, ?, ?)",
                (os.getpid(), socket.gethostname(), now_iso(), now_iso()),
            )
            self.invocation = int(cur.lastrowid or 0)
        return self.invocation

    def save_usage(self, usage: dict[str, Any]) -> None:
        """Write this invocation's usage totals (also done with every cell)."""
        with Transaction(self.conn) as c:
            self._save_usage(c, usage)

    def _save_usage(self, c: Any, usage: dict[str, Any] | None) -> None:
        if usage is None or self.invocation is None:
            return
        values = [usage.get(k, 0) or 0 for k in USAGE_COUNTERS]
        c.execute(
            f"UPDATE usage SET updated_at=?, {', '.join(f'{k}=?' for k in USAGE_COUNTERS)} WHERE invocation=?",
            (now_iso(), *values, self.invocation),
        )

    def save_cell(
        self,
        cell: Cell,
        answer: Answer,
        rows: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
    ) -> None:
        """Store a finished cell's answer and rows; ``usage`` (this invocation's totals so far, see
        :meth:`begin_invocation`) is written in the same transaction."""
        record = answer.to_dict()  # once: it is most of a cell's CPU in the writing process
        answer_id = "a" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
        with Transaction(self.conn) as c:
            c.execute("INSERT OR IGNORE INTO answers VALUES (?, ?)", (answer_id, json.dumps(record)))
            c.executemany(
                _INSERT_RESULT,
                [tuple({**r, "answer_id": answer_id}.get(col) for col in _RESULT_COLUMNS) for r in rows],
            )
            c.execute(
                "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?)",
                (cell.id, *cell, answer_id, now_iso()),
            )
            c.execute("DELETE FROM failed_cells WHERE cell=?", (cell.id,))
            self._save_usage(c, usage)

    def save_failed_cell(
        self,
        cell: Cell,
        error: str,
        attempts: int = 1,
        usage: dict[str, Any] | None = None,
    ) -> None:
        """Record that ``cell`` failed (it stays not done, so the next invocation retries it)."""
        with Transaction(self.conn) as c:
            c.execute(
                "INSERT OR REPLACE INTO failed_cells VALUES (?,?,?,?,?,?,?,?,?)",
                (cell.id, *cell, error, attempts, now_iso()),
            )
            self._save_usage(c, usage)

    def failed_cells(self) -> list[dict[str, Any]]:
        """Cells that failed and are not done, with their error (newest first)."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT * FROM failed_cells WHERE cell NOT IN (SELECT cell FROM cells) ORDER BY failed_at DESC, cell"
            )
        ]

    def save_rewrites(self, records: list[dict[str, Any]]) -> None:
        with Transaction(self.conn) as c:
            c.executemany(
                "INSERT OR REPLACE INTO rewrites VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r["doc_id"],
                        r["strategy"],
                        r["item"],
                        int(r["is_target"]),
                        r["status"],
                        r["reason"],
                        r["flags"],
                        json.dumps(r["guards"]),
                        r["original"],
                        r["rewritten"],
                        r["model"],
                        r["key"],
                    )
                    for r in records
                ],
            )

    # -- reading
    def rows(self, columns: Sequence[str] | None = None, *, condition: str | None = None) -> Any:
        """All result rows as a pandas DataFrame (one per answer sample; base rows have strategy "" and rate NaN).

        ``columns``: read only these (a million rows of every column take gigabytes; statistics need a
        few). ``condition``: only the rows of that condition (still in row order).
        """
        import pandas as pd

        cols = "*" if columns is None else ", ".join(_quoted(self._result_column(c)) for c in columns)
        if condition is None:
            df = pd.read_sql_query(f"SELECT {cols} FROM results ORDER BY {ROW_ORDER}", self.conn)
        else:  # a scan and a sort of the few matching rows beats walking the whole key in order
            df = self._frame(
                f"SELECT {cols} FROM results NOT INDEXED WHERE condition = ? ORDER BY {ROW_ORDER}", (condition,)
            )
        if "rate" in df:
            df["rate"] = df["rate"].astype(float)
        return df

    def result_columns(self) -> list[str]:
        """The columns of the ``results`` table."""
        return [str(r[1]) for r in self.conn.execute("PRAGMA table_info(results)")]

    def group_means(
        self, keys: Sequence[str], metrics: Sequence[str], *, conditions: Sequence[str] | None = None
    ) -> Any:
        """Per distinct ``keys`` of the result rows: ``n`` (rows) and the mean of each metric, as a DataFrame.

        Means skip NULLs (NULL when every value is). SQLite scans the table once and sorts it by the
        keys, so only the groups reach Python: the samples and seeds of a run of a million rows
        collapse to about a hundred thousand units. ``conditions`` keeps only those conditions.
        Groups come in no particular order.
        """
        # The item first: the sort compares keys left to right, and items tell most rows apart.
        ordered = sorted(keys, key=lambda k: k != "item")
        keyed = ", ".join(_quoted(self._result_column(k)) for k in ordered)
        avgs = "".join(f", AVG({_quoted(self._result_column(m))}) AS {_quoted(m)}" for m in metrics)
        where, params = "", tuple[str, ...]()
        if conditions is not None:
            where = f" WHERE condition IN ({', '.join('?' * len(conditions))})"
            params = tuple(conditions)
        # NOT INDEXED: the primary key's order does not give these groups, and walking the table in
        # index order costs a random read per row; a plain scan and a sort is several times faster.
        # A 128 MB cache lets SQLite sort a million rows in memory (the default 2 MB spills to
        # temporary files): a fifth less time, for this query only.
        (cache,) = self.conn.execute("PRAGMA cache_size").fetchone()
        self.conn.execute("PRAGMA cache_size = -131072")
        try:
            return self._frame(
                f"SELECT {keyed}, COUNT(*) AS n{avgs} FROM results NOT INDEXED{where} GROUP BY {keyed}", params
            )
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(cache)}")

    def first_row(
        self,
        item: str | None = None,
        condition: str | None = None,
        order: Sequence[str] | None = None,
        strategy: str | None = None,
    ) -> dict[str, Any] | None:
        """The first result row (of ``item``, in ``condition``, of ``strategy``) by ``order`` (default: row order), or None."""
        conds, params = [], []
        for col, value in (("item", item), ("condition", condition), ("strategy", strategy)):
            if value is not None:
                conds.append(f"{col} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        by = ROW_ORDER if order is None else ", ".join(_quoted(self._result_column(c)) for c in order)
        row = self.conn.execute(f"SELECT * FROM results{where} ORDER BY {by} LIMIT 1", params).fetchone()
        return dict(row) if row is not None else None

    def _result_column(self, name: str) -> str:
        if name not in self._columns():
            raise InputError(f"result rows lack column {name!r}", hint=f"available: {', '.join(self._columns())}")
        return name

    def _columns(self) -> list[str]:
        if self._cols is None:
            self._cols = self.result_columns()
        return self._cols

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import pandas as pd

        cur = self.conn.cursor()
        cur.row_factory = None  # plain tuples: sqlite3.Row costs a Python object per row
        cur.execute(sql, tuple(params))
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        cur.close()
        return pd.DataFrame.from_records(rows, columns=names)

    def answer(self, answer_id: str) -> Answer | None:
        row = self.conn.execute("SELECT answer FROM answers WHERE answer_id=?", (answer_id,)).fetchone()
        return Answer.from_dict(json.loads(row[0])) if row else None

    def answer_samples(self, answer_ids: Sequence[str]) -> dict[str, list[AnswerSample]]:
        """The sampled answers (parsed, attributed) of the stored answers ``answer_ids``, by id.

        Only the samples are built, not the rest of each answer (sources, configuration, readings):
        the engine calibration reads every base answer of a run, thousands in a large one.
        """
        out: dict[str, list[AnswerSample]] = {}
        ids = list(dict.fromkeys(answer_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.conn.execute(
                f"SELECT answer_id, answer FROM answers WHERE answer_id IN ({', '.join('?' * len(chunk))})", chunk
            ).fetchall()
            for answer_id, text in rows:
                out[str(answer_id)] = [AnswerSample.from_dict(smp) for smp in json.loads(text)["samples"]]
        return out

    def rewrites(
        self,
        strategy: str | None = None,
        *,
        targets_only: bool = False,
        status: str | None = None,
        texts: bool = True,
    ) -> list[dict[str, Any]]:
        """Rewrite records (guards parsed), ordered by strategy, item, target first.

        Filters: one ``strategy``, only the target pages (``targets_only``), one ``status``.
        ``texts=False`` leaves out ``original`` and ``rewritten`` (a large run stores gigabytes of them).
        """
        cols = "*" if texts else "doc_id, strategy, item, is_target, status, reason, flags, guards, model, key"
        conds, params = [], []
        if strategy is not None:
            conds.append("strategy = ?")
            params.append(strategy)
        if targets_only:
            conds.append("is_target")
        if status is not None:
            conds.append("status = ?")
            params.append(status)
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        out = []
        for r in self.conn.execute(
            f"SELECT {cols} FROM rewrites{where} ORDER BY strategy, item, is_target DESC", params
        ):
            d = dict(r)
            d["guards"] = json.loads(d["guards"] or "{}")
            out.append(d)
        return out

    def rewrite_texts(self, doc_id: str, strategy: str, item: str) -> tuple[str, str]:
        """(original, rewritten) of one rewrite record ("" when absent)."""
        row = self.conn.execute(
            "SELECT original, rewritten FROM rewrites WHERE doc_id = ? AND strategy = ? AND item = ?",
            (doc_id, strategy, item),
        ).fetchone()
        return (str(row[0] or ""), str(row[1] or "")) if row is not None else ("", "")

    def rewrite_counts(self) -> list[dict[str, Any]]:
        """Rewrite records counted per strategy, target or not, and status (ordered by those)."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT strategy, is_target, status, COUNT(*) AS n FROM rewrites GROUP BY strategy, is_target, status "
                "ORDER BY strategy, is_target, status"
            )
        ]

    def usage(self) -> dict[str, Any]:
        """LLM usage summed over every invocation of the run, with a one-line ``summary``."""
        sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in USAGE_COUNTERS)
        row = self.conn.execute(f"SELECT COALESCE(SUM(invocations), 0), {sums} FROM usage").fetchone()
        out: dict[str, Any] = {"invocations": int(row[0])}
        for name, value in zip(USAGE_COUNTERS, row[1:]):
            out[name] = float(value) if name == "cost" else int(value)
        out["summary"] = usage_summary(out)
        return out

    def counts(self) -> dict[str, int]:
        return {
            "cells": int(self.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]),
            "rows": int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]),
            "failed_cells": int(
                self.conn.execute(
                    "SELECT COUNT(*) FROM failed_cells WHERE cell NOT IN (SELECT cell FROM cells)"
                ).fetchone()[0]
            ),
        }

    def close(self) -> None:
        self.release()
        self.conn.close()

    def __enter__(self) -> Run:
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
        out.append(
            {
                "id": run.id,
                **run.counts(),
                "planned_cells": meta.get("planned_cells"),
                "status": meta.get("status", "?"),
                "created_at": meta.get("created_at"),
                "bench": (meta.get("config") or {}).get("bench"),
                "strategies": (meta.get("config") or {}).get("strategies"),
                "model": (meta.get("config") or {}).get("model"),
            }
        )
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


__all__ = ["ROW_ORDER", "RUN_MIGRATIONS", "Run", "export_rows", "list_runs", "open_run", "usage_summary"]
