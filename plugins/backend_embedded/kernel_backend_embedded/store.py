"""Result metas in SQLite: one row per task, written in batches, SUCCESS never replaced."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from kernel.plugin import BaseBackend, Stored, fork_guard, path_from_url

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    meta BLOB NOT NULL,
    expires_at REAL
)
"""
# A stored SUCCESS is final: a late duplicate (a redelivered task) must not turn it back.
UPSERT = """
INSERT INTO results (task_id, status, meta, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT(task_id) DO UPDATE SET
    status = excluded.status, meta = excluded.meta, expires_at = excluded.expires_at
WHERE results.status != 'SUCCESS'
"""
SWEEP_EVERY = 60.0


class EmbeddedBackend(BaseBackend):
    """`embedded://` results: `.taskkernel/results.db` unless the URL names a file."""

    def __init__(self, app: Any, url: str) -> None:
        super().__init__(app, url)
        self.path = path_from_url(url, "results.db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._next_sweep = 0.0
        self._guard = fork_guard()

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (called inside the fork guard)."""
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            # one connection per thread (sqlite3 connections must not be shared across
            # threads), and a forked child opens its own rather than use its parent's
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(SCHEMA)
            self._local.db, self._local.pid = db, os.getpid()
        return db

    # every use of SQLite is inside the fork guard: a prefork child forked while another
    # thread was inside SQLite would find SQLite's own mutexes held for ever
    def store(self, items: Sequence[Stored]) -> None:
        if not items:
            return
        now = time.time()
        expires_at = now + self.expires if self.expires else None
        with self._guard:
            db = self._db()
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(UPSERT, [(i.task_id, i.state, i.data, expires_at) for i in items])
                if now >= self._next_sweep:
                    self._next_sweep = now + SWEEP_EVERY
                    db.execute("DELETE FROM results WHERE expires_at < ?", (now,))

    def get(self, task_id: str) -> dict[str, Any] | None:
        with self._guard:
            row = (
                self._db()
                .execute("SELECT meta, expires_at FROM results WHERE task_id = ?", (task_id,))
                .fetchone()
            )
        if row is None or (row[1] is not None and row[1] < time.time()):
            return None
        return self.decode(row[0])

    def forget(self, task_id: str) -> None:
        with self._guard, self._db() as db:
            db.execute("DELETE FROM results WHERE task_id = ?", (task_id,))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            with self._guard:
                db.close()
        self._local.db = None
