"""The consumer's waits in Redis for work: a blocked connection per list, a take behind each."""

from __future__ import annotations

import logging
import os
import select
import threading
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from .broker import RedisBroker

log = logging.getLogger("kernel.broker.redis")

BLOCK_SECONDS = 5.0  # how long one wait in Redis lasts before it is sent again
POLL_EVERY = 1.0  # without BLMOVE (a server before 6.2): how often an idle consumer looks
WAIT = "BLMOVE"  # with the list as source and destination: blocks, and moves nothing


class Waits:
    """Waits in Redis, sent and read by the consumer thread itself (no thread hand-off).

    Armed, each consumed list has a connection of its own carrying `BLMOVE list list RIGHT
    RIGHT` (it moves the last element to where it already is, so it removes nothing, yet
    blocks until the list is non-empty) and, in the same write, the atomic fetch script:
    Redis runs the script the moment the wait ends, so a message that wakes an idle worker is
    already taken and recorded as unacknowledged when the reply arrives. The script takes
    only while this consumer is registered (see FETCH), and the delivery time it records is
    at most a quarter of the visibility timeout old, as a wait lasts no longer.

    `wait` blocks in `select` on those connections and a wake-up pipe, so other threads wake
    the consumer with `wakeup` as they would wake any loop."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.armed = False
        self.want = 0  # messages one list's take may take, set at each arm
        self.block = max(min(BLOCK_SECONDS, broker.visibility_timeout / 4), 0.05)
        self.polling = False  # the server refused BLMOVE: look every POLL_EVERY instead
        self._conns: dict[str, Any] = {}  # list -> its connection
        self._sent: dict[str, int] = {}  # list -> what its outstanding take may take
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False
        # held to write the wake-up byte and to close the pipe: a pool thread may still wake
        # a consumer whose broker has closed, and must not write into a reused descriptor
        self._pipe_lock = threading.Lock()

    def wakeup(self) -> None:
        """Any thread: end the consumer's current or next wait."""
        if not self._woken:  # one byte per wait, not one per call
            self._woken = True
            with self._pipe_lock:
                if self._wake_w < 0:
                    return  # closed
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:
                    pass  # full: the consumer is due to wake anyway

    def arm(self, room: int) -> None:
        """Wait in Redis on every list, each ready to take its share of `room`."""
        lists = self.broker.lists
        # several lists may fill at once: together they must not go far beyond the window;
        # with no room left they only wait
        self.want = -(-room // max(len(lists), 1)) if room > 0 else 0
        self.armed = True
        self._send_missing()

    def _send_missing(self) -> None:
        if self.polling:
            return
        for key in self.broker.lists:
            if key not in self._sent:
                self._send(key)

    def disarm(self) -> None:
        """Take no more: waits already in Redis end on their own (what they take is handed on)."""
        self.armed = False

    def _send(self, key: str) -> None:
        conn = self._conns.get(key)
        if conn is None:
            pool = self.broker.client().connection_pool
            conn = self._conns[key] = pool.connection_class(**pool.connection_kwargs)
        commands: list[tuple[Any, ...]] = [(WAIT, key, key, "RIGHT", "RIGHT", self.block)]
        if self.want:
            commands.append(self.broker.fetch_command(self.want, True))
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        except BaseException:
            self._drop(key)
            raise
        self._sent[key] = self.want

    def wait(self, timeout: float) -> list[tuple[list[Any], int]]:
        """Block until a wait ends, a wake-up, or `timeout`; return what ended waits took, each
        with how much it could take. A wait that ends because its list filled disarms: the
        consumer decides what next (to wait again, or to take for itself, as when another
        worker was quicker and this take found nothing)."""
        if self.armed:
            self._send_missing()  # after a wait that timed out
            if self.polling:
                timeout = min(timeout, POLL_EVERY)
        waiting = {self._conns[key]._sock: key for key in self._sent}
        readable, _, _ = select.select([self._wake_r, *waiting], [], [], max(timeout, 0.0))
        if self._wake_r in readable:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
            # after reading (a green os.read yields first, and a wakeup meanwhile must not be
            # read away unseen): a wakeup from now on writes a byte again; one before was for
            # work the consumer looks at as this wait returns
            self._woken = False
        taken = []
        for sock in readable:
            key = waiting.get(sock)
            if key is not None:
                found, want = self._read(key)
                if found:
                    taken.append((found, want))
        if self.polling and self.armed and not taken:
            self.armed = False  # look again with the next poll
        return taken

    def _read(self, key: str) -> tuple[list[Any], int]:
        """The replies of the wait on `key` and of the take behind it."""
        conn, want = self._conns[key], self._sent.pop(key)
        try:
            woken = _reply(conn)
            found = _reply(conn) if want else []
        except BaseException:
            self._drop(key)
            raise
        if isinstance(woken, redis.ResponseError):
            if not self.polling:
                log.warning(
                    "cannot wait in Redis on %r (%s); looking every %ss instead",
                    key,
                    woken,
                    POLL_EVERY,
                )
                self.polling = True
            woken = b"poll"
        if woken is not None:
            self.armed = False
        return (found if isinstance(found, list) else []), want

    def _drop(self, key: str) -> None:
        self._sent.pop(key, None)
        conn = self._conns.pop(key, None)
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass

    def forget(self) -> None:
        """After a lost connection: waits start again on fresh connections."""
        for key in list(self._conns):
            self._drop(key)

    def close(self) -> None:
        self.forget()
        with self._pipe_lock:
            if self._wake_w >= 0:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1


def _reply(conn: Any) -> Any:
    """One reply; an error reply is returned, not raised, so the connection stays in step."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc
