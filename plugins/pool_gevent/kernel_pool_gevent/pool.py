"""gevent under the shared green pool: how it spawns, kills, times out and wakes its hub."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from gevent import Greenlet, Timeout, monkey
from gevent.event import Event
from kernel_pool_green.library import Cancel
from kernel_pool_green.pool import GreenPool

from .patch import is_patched


class _Doorbell:
    """gevent's async watcher: `send()` is safe from any thread and wakes the hub's loop."""

    def __init__(self, answer: Callable[[], None]) -> None:
        # an active watcher also keeps the loop running while no greenlet has work
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(answer)

    def ring(self) -> None:
        self._watcher.send()

    def close(self) -> None:
        self._watcher.close()


class Gevent:
    """The GreenLibrary adapter for gevent."""

    name = "gevent"
    # the OS thread's id, even where `threading` is patched to answer with greenlet ids
    os_thread_id: Callable[[], int] = staticmethod(monkey.get_original("_thread", "get_ident"))

    def patched(self) -> bool:
        return is_patched()

    def spawn(self, fn: Callable[..., None], *args: Any) -> Greenlet:
        return gevent.spawn(fn, *args)

    def kill(self, green: Greenlet) -> None:
        green.kill(block=False)

    def call_later(self, seconds: float, fn: Callable[..., None], *args: Any) -> Cancel:
        timer = gevent.spawn_later(seconds, fn, *args)
        return lambda: timer.kill(block=False)

    def start_timeout(self, seconds: float, exc: type[BaseException]) -> Cancel:
        timeout = Timeout(seconds, exc)
        timeout.start()
        return timeout.close  # type: ignore[no-any-return]

    def doorbell(self, answer: Callable[[], None]) -> _Doorbell:
        return _Doorbell(answer)

    def latch(self) -> Event:
        return Event()

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def destroy_hub(self) -> None:
        gevent.get_hub().destroy(destroy_loop=True)


class GeventPool(GreenPool):
    """The shared green pool on gevent's hub (see GreenPool)."""

    def __init__(self, concurrency: int) -> None:
        super().__init__(concurrency, Gevent())
