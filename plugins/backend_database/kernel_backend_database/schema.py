"""Celery's result tables, column for column, created when missing."""

from __future__ import annotations

import logging
import random
import time

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

log = logging.getLogger(__name__)

metadata = sa.MetaData()

# The same types, sequences and names as Celery's models, so whichever side creates the tables
# the other reads and writes them alike. PostgreSQL ids come from the named sequences (the
# column has no server default), so every writer must name the sequence as Celery does.
_ID = sa.Integer().with_variant(sa.BigInteger(), "mssql")
# MySQL's BLOB and TEXT stop at 64 KiB; the LONG variants read the same to Celery.
_BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

tasks = sa.Table(
    "celery_taskmeta",
    metadata,
    sa.Column("id", _ID, sa.Sequence("task_id_sequence"), primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(155), unique=True),
    sa.Column("status", sa.String(50)),
    sa.Column("result", _BLOB, nullable=True),
    sa.Column("date_done", sa.DateTime, nullable=True, index=True),
    sa.Column("traceback", _TEXT, nullable=True),
    sa.Column("children", _BLOB, nullable=True),
    # written only with result_extended
    sa.Column("name", sa.String(155), nullable=True),
    sa.Column("args", _BLOB, nullable=True),
    sa.Column("kwargs", _BLOB, nullable=True),
    sa.Column("worker", sa.String(155), nullable=True),
    sa.Column("retries", sa.Integer, nullable=True),
    sa.Column("queue", sa.String(155), nullable=True),
    sa.Column("stamps", _BLOB, nullable=True),
    sqlite_autoincrement=True,
)

groups = sa.Table(
    "celery_tasksetmeta",
    metadata,
    sa.Column("id", _ID, sa.Sequence("taskset_id_sequence"), primary_key=True, autoincrement=True),
    sa.Column("taskset_id", sa.String(155), unique=True),
    sa.Column("result", _BLOB, nullable=True),
    sa.Column("date_done", sa.DateTime, nullable=True, index=True),
    sqlite_autoincrement=True,
)

CREATE_ATTEMPTS = 5


def prepare(engine: Engine) -> frozenset[str]:
    """Create the tables if missing; return the columns `celery_taskmeta` has.

    Tables made by an older Celery may lack later columns: add them (all are nullable), and
    if that is not allowed, work with the columns there are."""
    with engine.connect():
        pass  # an unreachable server fails here, at once, instead of in the retries below
    for attempt in range(CREATE_ATTEMPTS):
        try:
            metadata.create_all(engine, checkfirst=True)
            break
        except DatabaseError:
            # Another process created a table between the check and the CREATE: check again.
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.01, 0.05) * 2**attempt)
    present = {c["name"] for c in sa.inspect(engine).get_columns(tasks.name)}
    missing = [c for c in tasks.columns if c.name not in present]
    failed = False
    for column in missing:
        ddl = (
            f"ALTER TABLE {engine.dialect.identifier_preparer.format_table(tasks)} "
            f"ADD COLUMN {engine.dialect.identifier_preparer.quote(column.name)} "
            f"{column.type.compile(engine.dialect)}"
        )
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(ddl))
            present.add(column.name)
        except DatabaseError as exc:
            failed = True
            reason = (str(exc.orig or exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("%s lacks column %r; adding it failed: %s", tasks.name, column.name, reason)
    if failed:  # another process may have added it meanwhile
        present = {c["name"] for c in sa.inspect(engine).get_columns(tasks.name)}
    return frozenset(present)
