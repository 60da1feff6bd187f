"""What result backends share (meta encoding, waiting for a ready state), and the disabled one."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from kombu import serialization

from .exceptions import BackendError
from .meta import READY_STATES
from .protocol import JSON, json_dumps, json_loads
from .transport import Configured, QueueSpec, Stored


class BaseBackend:
    """Encodes metas with `result_serializer` and waits by polling `get()`.

    Subclasses implement `store`, `get`, `forget` (and may override `wait_for` with something
    better than polling, such as pub/sub). The optional abilities of the ResultBackend
    contract have their defaults here: not safe to store from a pool, no reply queue, no
    batched notice."""

    url: str = ""
    stores_in_pool: bool = False

    def reply_queue(self, oid: str) -> QueueSpec | None:
        return None

    def notify_channel(self, oid: str) -> str | None:
        return None

    def __init__(self, app: Configured, url: str) -> None:
        self.app = app
        self.url = url
        self.serializer = app.conf.result_serializer
        accept = app.conf.result_accept_content or app.conf.accept_content
        self.accept = serialization.prepare_accept_content(accept)
        self.expires = app.conf.result_expires
        self.content_type, self.content_encoding, _ = serialization.dumps(
            None, serializer=self.serializer
        )

    def encode(self, meta: Mapping[str, Any]) -> bytes:
        if self.serializer == "json":  # the common case, without the registry's detour
            return json_dumps(meta)
        _, encoding, data = serialization.dumps(dict(meta), serializer=self.serializer)
        return data.encode(encoding or "utf-8") if isinstance(data, str) else data

    def decode(self, data: bytes | str) -> dict[str, Any]:
        if self.content_type == JSON and (self.accept is None or JSON in self.accept):
            meta = json_loads(data)
        else:
            meta = serialization.loads(
                data, self.content_type, self.content_encoding, accept=self.accept
            )
        if not isinstance(meta, dict):
            raise BackendError(f"stored result is not a meta document: {meta!r}")
        return meta

    def store(self, items: Sequence[Stored]) -> None:
        raise NotImplementedError

    def get(self, task_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def forget(self, task_id: str) -> None:
        raise NotImplementedError

    def wait_for(
        self, task_id: str, *, deadline: float | None, interval: float
    ) -> dict[str, Any] | None:
        """Poll with a delay that starts short (most tasks are quick) and grows to `interval`."""
        delay = 0.002
        while True:
            meta = self.get(task_id)
            if meta is not None and meta.get("status") in READY_STATES:
                return meta
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            pause = min(delay, interval)
            if deadline is not None:
                pause = min(pause, deadline - now)
            time.sleep(pause)
            delay *= 1.5

    def close(self) -> None:
        pass


class DisabledBackend(BaseBackend):
    """No result backend configured: storing is a no-op, reading says how to configure one."""

    def __init__(self, app: Configured) -> None:
        super().__init__(app, "")

    _message = (
        "no result backend is configured; set result_backend (for example "
        "redis://localhost:6379/0) or App(backend=...)"
    )

    def encode(self, meta: Mapping[str, Any]) -> bytes:
        return b""

    def store(self, items: Sequence[Stored]) -> None:
        pass

    def get(self, task_id: str) -> dict[str, Any] | None:
        raise BackendError(self._message)

    def forget(self, task_id: str) -> None:
        raise BackendError(self._message)

    def wait_for(
        self, task_id: str, *, deadline: float | None, interval: float
    ) -> dict[str, Any] | None:
        raise BackendError(self._message)

    def close(self) -> None:
        pass
