"""AsyncResult and EagerResult: a handle on a task's outcome, read from the app's result backend."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..wire import exceptions
from ..wire.meta import (
    EXCEPTION_STATES,
    FAILURE,
    PENDING,
    PROPAGATE_STATES,
    READY_STATES,
    SUCCESS,
    exception_from_meta,
)

if TYPE_CHECKING:
    from .app import App


class AsyncResult:
    """A handle on a task's outcome, read from the app's result backend."""

    def __init__(self, id: str, app: App, *, meta: Mapping[str, Any] | None = None) -> None:
        self.id = id
        self.app = app
        self._meta: Mapping[str, Any] | None = (
            meta if meta and meta.get("status") in READY_STATES else None
        )

    task_id = property(lambda self: self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _get_meta(self) -> Mapping[str, Any]:
        if self._meta is not None:
            return self._meta
        meta = self.app.backend.get(self.id) or {"status": PENDING, "result": None}
        if meta.get("status") in READY_STATES:
            self._meta = meta  # ready states never change; stop asking
        return meta

    @property
    def state(self) -> str:
        return str(self._get_meta()["status"])

    status = state

    @property
    def result(self) -> Any:
        meta = self._get_meta()
        if meta.get("status") in EXCEPTION_STATES:
            return exception_from_meta(meta.get("result"))
        return meta.get("result")

    info = result

    @property
    def traceback(self) -> str | None:
        return self._get_meta().get("traceback")

    @property
    def date_done(self) -> str | None:
        return self._get_meta().get("date_done")

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    def forget(self) -> None:
        self._meta = None
        self.app.backend.forget(self.id)

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5
    ) -> Any:
        """Wait for a ready state; return the result or (if `propagate`) raise the exception."""
        if self._meta is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            meta = self.app.backend.wait_for(self.id, deadline=deadline, interval=interval)
            if meta is None:
                raise exceptions.TimeoutError(f"result {self.id} not ready after {timeout}s")
            self._meta = meta
        if self._meta["status"] in PROPAGATE_STATES and propagate:
            raise exception_from_meta(self._meta.get("result"))
        return self.result

    wait = get


class EagerResult(AsyncResult):
    """The outcome of `task.apply()`: already known, never read from a backend."""

    def __init__(
        self, id: str, app: App, meta: Mapping[str, Any], exc: BaseException | None = None
    ) -> None:
        super().__init__(id, app)
        self._meta = meta
        self._exc = exc

    def _get_meta(self) -> Mapping[str, Any]:
        assert self._meta is not None
        return self._meta

    @property
    def result(self) -> Any:
        return self._exc if self._exc is not None else super().result

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5
    ) -> Any:
        if self.state in PROPAGATE_STATES and propagate:
            raise (
                self._exc
                if self._exc is not None
                else exception_from_meta(self._get_meta()["result"])
            )
        return self.result

    def forget(self) -> None:
        pass
