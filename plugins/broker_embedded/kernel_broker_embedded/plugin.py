"""Plugin hooks: `embedded://` URLs get a KombuBroker over the SQLite transport."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl
from kernel.plugin import KombuBroker, safe_url

from .consumers import live_consumers, where
from .transport import Transport
from .urls import path_from_url


class EmbeddedBroker(KombuBroker):
    """A KombuBroker on a file, which says which file (`embedded://` alone does not: it is
    relative to the current directory) and who consumes a queue in it."""

    @property
    def location(self) -> str:
        return f"{safe_url(self.url)} ({where(path_from_url(self.url))})"

    def consumers(self, queue: str) -> int | None:
        return live_consumers(path_from_url(self.url), queue)


@hookimpl
def kernel_broker(url: str, app: Any) -> KombuBroker | None:
    if url.split("://", 1)[0] != "embedded":
        return None
    return EmbeddedBroker.for_app(url, app, transport=Transport)
