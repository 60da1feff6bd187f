"""Publishing from any thread: pooled connections (new after a fork), retried per policy."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from amqp import spec
from amqp.exceptions import AMQPError, ChannelError, MessageNacked
from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu.exceptions import OperationalError

from kernel.plugin import BrokerUnreachable, retry_call

from . import framing
from .connector import Connector, close_quietly, reason
from .session import FRAME_WAIT
from .waking import SocketWaiter
from .wire import frame_complete

log = logging.getLogger("kernel.broker.amqp")

# Worth another try on a new connection. Channel errors are not: the server refused this
# message (a declaration that does not match, say) and would refuse it again.
RETRY_ERRORS: tuple[type[BaseException], ...] = (
    BrokerUnreachable,
    OSError,
    AMQPConnectionError,
    OperationalError,
)


# Frames gathered into one socket write when many messages are sent at once.
WRITE_SIZE = 256 * 1024


class Link:
    """One publishing connection and its channel. Publishes are encoded here (framing) and
    written with one send per batch; kombu's Producer and py-amqp's encoder cost several
    times more than the message itself."""

    def __init__(self, conn: Any, url: str) -> None:
        self.conn, self.url = conn, url
        amqp_conn = conn.connection
        self._read = amqp_conn.blocking_read
        self._transport = amqp_conn.transport
        self._waiter = SocketWaiter(self._transport.sock)
        self._frame_max: int = amqp_conn.frame_max
        self.channel = conn.channel()
        self._declared: set[str] = set()
        # With confirms on (a transport option), each publish waits for the server's ack.
        self.confirms = bool(getattr(amqp_conn, "confirm_publish", False))
        if self.confirms:
            self.channel.confirm_select()

    def declare(self, entities: Sequence[Any]) -> None:
        """Declare each entity once per connection (a new connection declares again: the
        server may have lost what was not durable). Queues that delete themselves (reply
        queues) are declared before every publish, as kombu does: the server may have
        deleted one since."""
        for entity in entities:
            if entity.name not in self._declared:
                entity(self.channel).declare()
                if entity.can_cache_declaration:
                    self._declared.add(entity.name)

    def send(self, messages: Sequence[tuple[str, str, bytes, Mapping[str, Any]]]) -> None:
        """Publish (exchange, routing key, body, properties) in order: one socket write per
        WRITE_SIZE bytes of frames (the server takes in a bulk send while the next part is
        encoded), or, with confirms, one at a time, each waiting for its ack."""
        channel_id = self.channel.channel_id
        write = self._transport.write
        pending: list[bytes] = []
        size = 0
        for exchange, key, body, props in messages:
            frames = framing.publish(channel_id, exchange, key, body, props, self._frame_max)
            if self.confirms:
                write(frames)
                self.channel.wait([spec.Basic.Ack, spec.Basic.Nack], callback=_confirmed)
                continue
            pending.append(frames)
            size += len(frames)
            if size >= WRITE_SIZE:
                write(b"".join(pending))
                pending, size = [], 0
        if pending:
            write(b"".join(pending))

    def check(self) -> None:
        """Read what the server sent since the last publish. An idle publisher reads nothing,
        so a close from the server (a forced close, a refused publish) would otherwise go
        unnoticed and the next message would be written into a dead socket and lost."""
        while frame_complete(self._transport._read_buffer) or self._waiter.sock_readable():
            try:
                self._read(FRAME_WAIT)
            except TimeoutError:
                return

    def close(self, timeout: float) -> None:
        close_quietly(self.conn, timeout)


def _confirmed(method: tuple[int, int], *_: Any) -> None:
    if method == spec.Basic.Nack:
        raise MessageNacked("the broker refused the message (basic.nack)")


# Connections kept open between publishes. More are opened while many threads (or thousands of
# green threads) publish at once, and closed again as they come back beyond this number.
MAX_IDLE = 8


class Publishers:
    """The publishing side of one broker object: a small pool of connections, each lent to
    one publish at a time (new after a fork), with connection failures retried per policy."""

    def __init__(self, connector: Connector, retry: bool, policy: Mapping[str, Any]) -> None:
        self.connector = connector
        self.policy: dict[str, Any] = dict(policy) if retry else {"max_retries": 0}
        self._lock = threading.Lock()
        self._links: list[Link] = []
        self._idle: list[Link] = []
        self._pid = os.getpid()

    def _forked(self, pid: int) -> None:
        """In a child process: start afresh. The parent's connections are left alone (closing
        one would shut the socket the parent still uses), and so is its lock, which another
        thread may have held at the fork."""
        self._pid = pid
        self._lock = threading.Lock()
        self._links = []
        self._idle = []

    def _acquire(self) -> Link:
        pid = os.getpid()
        if pid != self._pid:
            self._forked(pid)
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn, url = self.connector.open(heartbeat=0.0)  # idle publishers must not be timed out
        try:
            link = Link(conn, url)
        except BaseException:
            conn.collect()
            raise
        with self._lock:
            self._links.append(link)
        return link

    def _release(self, link: Link) -> None:
        with self._lock:
            if os.getpid() == self._pid and len(self._idle) < MAX_IDLE:
                self._idle.append(link)
                return
        self._discard(link, gently=True)

    def _discard(self, link: Link, gently: bool = False) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        try:
            if gently:
                link.close(self.connector.options.connect_timeout)
            else:
                link.conn.collect()  # broken: no goodbye, it could hang
        except Exception:
            pass

    def _checked(self) -> Link:
        """A link, replaced first if the server closed it while it sat idle (a restart, a
        forced close): that costs no try of the retry policy, nothing was sent."""
        link = self._acquire()
        try:
            link.check()
        except (*RETRY_ERRORS, ChannelError, AttributeError) as exc:
            if isinstance(exc, ChannelError):
                # an earlier message was refused after its publish had returned
                where = self.connector.where(link.url)
                log.warning("broker %s refused an earlier publish: %s", where, reason(exc))
            self._discard(link)
            link = self._acquire()
        return link

    def publish(self, send: Callable[[Link], None]) -> None:
        """Call `send(link)` on a pooled connection, retrying connection failures."""
        used: list[str] = []
        held: list[Link] = []  # the link of the current attempt

        def attempt() -> None:
            link = self._checked()
            held.append(link)
            used.append(link.url)
            send(link)

        def drop(_: BaseException | None = None) -> None:
            while held:
                self._discard(held.pop())

        try:
            retry_call(
                attempt,
                RETRY_ERRORS,
                self.policy,
                f"publishing to {self.connector.name}",
                on_retry=drop,
            )
        except BrokerUnreachable as exc:
            drop()
            raise BrokerUnreachable(f"cannot publish: {exc}") from None
        except RETRY_ERRORS as exc:
            drop()
            where = f"broker {self.connector.where(used[-1])}" if used else self.connector.name
            raise BrokerUnreachable(f"cannot publish to {where}: {reason(exc)}") from None
        except AMQPError:
            drop()  # the server closed this channel: the next publish needs a new one
            raise
        except BaseException:
            drop()
            raise
        while held:
            self._release(held.pop())

    def close(self) -> None:
        if os.getpid() != self._pid:
            self._forked(os.getpid())  # nothing of this process's own to close
            return
        with self._lock:
            links, self._links, self._idle = self._links, [], []
        for link in links:
            link.close(self.connector.options.connect_timeout)
