"""The database result backend: results in Celery's tables through SQLAlchemy (`db+` URLs)."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl

from .store import DatabaseBackend

__all__ = ["DatabaseBackend"]


@hookimpl
def kernel_result_backend(url: str, app: Any) -> DatabaseBackend | None:
    if not url.startswith("db+"):
        return None
    return DatabaseBackend(app, url)
