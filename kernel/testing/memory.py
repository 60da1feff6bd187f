"""In-memory broker and result backend (`memory://`) for unit tests: one process, nothing kept."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from kombu.transport import memory

from ..hookspecs import hookimpl
from ..wire.backend import BaseBackend
from ..wire.kombu_broker import KombuBroker
from ..wire.transport import Stored

_RESULTS: dict[str, dict[str, tuple[str, bytes]]] = {}
_LOCK = threading.Lock()


class MemoryBackend(BaseBackend):
    """Results in a dict shared by every backend object with the same URL in this process."""

    def __init__(self, app: Any, url: str) -> None:
        super().__init__(app, url)
        with _LOCK:
            self._data = _RESULTS.setdefault(url, {})

    def store(self, items: Sequence[Stored]) -> None:
        with _LOCK:
            for item in items:
                current = self._data.get(item.task_id)
                if current is None or current[0] != "SUCCESS":
                    self._data[item.task_id] = (item.state, item.data)

    def get(self, task_id: str) -> dict[str, Any] | None:
        found = self._data.get(task_id)
        return self.decode(found[1]) if found else None

    def forget(self, task_id: str) -> None:
        with _LOCK:
            self._data.pop(task_id, None)


class _RestoringChannel(memory.Channel):
    do_restore = True  # kombu's memory channel drops unacked messages on close; brokers must not


class _Transport(memory.Transport):
    Channel = _RestoringChannel


class MemoryBrokerPlugin:
    @hookimpl
    def kernel_broker(self, url: str, app: Any) -> KombuBroker | None:
        if not url.startswith("memory://"):
            return None
        broker = KombuBroker.for_app(url, app, transport=_Transport)
        broker.transport_options.setdefault("polling_interval", 0.005)
        return broker


class MemoryBackendPlugin:
    @hookimpl
    def kernel_result_backend(self, url: str, app: Any) -> MemoryBackend | None:
        return MemoryBackend(app, url) if url.startswith("memory://") else None


broker_plugin = MemoryBrokerPlugin()
backend_plugin = MemoryBackendPlugin()
