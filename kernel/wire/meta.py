"""Task states and the result meta document as Celery writes it, with the exception codec."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import exceptions
from .protocol import Request, format_time, utcnow

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
REJECTED = "REJECTED"
RETRY = "RETRY"
IGNORED = "IGNORED"

READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

_OURS: dict[str, type[BaseException]] = {
    name: getattr(exceptions, name) for name in exceptions.WIRE_MODULES
}
_SYNTHESIZED: dict[tuple[str, str], type[BaseException]] = {}


def exception_to_meta(exc: BaseException) -> dict[str, Any]:
    """{"exc_type", "exc_message", "exc_module"}: class qualname and module, args as a list."""
    cls = type(exc)
    module = cls.__module__
    if module == exceptions.__name__ and cls.__qualname__ in exceptions.WIRE_MODULES:
        module = exceptions.WIRE_MODULES[cls.__qualname__]
    return {
        "exc_type": cls.__qualname__,
        "exc_message": _jsonable(list(exc.args)),
        "exc_module": module,
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def exception_from_meta(meta: Any) -> BaseException:
    """Rebuild an exception from its stored form, importing only real exception classes."""
    if isinstance(meta, BaseException):  # pickled results carry the object itself
        return meta
    if not isinstance(meta, Mapping) or "exc_type" not in meta:
        return Exception(meta)
    name = str(meta.get("exc_type"))
    module = str(meta.get("exc_module") or "builtins")
    message = meta.get("exc_message")
    args = message if isinstance(message, list) else [] if message is None else [message]
    cls = _exception_class(module, name)
    try:
        return cls(*args)
    except Exception:  # a constructor with another signature: keep type name and text
        return _synthesize(module, name)(*args)


def _exception_class(module: str, name: str) -> type[BaseException]:
    if module in ("celery.exceptions", "billiard.exceptions") and name in _OURS:
        return _OURS[name]
    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError):
        return _synthesize(module, name)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    # the name resolves to something that is not an exception: never call it
    return _synthesize(module, name)


def _synthesize(module: str, name: str) -> type[BaseException]:
    """A stand-in class with the stored name, for exceptions this process cannot import."""
    key = (module, name)
    if key not in _SYNTHESIZED:
        cls = type(name.rsplit(".", 1)[-1], (Exception,), {"__module__": module})
        cls.__qualname__ = name
        _SYNTHESIZED[key] = cls
    return _SYNTHESIZED[key]


def result_meta(
    task_id: str,
    status: str,
    result: Any,
    *,
    traceback: str | None = None,
    children: list[Any] | None = None,
    request: Request | None = None,
    extended: bool = False,
    date_done: datetime | None = None,
) -> dict[str, Any]:
    """The meta document, with Celery's fields in Celery's order (task_id last)."""
    if status in EXCEPTION_STATES and isinstance(result, BaseException):
        result = exception_to_meta(result)
    meta: dict[str, Any] = {
        "status": status,
        "result": result,
        "traceback": traceback,
        "children": children if children is not None else [],
        "date_done": format_time(date_done or utcnow()) if status in READY_STATES else None,
    }
    if request is not None:
        if request.group:
            meta["group_id"] = request.group
        if request.parent_id:
            meta["parent_id"] = request.parent_id
        if extended:
            meta.update(
                name=request.name,
                args=request.args,
                kwargs=request.kwargs,
                worker=request.hostname,
                retries=request.retries,
                queue=request.delivery_info.get("routing_key"),
            )
    meta["task_id"] = task_id
    return meta
