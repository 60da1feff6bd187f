"""Plugin hooks: `embedded://` URLs get a KombuBroker over the SQLite transport."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl
from kernel.plugin import KombuBroker

from .transport import Transport


@hookimpl
def kernel_broker(url: str, app: Any) -> KombuBroker | None:
    if url.split("://", 1)[0] != "embedded":
        return None
    return KombuBroker.for_app(url, app, transport=Transport)
