"""Publishing from any thread: a connection per thread (new after a fork), retried per policy."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from amqp.exceptions import AMQPError, ChannelError
from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu.exceptions import OperationalError
from kombu.messaging import Producer

from kernel.exceptions import BrokerUnreachable
from kernel.retry import retry_call

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


class Link:
    """One thread's publishing connection and producer."""

    def __init__(self, conn: Any, url: str) -> None:
        self.conn, self.url = conn, url
        amqp_conn = conn.connection
        self._read = amqp_conn.blocking_read
        self._transport = amqp_conn.transport
        self._waiter = SocketWaiter(self._transport.sock)
        self.producer = Producer(conn.channel())

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


class Publishers:
    """The publishing side of one broker object."""

    def __init__(self, connector: Connector, retry: bool, policy: Mapping[str, Any]) -> None:
        self.connector = connector
        self.policy: dict[str, Any] = dict(policy) if retry else {"max_retries": 0}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._links: list[Link] = []
        self._pid = os.getpid()

    def _forked(self, pid: int) -> None:
        """In a child process: start afresh. The parent's connections are left alone (closing
        one would shut the socket the parent still uses), and so is its lock, which another
        thread may have held at the fork."""
        self._pid = pid
        self._lock = threading.Lock()
        self._links = []
        self._local = threading.local()

    def _link(self) -> Link:
        pid = os.getpid()
        if pid != self._pid:
            self._forked(pid)
        link: Link | None = getattr(self._local, "link", None)
        if link is not None:
            return link
        conn, url = self.connector.open(heartbeat=0.0)  # idle publishers must not be timed out
        try:
            link = Link(conn, url)
        except BaseException:
            conn.collect()
            raise
        self._local.link = link
        with self._lock:
            self._links.append(link)
        return link

    def _drop(self, _: BaseException | None = None) -> None:
        link: Link | None = getattr(self._local, "link", None)
        self._local.link = None
        if link is None:
            return
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        try:
            link.conn.collect()  # broken: no goodbye, it could hang
        except Exception:
            pass

    def _checked(self) -> Link:
        """This thread's link, replaced first if the server closed it while it sat idle (a
        restart, a forced close): that costs no try of the retry policy, nothing was sent."""
        link = self._link()
        try:
            link.check()
        except (*RETRY_ERRORS, ChannelError, AttributeError) as exc:
            if isinstance(exc, ChannelError):
                # an earlier message was refused after its publish had returned
                where = self.connector.where(link.url)
                log.warning("broker %s refused an earlier publish: %s", where, reason(exc))
            self._drop()
            link = self._link()
        return link

    def publish(self, send: Callable[[Any], None]) -> None:
        """Call `send(producer)` on this thread's connection, retrying connection failures."""
        used: list[str] = []

        def attempt() -> None:
            link = self._checked()
            used.append(link.url)
            send(link.producer)

        try:
            retry_call(
                attempt,
                RETRY_ERRORS,
                self.policy,
                f"publishing to {self.connector.name}",
                on_retry=self._drop,
            )
        except BrokerUnreachable as exc:
            self._drop()
            raise BrokerUnreachable(f"cannot publish: {exc}") from None
        except RETRY_ERRORS as exc:
            self._drop()
            where = f"broker {self.connector.where(used[-1])}" if used else self.connector.name
            raise BrokerUnreachable(f"cannot publish to {where}: {reason(exc)}") from None
        except AMQPError:
            self._drop()  # the server closed this channel: the next publish needs a new one
            raise

    def close(self) -> None:
        if os.getpid() != self._pid:
            self._forked(os.getpid())  # nothing of this process's own to close
            return
        with self._lock:
            links, self._links = self._links, []
        self._local = threading.local()
        for link in links:
            link.close(self.connector.options.connect_timeout)
