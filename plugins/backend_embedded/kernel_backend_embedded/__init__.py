"""The embedded result backend: task results in a local SQLite file, shared by local processes."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl

from .store import EmbeddedBackend

__all__ = ["EmbeddedBackend"]


@hookimpl
def kernel_result_backend(url: str, app: Any) -> EmbeddedBackend | None:
    if url.split("://", 1)[0] != "embedded":
        return None
    return EmbeddedBackend(app, url)
