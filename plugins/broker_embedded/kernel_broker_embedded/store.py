"""The SQLite file: schema and every statement the transport runs against it.

A message row is in one of three states:

* ``READY``: visible; consumers claim the most urgent, oldest one first.
* ``DELAYED``: invisible until ``visible_at`` (its ETA).
* ``RESERVED``: handed to the channel ``owner`` under claim number ``claim``; invisible
  until ``visible_at``, the end of its lease.

Delayed rows that fall due and reserved rows whose lease ran out are turned back into
ready ones by the claim itself, so no sweeper process is needed for either.
"""

from __future__ import annotations

import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from kernel.plugin import ForkGuard, fork_guard

READY, DELAYED, RESERVED = 0, 1, 2

SCHEMA_VERSION = 2  # 2: the consumers table (an older file gains it when next opened)

# Partial indexes: each query below names the index predicate literally
# (state = 0, state > 0, state = 2) so SQLite can use it.
_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS messages (
        id          INTEGER PRIMARY KEY,
        queue       TEXT    NOT NULL,
        priority    INTEGER NOT NULL DEFAULT 0,
        state       INTEGER NOT NULL DEFAULT 0,
        visible_at  REAL    NOT NULL DEFAULT 0,
        owner       TEXT,
        claim       INTEGER,
        redelivered INTEGER NOT NULL DEFAULT 0,
        payload     TEXT    NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS messages_ready"
    " ON messages (queue, priority DESC, id) WHERE state = 0",
    "CREATE INDEX IF NOT EXISTS messages_pending ON messages (queue, visible_at) WHERE state > 0",
    "CREATE INDEX IF NOT EXISTS messages_owner ON messages (owner) WHERE state = 2",
    """
    CREATE TABLE IF NOT EXISTS queues (
        name        TEXT PRIMARY KEY,
        auto_delete INTEGER NOT NULL DEFAULT 0,
        owner       TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS exchanges (
        name        TEXT PRIMARY KEY,
        type        TEXT NOT NULL,
        durable     INTEGER NOT NULL DEFAULT 1,
        auto_delete INTEGER NOT NULL DEFAULT 0,
        arguments   TEXT
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS bindings (
        exchange    TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        queue       TEXT NOT NULL,
        arguments   TEXT,
        PRIMARY KEY (exchange, routing_key, queue)
    )
    """,
    "CREATE INDEX IF NOT EXISTS bindings_queue ON bindings (queue)",
    """
    CREATE TABLE IF NOT EXISTS owners (
        token   TEXT PRIMARY KEY,
        host    TEXT NOT NULL,
        pid     INTEGER NOT NULL,
        started INTEGER,
        seen    REAL NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS owners_host ON owners (host)",
    # which queues each channel consumes, so a client can tell nobody consumes its queue here
    """
    CREATE TABLE IF NOT EXISTS consumers (
        token   TEXT NOT NULL,
        queue   TEXT NOT NULL,
        PRIMARY KEY (queue, token)
    )
    """,
)

# Due delayed rows and expired leases of one queue become ready; an expired lease
# means the message was handed out before, hence the redelivered flag.
_PROMOTE = """
    UPDATE messages
       SET state = 0, owner = NULL, claim = NULL,
           redelivered = CASE WHEN state = 2 THEN 1 ELSE redelivered END
     WHERE queue = ? AND state > 0 AND visible_at <= ?
"""

_CLAIM = """
    UPDATE messages
       SET state = 2, owner = ?, claim = ?, visible_at = ?
     WHERE id IN (SELECT id FROM messages
                   WHERE queue = ? AND state = 0
                   ORDER BY priority DESC, id
                   LIMIT ?)
 RETURNING id, priority, redelivered, payload
"""

_TAKE = """
    DELETE FROM messages
     WHERE id = (SELECT id FROM messages
                  WHERE queue = ? AND state = 0
                  ORDER BY priority DESC, id
                  LIMIT 1)
 RETURNING id, priority, redelivered, payload
"""

_RELEASE_OWNER = """
    UPDATE messages
       SET state = 0, owner = NULL, claim = NULL, visible_at = 0, redelivered = 1
     WHERE owner = ? AND state = 2
"""

Row = tuple[int, int, int, str]  # id, priority, redelivered, payload


class _Locks:
    """This connection's lock, then the process's fork guard, taken and left together."""

    __slots__ = ("_guard", "_own")

    def __init__(self, own: threading.RLock, guard: ForkGuard) -> None:
        self._own, self._guard = own, guard

    def __enter__(self) -> None:
        self._own.acquire()
        self._guard.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._guard.__exit__(None, None, None)
        self._own.release()


class Store:
    """One SQLite connection, safe to share between threads (statements are serialized)."""

    def __init__(self, path: pathlib.Path, busy_timeout: float = 30.0) -> None:
        self.path = path
        # statements are serialized per connection, and a fork waits for the one under way
        # (a prefork child forked inside SQLite would find its mutexes held for ever)
        self._lock = _Locks(threading.RLock(), fork_guard())
        with self._lock:
            self._db = sqlite3.connect(
                str(path),
                timeout=busy_timeout,
                isolation_level=None,  # explicit BEGIN IMMEDIATE below; no implicit transactions
                check_same_thread=False,
            )
            self._setup(busy_timeout)

    # -- connection and schema ------------------------------------------------------

    def _setup(self, busy_timeout: float) -> None:
        db = self._db
        deadline = time.monotonic() + busy_timeout
        while True:
            # Switching a brand-new file to WAL needs a moment of exclusive access; a
            # concurrent first open may find it locked, so retry within the busy timeout.
            try:
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        # NORMAL in WAL mode survives process crashes; it only skips the per-commit fsync.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA journal_size_limit=67108864")
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with self._write() as tx:
                if tx.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    for statement in _SCHEMA:
                        tx.execute(statement)
                    tx.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so the busy timeout applies; a deferred
        # transaction that upgrades later can fail at once with SQLITE_BUSY instead.
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:  # type: ignore[type-arg]
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- messages -------------------------------------------------------------------

    def insert(
        self, queues: Iterable[str], priority: int, state: int, visible_at: float, payload: str
    ) -> None:
        with self._write() as tx:
            tx.executemany(
                "INSERT INTO messages (queue, priority, state, visible_at, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                [(queue, priority, state, visible_at, payload) for queue in queues],
            )

    def claim(
        self, queue: str, limit: int, owner: str, claim: int, lease_until: float, now: float
    ) -> list[Row]:
        """Reserve up to ``limit`` messages for ``owner``, most urgent first."""
        with self._write() as tx:
            tx.execute(_PROMOTE, (queue, now))
            rows = tx.execute(_CLAIM, (owner, claim, lease_until, queue, limit)).fetchall()
        # RETURNING yields rows in no particular order.
        rows.sort(key=lambda r: (-r[1], r[0]))
        return rows

    def take(self, queue: str, now: float) -> list[Row]:
        """Remove and return the next message (for consumers that do not acknowledge)."""
        with self._write() as tx:
            tx.execute(_PROMOTE, (queue, now))
            return tx.execute(_TAKE, (queue,)).fetchall()

    # The (id, owner, claim) triple names one particular hand-out of a row: once a lease
    # has run out and someone else holds the message, the old holder's ack matches nothing.

    def ack(self, row_id: int, owner: str, claim: int) -> bool:
        with self._write() as tx:
            cur = tx.execute(
                "DELETE FROM messages WHERE id = ? AND owner = ? AND claim = ?",
                (row_id, owner, claim),
            )
            return cur.rowcount > 0

    def requeue(self, row_id: int, owner: str, claim: int) -> bool:
        """Make a reserved message visible again behind everything already queued."""
        with self._write() as tx:
            # A new row gets the highest id, i.e. the back of its priority level.
            cur = tx.execute(
                "INSERT INTO messages (queue, priority, state, visible_at, redelivered, payload)"
                " SELECT queue, priority, 0, 0, 1, payload FROM messages"
                "  WHERE id = ? AND owner = ? AND claim = ?",
                (row_id, owner, claim),
            )
            if cur.rowcount:
                tx.execute("DELETE FROM messages WHERE id = ?", (row_id,))
            return cur.rowcount > 0

    def unclaim(self, row_ids: Sequence[int], owner: str, claim: int) -> None:
        """Give back rows that were claimed but never handed to a callback."""
        with self._write() as tx:
            tx.executemany(
                "UPDATE messages SET state = 0, owner = NULL, claim = NULL, visible_at = 0"
                " WHERE id = ? AND owner = ? AND claim = ?",
                [(row_id, owner, claim) for row_id in row_ids],
            )

    def release_owner(self, owner: str) -> int:
        """Make every reservation of ``owner`` visible again (flagged redelivered)."""
        with self._write() as tx:
            return tx.execute(_RELEASE_OWNER, (owner,)).rowcount

    def renew(self, owners: Iterable[str], lease_until: float, now: float) -> None:
        with self._write() as tx:
            for owner in owners:
                tx.execute(
                    "UPDATE messages SET visible_at = ? WHERE owner = ? AND state = 2",
                    (lease_until, owner),
                )
                tx.execute("UPDATE owners SET seen = ? WHERE token = ?", (now, owner))

    def next_due(self, queues: Iterable[str]) -> float | None:
        """Earliest time a delayed message or a lease of these queues falls due."""
        best: float | None = None
        for queue in set(queues):
            (due,) = self._read(
                "SELECT MIN(visible_at) FROM messages WHERE queue = ? AND state > 0", (queue,)
            )[0]
            if due is not None and (best is None or due < best):
                best = due
        return best

    def size(self, queue: str) -> int:
        row = self._read(
            "SELECT (SELECT COUNT(*) FROM messages WHERE queue = ? AND state = 0)"
            "     + (SELECT COUNT(*) FROM messages WHERE queue = ? AND state > 0 AND state = 1)",
            (queue, queue),
        )
        return int(row[0][0])

    def purge(self, queue: str) -> int:
        with self._write() as tx:
            n = tx.execute("DELETE FROM messages WHERE queue = ? AND state = 0", (queue,)).rowcount
            n += tx.execute(
                "DELETE FROM messages WHERE queue = ? AND state > 0 AND state = 1", (queue,)
            ).rowcount
            return n

    # -- queues, exchanges, bindings ------------------------------------------------

    def declare_queue(self, name: str, auto_delete: bool) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO queues (name, auto_delete) VALUES (?, ?)",
                (name, int(auto_delete)),
            )

    def has_queue(self, name: str) -> bool:
        return bool(self._read("SELECT 1 FROM queues WHERE name = ?", (name,)))

    def adopt_queue(self, name: str, owner: str) -> None:
        """Tie an auto-delete queue to the channel consuming it."""
        with self._write() as tx:
            tx.execute(
                "UPDATE queues SET owner = ? WHERE name = ? AND auto_delete = 1", (owner, name)
            )

    def delete_queue(self, name: str) -> int:
        with self._write() as tx:
            return self._delete_queue(tx, name)

    @staticmethod
    def _delete_queue(tx: sqlite3.Connection, name: str) -> int:
        n = tx.execute("DELETE FROM messages WHERE queue = ?", (name,)).rowcount
        tx.execute("DELETE FROM bindings WHERE queue = ?", (name,))
        tx.execute("DELETE FROM queues WHERE name = ?", (name,))
        return n

    def declare_exchange(
        self, name: str, type: str, durable: bool, auto_delete: bool, arguments: str
    ) -> str:
        """Create the exchange if new; return the type it has in the file."""
        with self._write() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO exchanges (name, type, durable, auto_delete, arguments)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, type, int(durable), int(auto_delete), arguments),
            )
            return str(
                tx.execute("SELECT type FROM exchanges WHERE name = ?", (name,)).fetchone()[0]
            )

    def exchange_type(self, name: str) -> str | None:
        rows = self._read("SELECT type FROM exchanges WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def exchanges(self) -> list[str]:
        return [r[0] for r in self._read("SELECT name FROM exchanges ORDER BY name")]

    def delete_exchange(self, name: str) -> None:
        with self._write() as tx:
            tx.execute("DELETE FROM bindings WHERE exchange = ?", (name,))
            tx.execute("DELETE FROM exchanges WHERE name = ?", (name,))

    def bind(self, queue: str, exchange: str, routing_key: str, arguments: str) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO bindings (exchange, routing_key, queue, arguments)"
                " VALUES (?, ?, ?, ?)",
                (exchange, routing_key, queue, arguments),
            )

    def unbind(self, queue: str, exchange: str, routing_key: str) -> None:
        with self._write() as tx:
            tx.execute(
                "DELETE FROM bindings WHERE exchange = ? AND routing_key = ? AND queue = ?",
                (exchange, routing_key, queue),
            )

    def routes(self, exchange: str) -> tuple[str | None, list[tuple[str, str, str | None]]]:
        """The exchange's type (None if undeclared) and its (queue, routing_key, arguments)."""
        rows = self._read(
            "SELECT e.type, b.queue, b.routing_key, b.arguments"
            "  FROM exchanges e LEFT JOIN bindings b ON b.exchange = e.name"
            " WHERE e.name = ?",
            (exchange,),
        )
        if not rows:
            return None, []
        return str(rows[0][0]), [(r[1], r[2], r[3]) for r in rows if r[1] is not None]

    def all_bindings(self) -> list[tuple[str, str, str]]:
        """(queue, exchange, routing_key) for every binding."""
        return [
            (r[0], r[1], r[2])
            for r in self._read("SELECT queue, exchange, routing_key FROM bindings")
        ]

    # -- owners ---------------------------------------------------------------------

    def register_owner(self, token: str, host: str, pid: int, started: int | None) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO owners (token, host, pid, started, seen)"
                " VALUES (?, ?, ?, ?, ?)",
                (token, host, pid, started, time.time()),
            )

    def owners_on(self, host: str) -> list[tuple[str, int, int | None]]:
        return [
            (r[0], int(r[1]), r[2])
            for r in self._read("SELECT token, pid, started FROM owners WHERE host = ?", (host,))
        ]

    def add_consumer(self, token: str, queue: str) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO consumers (token, queue) VALUES (?, ?)", (token, queue)
            )

    def remove_consumer(self, token: str, queue: str) -> None:
        with self._write() as tx:
            tx.execute("DELETE FROM consumers WHERE token = ? AND queue = ?", (token, queue))

    def consumers_of(self, queue: str) -> list[tuple[str, int, int | None]]:
        """(host, pid, started) of each channel registered as consuming `queue`."""
        return [
            (r[0], int(r[1]), r[2])
            for r in self._read(
                "SELECT o.host, o.pid, o.started FROM consumers c"
                "  JOIN owners o ON o.token = c.token WHERE c.queue = ?",
                (queue,),
            )
        ]

    def retire_owner(self, token: str) -> int:
        """Forget a channel that closed or died: release its reservations, drop its queues."""
        with self._write() as tx:
            released = tx.execute(_RELEASE_OWNER, (token,)).rowcount
            tx.execute("DELETE FROM consumers WHERE token = ?", (token,))
            doomed = tx.execute(
                "SELECT name FROM queues WHERE owner = ? AND auto_delete = 1", (token,)
            ).fetchall()
            for (name,) in doomed:
                self._delete_queue(tx, name)
            tx.execute("DELETE FROM owners WHERE token = ?", (token,))
            return int(released)
