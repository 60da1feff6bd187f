"""eventlet under the shared green pool: how it spawns, kills, times out and wakes its hub."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import eventlet
from eventlet import greenthread, hubs, patcher
from eventlet.event import Event
from kernel_pool_green.library import Cancel
from kernel_pool_green.pool import GreenPool

from .patch import is_patched


class _Doorbell:
    """eventlet has no watcher other threads may poke: a byte down a pipe wakes a listening
    green thread, which runs the answer on the hub."""

    def __init__(self, answer: Callable[[], None]) -> None:
        self._answer = answer
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._rung = False  # a byte is on its way: more rings before it is read add nothing
        self._lock = threading.Lock()  # a ring never writes to a pipe `close` has closed
        self._listener = eventlet.spawn(self._listen)

    def _listen(self) -> None:
        while True:
            hubs.trampoline(self._read, read=True)
            try:
                os.read(self._read, 4096)
            except BlockingIOError:
                pass
            # after the read: a call queued from now on rings again
            self._rung = False
            self._answer()

    def ring(self) -> None:
        if self._rung:
            return
        with self._lock:
            if self._write < 0:
                return
            self._rung = True
            try:
                os.write(self._write, b"\0")
            except BlockingIOError:
                pass  # a full pipe wakes the listener anyway

    def close(self) -> None:
        self._listener.kill()
        with self._lock:
            os.close(self._read)
            os.close(self._write)
            self._read = self._write = -1


class _Latch:
    """eventlet's Event, under the name the shared pool uses (`send` is its `set`)."""

    def __init__(self) -> None:
        self._event = Event()

    def wait(self) -> Any:
        return self._event.wait()

    def set(self) -> None:
        self._event.send()


class Eventlet:
    """The GreenLibrary adapter for eventlet."""

    name = "eventlet"
    # the OS thread's id, even where `threading` is patched to answer with green thread ids
    os_thread_id: Callable[[], int] = staticmethod(patcher.original("_thread").get_ident)

    def patched(self) -> bool:
        return is_patched()

    def spawn(self, fn: Callable[..., None], *args: Any) -> greenthread.GreenThread:
        return eventlet.spawn(fn, *args)

    def kill(self, green: greenthread.GreenThread) -> None:
        green.kill()  # switches into the task to unwind it

    def call_later(self, seconds: float, fn: Callable[..., None], *args: Any) -> Cancel:
        return eventlet.spawn_after(seconds, fn, *args).cancel  # type: ignore[no-any-return]

    def start_timeout(self, seconds: float, exc: type[BaseException]) -> Cancel:
        # an eventlet Timeout starts as it is made, in the green thread that makes it
        return eventlet.Timeout(seconds, exc).cancel  # type: ignore[no-any-return]

    def doorbell(self, answer: Callable[[], None]) -> _Doorbell:
        return _Doorbell(answer)

    def latch(self) -> _Latch:
        return _Latch()

    def sleep(self, seconds: float) -> None:
        eventlet.sleep(seconds)

    def destroy_hub(self) -> None:
        hubs.get_hub().abort(wait=True)  # let its loop end with the thread


class EventletPool(GreenPool):
    """The shared green pool on eventlet's hub (see GreenPool)."""

    def __init__(self, concurrency: int) -> None:
        super().__init__(concurrency, Eventlet())
