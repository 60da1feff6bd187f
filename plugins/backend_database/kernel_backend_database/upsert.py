"""Writing result rows so that a stored SUCCESS is never replaced, atomically on every dialect.

Each write is one statement per row that the database applies under the row's lock, so two
processes storing the same task at once cannot interleave a read and a write: PostgreSQL and
SQLite take ``INSERT .. ON CONFLICT (task_id) DO UPDATE .. WHERE status IS DISTINCT FROM
'SUCCESS'``; MySQL and MariaDB ``INSERT .. ON DUPLICATE KEY UPDATE`` with every column kept
when the row holds SUCCESS; other databases an UPDATE guarded by the same condition, then an
INSERT that the unique task_id makes lose to a concurrent one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from kernel.plugin import SUCCESS


def write(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update each row (all with the same keys), keeping rows that hold SUCCESS."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        _on_conflict(conn, table, rows)
    elif dialect in ("mysql", "mariadb"):
        _on_duplicate_key(conn, table, rows)
    else:
        guarded(conn, table, rows)


def _keep_stamps(table: sa.Table, new: Any) -> Any:
    # Celery leaves stamps alone when a later state carries none.
    return sa.func.coalesce(new, table.c.stamps)


def _on_conflict(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)
    changes: dict[str, Any] = {
        key: insert.excluded[key] for key in rows[0] if key not in ("task_id", "stamps")
    }
    if "stamps" in rows[0]:
        changes["stamps"] = _keep_stamps(table, insert.excluded.stamps)
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.task_id],
        set_=changes,
        where=table.c.status.is_distinct_from(SUCCESS),
    )
    conn.execute(statement, list(rows))


def _on_duplicate_key(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    insert = mysql.insert(table)
    done = table.c.status == SUCCESS

    def unless_done(key: str) -> Any:
        new = insert.inserted[key]
        if key == "stamps":
            new = _keep_stamps(table, new)
        return sa.case((done, table.c[key]), else_=new)

    # MySQL applies the assignments left to right, each seeing the ones before it: status goes
    # last so that every other column still tests the status the row had.
    keys = [key for key in rows[0] if key not in ("task_id", "status")]
    changes = [(key, unless_done(key)) for key in keys]
    changes.append(("status", unless_done("status")))
    conn.execute(insert.on_duplicate_key_update(changes), list(rows))


def guarded(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """The portable way: UPDATE unless SUCCESS; if no row exists, INSERT; if a concurrent
    INSERT won, UPDATE (still unless SUCCESS) over what it wrote."""
    for row in rows:
        values = {key: value for key, value in row.items() if key != "task_id"}
        if "stamps" in values:
            values["stamps"] = _keep_stamps(
                table, sa.literal(values["stamps"], table.c.stamps.type)
            )
        update = (
            sa.update(table)
            .where(table.c.task_id == row["task_id"], table.c.status.is_distinct_from(SUCCESS))
            .values(values)
        )
        if conn.execute(update).rowcount:
            continue
        if conn.execute(sa.select(table.c.id).where(table.c.task_id == row["task_id"])).first():
            continue  # the row exists and holds SUCCESS
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(table).values(row))
        except IntegrityError:
            conn.execute(update)
