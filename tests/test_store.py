"""The SQLite plumbing every store shares: migrations, schema versions, transactions."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from geoaudit.errors import StoreError
from geoaudit.store import DOCUMENT_MIGRATIONS, DocumentStore, Transaction, connect


def _noop(conn: sqlite3.Connection) -> None:
    pass


def test_a_store_from_a_newer_geoaudit_is_refused_with_a_hint(tmp_path: Path) -> None:
    db = tmp_path / "geoaudit.db"
    # A newer version added documents_v2; this version only knows documents_v1.
    connect(db, [*DOCUMENT_MIGRATIONS, ("documents_v2", _noop)]).close()
    with pytest.raises(StoreError, match="newer geoaudit") as info:
        DocumentStore(db)
    assert "documents_v2" in str(info.value) and info.value.hint and "upgrade" in info.value.hint


def test_families_sharing_a_file_do_not_mistake_each_other_for_newer(tmp_path: Path) -> None:
    db = tmp_path / "geoaudit.db"
    connect(db, [("crawl_v1", _noop), ("rewrites_v1", _noop), ("rewrites_v2", _noop)]).close()
    store = DocumentStore(db)  # another family's newer schema is not this store's business
    assert len(store) == 0
    store.close()


def test_transaction_locks_live_with_their_connection(tmp_path: Path) -> None:
    def registries() -> dict[str, int]:
        return {k: len(v) for k, v in vars(Transaction).items() if isinstance(v, (dict, list, set))}

    before = registries()
    for i in range(50):
        conn = connect(tmp_path / "t.db", [("t_v1", lambda c: c.execute("CREATE TABLE t (x)"))])
        with Transaction(conn) as c:
            c.execute("INSERT INTO t VALUES (?)", (i,))
        conn.close()
    assert registries() == before  # nothing kept per connection after it is closed


def test_transactions_on_one_connection_are_serialised_across_threads(tmp_path: Path) -> None:
    conn = connect(tmp_path / "t.db", [("t_v1", lambda c: c.execute("CREATE TABLE t (x)"))])
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for j in range(50):
                with Transaction(conn) as c:
                    c.execute("INSERT INTO t VALUES (?)", (n * 1000 + j,))
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 200
    conn.close()
