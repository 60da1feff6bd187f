"""What a green-thread library must give the shared pool: the adapter contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

Cancel = Callable[[], None]


class Doorbell(Protocol):
    """How calls made in other OS threads reach the hub: `ring()` from any thread has the
    hub run the answer it was made with soon, on the hub; `close()` (on the hub) ends it."""

    def ring(self) -> None: ...

    def close(self) -> None: ...


class Latch(Protocol):
    """A green event, set once: `wait()` on the hub until `set()`."""

    def wait(self) -> Any: ...

    def set(self) -> Any: ...


@runtime_checkable
class GreenLibrary(Protocol):
    """One green-thread library, as the shared pool drives it. Every method but `ring` on
    the doorbell, `patched` and `os_thread_id` runs on the pool's hub."""

    name: str  # the pool's name, "gevent": in its info, its hub thread's name and its log

    def patched(self) -> bool:
        """Whether this process runs on the library's patched standard library."""

    def os_thread_id(self) -> int:
        """The OS thread's id, even where a patched `threading` answers with green ids."""

    def spawn(self, fn: Callable[..., None], *args: Any) -> Any:
        """Start `fn(*args)` in a new green thread; return it (for `kill`)."""

    def kill(self, green: Any) -> None:
        """End a green thread `spawn` returned (GreenletExit raised in it); may switch to it."""

    def call_later(self, seconds: float, fn: Callable[..., None], *args: Any) -> Cancel:
        """Call `fn(*args)` in a green thread after `seconds`; return what cancels that."""

    def start_timeout(self, seconds: float, exc: type[BaseException]) -> Cancel:
        """Raise `exc` in the calling green thread at its first switch after `seconds`;
        return what cancels that. Call it in the green thread to interrupt."""

    def doorbell(self, answer: Callable[[], None]) -> Doorbell:
        """A doorbell for this thread's hub that runs `answer` (call it on the hub)."""

    def latch(self) -> Latch:
        """A new green event."""

    def sleep(self, seconds: float) -> None:
        """Sleep cooperatively (other green threads run meanwhile)."""

    def destroy_hub(self) -> None:
        """Free this thread's own hub and its loop (an unpatched pool's hub thread ends)."""
