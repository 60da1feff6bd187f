"""The Redis result backend plugin: `redis://`, `rediss://` and `sentinel://` result URLs."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl

from .backend import RedisBackend

__all__ = ["RedisBackend"]


@hookimpl
def kernel_result_backend(url: str, app: Any) -> RedisBackend | None:
    scheme = url.split(";", 1)[0].strip().split("://", 1)[0].lower()
    if scheme not in ("redis", "rediss", "sentinel"):
        return None
    return RedisBackend(app, url)
