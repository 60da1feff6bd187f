"""Plugin hooks: `embedded://` URLs get a KombuBroker over the SQLite transport."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl
from kernel.plugin import KombuBroker

from .consumers import live_consumers, where
from .transport import Transport
from .urls import path_from_url


@hookimpl
def kernel_broker(url: str, app: Any) -> KombuBroker | None:
    if url.split("://", 1)[0] != "embedded":
        return None
    return KombuBroker.for_app(url, app, transport=Transport)


@hookimpl
def kernel_queue_consumers(url: str, queue: str, app: Any) -> tuple[str, int | None] | None:
    """The file, which `embedded://` alone does not name (it is relative to the current
    directory), and the live workers consuming `queue` in it."""
    if url.split("://", 1)[0] != "embedded":
        return None
    path = path_from_url(url)
    return where(path), live_consumers(path, queue)
