"""The database result backend: one SQLAlchemy engine per process, Celery's tables."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import sqlalchemy as sa
from kombu import serialization
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from kernel.plugin import SUCCESS, BackendError, BaseBackend, Stored

from . import columns, schema, upsert, urls

log = logging.getLogger(__name__)

T = TypeVar("T")

PICKLE = "application/x-python-serialize"
CONNECT_TIMEOUT = 10
# Deadlocks, lock timeouts and "database is locked" clear on a retry; every operation here may
# be repeated (stores never replace SUCCESS, so a store applied twice reads as applied once).
ATTEMPTS = 3


class DatabaseBackend(BaseBackend):
    """`db+<SQLAlchemy URL>` results in `celery_taskmeta`, readable by Celery's own backend."""

    sweep_interval = 60.0  # seconds between deletions of expired rows, per process

    def __init__(self, app: Any, url: str) -> None:
        super().__init__(app, url)
        self.sa_url = urls.sqlalchemy_url(url)
        self.where = urls.describe(self.sa_url)
        self._engine: Engine | None = None
        self._pid = 0
        self._columns: frozenset[str] = frozenset()
        # one lock per process: a lock held in the parent when it forked stays held in the child
        self._locks: dict[int, threading.Lock] = {}
        self._inherited: list[Engine] = []
        self._next_sweep = 0.0

    # -- the engine -----------------------------------------------------------------------
    def _connect(self) -> Engine:
        pid = os.getpid()
        engine = self._engine
        if engine is not None and self._pid == pid:
            return engine
        with self._locks.setdefault(pid, threading.Lock()):
            if self._engine is not None and self._pid != pid:
                # The parent's pooled connections share their sockets with the parent: keep
                # them referenced and untouched, since closing (or collecting) them here would
                # end the parent's sessions.
                self._inherited.append(self._engine)
                self._engine = None
            if self._engine is None:
                engine = self._create_engine()
                try:
                    self._columns = schema.prepare(engine)
                except SQLAlchemyError as exc:
                    engine.dispose()
                    raise self._error(exc) from None
                self._engine, self._pid = engine, pid
            return self._engine

    def _create_engine(self) -> Engine:
        backend = self.sa_url.get_backend_name()
        options: dict[str, Any] = {"pool_pre_ping": True}
        connect_args: dict[str, Any] = {}
        if backend == "sqlite":
            connect_args["timeout"] = 30  # wait for another process's write, as a lock wait
        else:
            options["pool_recycle"] = 3600  # servers drop idle connections (MySQL's wait_timeout)
            if "connect_timeout" not in self.sa_url.query:
                connect_args["connect_timeout"] = CONNECT_TIMEOUT
        try:
            engine = sa.create_engine(self.sa_url, connect_args=connect_args, **options)
        except ImportError as exc:
            raise BackendError(
                f"database backend {self.where}: driver {exc.name or self.sa_url.drivername} "
                f"is not installed ({urls.install_hint(self.sa_url)})"
            ) from None
        except ArgumentError as exc:
            raise BackendError(
                f"bad database backend URL {urls.redact(self.url)}: {_one_line(exc)}"
            ) from None
        if backend == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_wal)
        return engine

    def _run(self, work: Callable[[Connection], T]) -> T:
        """`work` in one transaction, repeated on transient errors; errors as BackendError."""
        engine = self._connect()
        for attempt in range(ATTEMPTS):
            try:
                with engine.begin() as conn:
                    return work(conn)
            except OperationalError as exc:
                if attempt == ATTEMPTS - 1 or _unreachable(exc):
                    raise self._error(exc) from None
                time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
            except SQLAlchemyError as exc:
                raise self._error(exc) from None
        raise AssertionError("unreachable")

    def _error(self, exc: BaseException) -> BackendError:
        return BackendError(f"database backend {self.where}: {_one_line(exc)}")

    # -- values in the result serializer ---------------------------------------------------
    def _dumps(self, value: Any) -> bytes:
        _, encoding, data = serialization.dumps(value, serializer=self.serializer)
        return data.encode(encoding or "utf-8") if isinstance(data, str) else bytes(data)

    def _loads(self, data: bytes) -> Any:
        data = bytes(data)
        try:
            return serialization.loads(
                data, self.content_type, self.content_encoding, accept=self.accept
            )
        except Exception:
            # A Celery configured for pickle wrote it: read it only if pickle is accepted.
            if data[:1] == b"\x80" and PICKLE in self.accept:
                return serialization.loads(data, PICKLE, "binary", accept=self.accept)
            raise

    # -- the role --------------------------------------------------------------------------
    def store(self, items: Sequence[Stored]) -> None:
        if not items:
            return
        latest: dict[str, dict[str, Any]] = {}
        for item in items:
            earlier = latest.get(item.task_id)
            if earlier is not None and earlier["status"] == SUCCESS:
                continue  # the same rule within a batch as against the table
            latest[item.task_id] = columns.to_row(item.task_id, self.decode(item.data), self._dumps)
        self._connect()
        present = self._columns
        # sorted, so concurrent batches lock rows in the same order and cannot deadlock
        rows = [
            {key: value for key, value in latest[task_id].items() if key in present}
            for task_id in sorted(latest)
        ]
        self._run(lambda conn: upsert.write(conn, schema.tasks, rows))
        if self.expires and time.monotonic() >= self._next_sweep:
            self._sweep()

    def get(self, task_id: str) -> dict[str, Any] | None:
        self._connect()
        wanted = [column for column in schema.tasks.columns if column.name in self._columns]
        query = sa.select(*wanted).where(schema.tasks.c.task_id == task_id)
        row = self._run(lambda conn: conn.execute(query).mappings().first())
        if row is None or self._expired(row["date_done"]):
            return None
        try:
            return columns.to_meta(row, self._loads)
        except Exception as exc:
            raise BackendError(
                f"database backend {self.where}: cannot decode the result of task {task_id}: "
                f"{_one_line(exc)}"
            ) from None

    def forget(self, task_id: str) -> None:
        statement = sa.delete(schema.tasks).where(schema.tasks.c.task_id == task_id)
        self._run(lambda conn: conn.execute(statement))

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self._pid == os.getpid():
            engine.dispose()
        else:
            self._inherited.append(engine)  # the parent's: leave its connections alone

    # -- expiry ----------------------------------------------------------------------------
    def _cutoff(self) -> datetime:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        return now - timedelta(seconds=float(self.expires or 0))

    def _expired(self, date_done: Any) -> bool:
        # Rows wait for the next sweep; until then they read as gone, like an expired key.
        return bool(self.expires) and isinstance(date_done, datetime) and date_done < self._cutoff()

    def _sweep(self) -> None:
        # jittered, so many processes started together do not all sweep together
        self._next_sweep = time.monotonic() + self.sweep_interval * random.uniform(0.75, 1.25)
        cutoff = self._cutoff()

        def delete(conn: Connection) -> None:
            for table in (schema.tasks, schema.groups):
                conn.execute(sa.delete(table).where(table.c.date_done < cutoff))

        try:
            self._run(delete)
        except BackendError as exc:  # the results are stored; the sweep can wait for next time
            log.warning("could not delete expired results: %s", exc)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (clients polling for results) run alongside a worker's writes.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def _unreachable(exc: OperationalError) -> bool:
    """A failure to connect, where retrying at once only makes the caller wait longer."""
    return "connect" in _one_line(exc).lower()


def _one_line(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's SQL echo and links: its first line."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    return first or type(exc).__name__
