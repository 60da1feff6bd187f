"""A meta document to the columns of `celery_taskmeta` and back, encoded as Celery encodes them.

Celery keeps `status`, `traceback`, `name`, `worker`, `retries` and `queue` as plain columns;
`result`, `children`, `args` and `kwargs` each hold one value in the result serializer's
encoding (`children` NULL when empty); `date_done` is a naive UTC datetime; `stamps` holds
``{"stamped_headers": [...], "stamps": {...}}``. `group_id` and `parent_id` have no column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from kernel.plugin import EXCEPTION_STATES, exception_to_meta, format_time, parse_time

EXTENDED = ("name", "args", "kwargs", "worker", "retries", "queue")

Dumps = Callable[[Any], bytes]
Loads = Callable[[bytes], Any]


def to_row(task_id: str, meta: Mapping[str, Any], dumps: Dumps) -> dict[str, Any]:
    """Every column's value for one meta (None where the meta has nothing for it)."""
    children = meta.get("children")
    stamped = meta.get("stamped_headers")
    stamps = None
    if stamped:
        values = {header: meta[header] for header in stamped if header in meta}
        stamps = dumps({"stamped_headers": stamped, "stamps": values})
    return {
        "task_id": task_id,
        "status": meta.get("status"),
        "result": dumps(meta.get("result")),
        "date_done": naive_utc(parse_time(meta.get("date_done"), "date_done")),
        "traceback": meta.get("traceback"),
        "children": dumps(children) if children else None,
        "name": meta.get("name"),
        "args": dumps(meta["args"]) if "args" in meta else None,
        "kwargs": dumps(meta["kwargs"]) if "kwargs" in meta else None,
        "worker": meta.get("worker"),
        "retries": meta.get("retries"),
        "queue": meta.get("queue"),
        "stamps": stamps,
    }


def to_meta(row: Mapping[Any, Any], loads: Loads) -> dict[str, Any]:
    """The meta document, in `result_meta`'s key order, from a row (missing columns are None)."""

    def load(column: str) -> Any:
        value = row.get(column)
        return None if value is None else loads(value)

    status = row["status"]
    result = load("result")
    if status in EXCEPTION_STATES:
        result = exception_document(result)
    children = load("children")
    done = row.get("date_done")
    meta: dict[str, Any] = {
        "status": status,
        "result": result,
        "traceback": row.get("traceback"),
        "children": children if children is not None else [],
        "date_done": format_time(done) if isinstance(done, datetime) else done,
    }
    if any(row.get(column) is not None for column in EXTENDED):
        meta.update(
            name=row.get("name"),
            args=load("args"),
            kwargs=load("kwargs"),
            worker=row.get("worker"),
            retries=row.get("retries"),
            queue=row.get("queue"),
        )
    stamps = load("stamps")
    if isinstance(stamps, dict) and stamps.get("stamped_headers"):
        meta["stamped_headers"] = stamps["stamped_headers"]
        if isinstance(stamps.get("stamps"), dict):
            meta.update(stamps["stamps"])
    meta["task_id"] = row["task_id"]
    return meta


def exception_document(value: Any) -> Any:
    """An exception object (Celery's pickle serializer stores those) as the exc dict."""
    if not isinstance(value, BaseException):
        return value
    # Celery pickles exceptions that cannot be pickled as a wrapper naming the original.
    name = getattr(value, "exc_cls_name", None)
    module = getattr(value, "exc_module", None)
    if isinstance(name, str) and isinstance(module, str):
        return {
            "exc_type": name,
            "exc_message": list(getattr(value, "exc_args", None) or ()),
            "exc_module": module,
        }
    return exception_to_meta(value)


def naive_utc(value: datetime | None) -> datetime | None:
    """UTC wall-clock time without tzinfo, as Celery's `DateTime` columns hold it."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
