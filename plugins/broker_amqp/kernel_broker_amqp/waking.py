"""Waiting on a broker socket and a wake-up socketpair together, so other threads can interrupt."""

from __future__ import annotations

import math
import select
import socket
import time


def _millis(timeout: float) -> int:
    # rounded up: a wait of 0.4 ms must not become a busy poll of 0 ms
    return max(math.ceil(timeout * 1000), 0)


class Waker:
    """A socketpair that another thread writes one byte to, making a waiter's select return.

    `wake()` sends only when no wake-up is pending, so a burst of pool callbacks costs one
    syscall rather than one each."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._pending = False

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        if self._pending:
            return
        self._pending = True
        try:
            self._w.send(b"\0")
        except OSError:
            pass  # a full buffer already wakes the reader; a closed one has nobody to wake

    def clear(self) -> None:
        """Swallow pending wake-ups (reader thread only)."""
        while True:
            try:
                if not self._r.recv(4096):
                    break
            except OSError:
                break
        # reset only after reading: a wake() racing with this leaves its byte in the pipe,
        # so the next wait returns at once instead of sleeping through it
        self._pending = False

    def wait(self, timeout: float) -> bool:
        """Block until woken or `timeout` passes; True if woken (the wake-up is consumed)."""
        if self.closed:  # a poll after close(): nothing can wake it, so it just waits
            time.sleep(max(timeout, 0.0))
            return False
        woken = _readable([self._r.fileno()], timeout)
        if woken:
            self.clear()
        return bool(woken)

    @property
    def closed(self) -> bool:
        return self._r.fileno() < 0

    def close(self) -> None:
        """Release the sockets; a late wake() from another thread is then a no-op."""
        self._r.close()
        self._w.close()


def _readable(fds: list[int], timeout: float) -> list[int]:
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        return [fd for fd, _ in poller.poll(_millis(timeout))]
    return list(select.select(fds, [], [], max(timeout, 0.0))[0])


class SocketWaiter:
    """Waits for a connection's socket or a Waker, whichever is readable first."""

    def __init__(self, sock: socket.socket, waker: Waker | None = None) -> None:
        self.sock_fd = sock.fileno()
        self.wake_fd = waker.fileno() if waker is not None else -1
        self._both: select.poll | None = None
        self._sock: select.poll | None = None
        if hasattr(select, "poll"):
            # registered once per connection: the wait runs for every poll() of the worker
            self._sock = select.poll()
            self._sock.register(self.sock_fd, select.POLLIN)
            if waker is not None:
                self._both = select.poll()
                self._both.register(self.sock_fd, select.POLLIN)
                self._both.register(self.wake_fd, select.POLLIN)

    def wait(self, timeout: float) -> tuple[bool, bool]:
        """(socket readable, woken), after at most `timeout` seconds."""
        if self._both is not None:
            ready = {fd for fd, _ in self._both.poll(_millis(timeout))}
        else:
            fds = [self.sock_fd] if self.wake_fd < 0 else [self.sock_fd, self.wake_fd]
            ready = set(_readable(fds, timeout))
        return self.sock_fd in ready, self.wake_fd in ready

    def sock_readable(self) -> bool:
        """Whether the socket has something to read (or has closed) right now."""
        if self._sock is not None:
            return bool(self._sock.poll(0))
        return bool(_readable([self.sock_fd], 0.0))
