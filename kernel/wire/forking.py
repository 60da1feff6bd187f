"""A section a fork waits for: C libraries such as SQLite keep process-wide locks (SQLite's
mutexes around its open files) that a forked child must not inherit held by a thread the
child does not have. A process forks only while no thread is inside such a section."""

from __future__ import annotations

import os
import threading
from types import TracebackType


class ForkGuard:
    """`with guard:` around each call into such a library; a fork waits for the calls under
    way to end, and none starts until it is done (in the parent and in the child)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # the forking thread holds the lock across the fork; the child's one thread is its
        # copy, so it may release it too
        os.register_at_fork(
            before=self._lock.acquire,
            after_in_parent=self._lock.release,
            after_in_child=self._lock.release,
        )

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


_made: list[ForkGuard] = []
_making = threading.Lock()


def fork_guard() -> ForkGuard:
    """The process's one guard (made on first use: registering fork handlers is for good)."""
    if not _made:
        with _making:
            if not _made:
                _made.append(ForkGuard())
    return _made[0]
