"""SQLite persistence of the LD and the SAD (never keys, never logical SPD entries).

One SQLite transaction per key-manager change. The key manager opens the transaction, writes the
rows, commits the engine, and only then commits SQLite (see :class:`~.manager.KeyManager`), so after
a crash the database holds either the state before the change or the state after it, and the
restart reconciliation settles any difference with the engine's table. File databases use WAL with
``synchronous=FULL`` so that a committed change survives the process being killed at any point.
"""

import json
import sqlite3

from .errors import PersistenceError


__all__ = ["Store", "SCHEMA_VERSION"]


SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS latches (handle INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS child_sas (sa_id INTEGER PRIMARY KEY, record TEXT NOT NULL);
"""


class Store:
    def __init__(self, path=":memory:", *, synchronous="FULL"):
        if not isinstance(path, str) or not path:
            raise TypeError(f"Database path must be a non-empty string, not {path!r}")
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be 'OFF', 'NORMAL', 'FULL' or 'EXTRA', not {synchronous!r}")
        self.path = path
        # isolation_level=None: we issue BEGIN and COMMIT ourselves, one transaction per change.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        version = self.get_meta("schema")
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(version) != SCHEMA_VERSION:
            raise PersistenceError(f"Database {path!r} has schema {version}, this key manager "
                                   f"expects {SCHEMA_VERSION}")
        self._in_txn = False

    def close(self):
        self._db.close()

    # --- transactions ---------------------------------------------------------------------------

    def begin(self):
        if self._in_txn:
            raise PersistenceError("A database transaction is already open")
        self._db.execute("BEGIN IMMEDIATE")
        self._in_txn = True

    def commit(self):
        self._db.execute("COMMIT")
        self._in_txn = False

    def rollback(self):
        if self._in_txn:
            self._db.execute("ROLLBACK")
            self._in_txn = False

    # --- rows -----------------------------------------------------------------------------------

    def get_meta(self, key, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key, value):
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def put_latch(self, latch):
        self._db.execute("INSERT OR REPLACE INTO latches VALUES (?, ?)",
                         (latch.handle, json.dumps(latch.to_record(), separators=(",", ":"))))

    def delete_latch(self, handle):
        self._db.execute("DELETE FROM latches WHERE handle = ?", (handle,))

    def put_sa(self, sa):
        self._db.execute("INSERT OR REPLACE INTO child_sas VALUES (?, ?)",
                         (sa.sa_id, json.dumps(sa.to_record(), separators=(",", ":"))))

    def delete_sa(self, sa_id):
        self._db.execute("DELETE FROM child_sas WHERE sa_id = ?", (sa_id,))

    def latch_records(self):
        return [json.loads(r) for (r,) in self._db.execute("SELECT record FROM latches ORDER BY handle")]

    def sa_records(self):
        return [json.loads(r) for (r,) in self._db.execute("SELECT record FROM child_sas ORDER BY sa_id")]

    def integrity_check(self):
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]
