"""SQLite persistence shared by every stage: connections, migrations, the document store.

Every database geoaudit writes is a plain SQLite file in WAL mode (readable by ``sqlite3`` and
Datasette). Schema changes are an append-only list of named migrations per database, recorded in
``_geoaudit_migrations``; each runs in its own transaction. A migration is named
``<family>_v<N>`` (``run_v2``); several families may share one file (documents, crawl state and
rewrites live in ``geoaudit.db``), so a file recording a migration of one of *our* families that
this version does not know was written by a newer geoaudit, and opening it is refused. Writes commit in small transactions so a
killed process (``kill -9``) loses at most the write in flight and never corrupts the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geoaudit.documents import Document
from geoaudit.errors import StoreError

Migration = tuple[str, Callable[[sqlite3.Connection], None]]


def _is_migration_name(name: str) -> bool:
    try:
        _family(name)
    except ValueError:
        return False
    return True


def _family(name: str) -> str:
    """The family of a migration name ``<family>_v<N>`` (``run_v2`` -> ``run``)."""
    family, sep, number = name.rpartition("_v")
    ok = (
        sep
        and number.isdigit()
        and number.isascii()
        and family[:1].isalpha()
        and family.isascii()
        and all(c.islower() or c.isdigit() or c == "_" for c in family)
    )
    if not ok:
        raise ValueError(f"migration name {name!r} is not <family>_v<N>")
    return family


class Connection(sqlite3.Connection):
    """A SQLite connection that carries the lock :class:`Transaction` serialises its threads on.

    The lock lives and dies with the connection (``sqlite3.Connection`` cannot be weakly referenced,
    so a registry keyed by connection would keep every lock of every closed connection).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.geoaudit_lock = threading.RLock()


def connect(path: Path | str, migrations: Sequence[Migration] = ()) -> sqlite3.Connection:
    """Open (creating if needed) a SQLite database tuned for concurrent, crash-safe use.

    Args:
        path: database file; parent directories are created.
        migrations: ``(name, fn)`` pairs applied in order, each at most once; names are
            ``<family>_v<N>``.

    Raises:
        StoreError: the file is not a SQLite database, a migration failed, or the file holds a
            migration of one of these families that this geoaudit does not know (a newer version
            wrote it).
    """
    path = Path(path)
    known = [name for name, _ in migrations]
    families = {_family(name) for name in known}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False, factory=Connection
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against process crashes in WAL mode; only power loss can drop the last commit.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("CREATE TABLE IF NOT EXISTS _geoaudit_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        done = {r[0] for r in conn.execute("SELECT name FROM _geoaudit_migrations")}
        newer = sorted(n for n in done - set(known) if _is_migration_name(n) and _family(n) in families)
        if newer:
            conn.close()
            raise StoreError(
                f"{path} was written by a newer geoaudit (schema {', '.join(newer)} is unknown to this version)",
                hint="upgrade geoaudit (pip install -U geoaudit), or use another --data-dir",
            )
        for name, fn in migrations:
            if name in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Re-check inside the write lock: another process may have migrated meanwhile.
                if conn.execute("SELECT 1 FROM _geoaudit_migrations WHERE name=?", (name,)).fetchone():
                    conn.execute("COMMIT")
                    continue
                fn(conn)
                conn.execute("INSERT INTO _geoaudit_migrations VALUES (?, datetime('now'))", (name,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None


# Connections not made by connect() (a user's own) share one lock: coarse, but correct.
_FALLBACK_LOCK = threading.RLock()


class Transaction:
    """``with Transaction(conn):`` runs the block in one IMMEDIATE transaction, thread-safely."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock: threading.RLock = getattr(conn, "geoaudit_lock", _FALLBACK_LOCK)

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def _documents_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            title TEXT,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL,
            fetched_at TEXT,
            content_hash TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX documents_url ON documents(url)")


DOCUMENT_MIGRATIONS: list[Migration] = [("documents_v1", _documents_v1)]


class DocumentStore:
    """The ``documents`` table: one row per document, keyed by the stable id (hash of canonical URL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, DOCUMENT_MIGRATIONS)

    def put(self, doc: Document) -> None:
        self.put_many([doc])

    def put_many(self, docs: Iterable[Document]) -> int:
        rows = [
            (d.id, d.url, d.title, d.text, json.dumps(d.metadata, ensure_ascii=False), d.fetched_at, d.content_hash)
            for d in docs
        ]
        with Transaction(self.conn) as c:
            c.executemany("INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?)", rows)
        return len(rows)

    def get(self, doc_id: str) -> Document | None:
        row = self.conn.execute("SELECT * FROM documents WHERE id=?", (doc_id,)).fetchone()
        return _row_to_doc(row) if row else None

    def find(self, pattern: str | None = None) -> list[Document]:
        """Documents whose id starts with ``pattern`` or whose URL matches it (``*`` wildcards)."""
        if not pattern:
            rows = self.conn.execute("SELECT * FROM documents ORDER BY url").fetchall()
        else:
            like = pattern.replace("*", "%")
            rows = self.conn.execute(
                "SELECT * FROM documents WHERE id LIKE ? OR url LIKE ? OR url = ? ORDER BY url",
                (pattern + "%", like if "%" in like else f"%{like}%", pattern),
            ).fetchall()
        return [_row_to_doc(r) for r in rows]

    def __iter__(self) -> Iterator[Document]:
        return iter(self.find())

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _row_to_doc(row: sqlite3.Row) -> Document:
    return Document(
        id=row["id"],
        url=row["url"],
        title=row["title"] or "",
        text=row["text"],
        metadata=json.loads(row["metadata"]),
        fetched_at=row["fetched_at"],
        content_hash=row["content_hash"],
    )
