"""A Broker over any kombu transport: one consuming connection, a publishing one per thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from .exceptions import BrokerUnreachable
from .transport import BaseBroker, Configured, Outgoing, QueueSpec
from .urls import safe_url

if TYPE_CHECKING:
    from .transport import Message


# publishing connections kept open between publishes (more are opened while many publish at once)
MAX_IDLE_PUBLISHERS = 8


def _as_sent(on_message: Callable[[Message], None]) -> Callable[[Any], None]:
    """kombu's Messages as the contract has them: flagged `valid`, and with no `compression`
    header once kombu has decompressed the body (the consumer decompresses a body whose
    headers name a compression: it would be decompressed twice, and the task refused)."""

    def deliver(message: Any) -> None:
        message.valid = True  # kombu's deliveries outlive a lost connection
        if message.headers.get("compression") and not message.errors:
            message.headers = {k: v for k, v in message.headers.items() if k != "compression"}
        on_message(message)

    return deliver


class KombuBroker(BaseBroker):
    """`publish` works from any thread (each has its own connection, recreated after a fork);
    consuming belongs to the one thread that calls `consume` and `poll`."""

    def __init__(
        self,
        url: str,
        *,
        transport: Any = None,
        transport_options: Mapping[str, Any] | None = None,
        connect_timeout: float = 4.0,
        publish_retry: bool = True,
        publish_retry_policy: Mapping[str, Any] | None = None,
        connect_max_retries: int | None = 0,
    ) -> None:
        self.url = url
        self.transport = transport
        self.transport_options = dict(transport_options or {})
        self.connect_timeout = connect_timeout
        self.publish_retry = publish_retry
        self.publish_retry_policy = dict(publish_retry_policy or {})
        self.connect_max_retries = connect_max_retries
        self.wakes_up = False
        self._pid = os.getpid()
        self._idle: list[tuple[Connection, Any]] = []
        self._lock = threading.Lock()
        self._publishers: list[Connection] = []
        self._queues: dict[str, Queue] = {}
        self._consumer_conn: Connection | None = None
        self._consumer: Any = None

    @classmethod
    def for_app(cls, url: str, app: Configured, **kwargs: Any) -> KombuBroker:
        conf = app.conf
        return cls(
            url,
            transport_options=conf.broker_transport_options,
            connect_timeout=conf.broker_connection_timeout,
            publish_retry=conf.task_publish_retry,
            publish_retry_policy=conf.task_publish_retry_policy,
            **kwargs,
        )

    def connection(self) -> Connection:
        """A new kombu connection to this broker (not yet connected)."""
        return Connection(
            self.url,
            transport=self.transport,
            connect_timeout=self.connect_timeout,
            transport_options=dict(self.transport_options),
        )

    def _where(self, conn: Connection) -> str:
        host = conn.hostname or "localhost"
        return f"{safe_url(self.url)} ({host}:{conn.port})" if conn.port else safe_url(self.url)

    def _ensure(self, conn: Connection) -> None:
        try:
            conn.ensure_connection(
                max_retries=self.connect_max_retries or 1, timeout=self.connect_timeout
            )
        except (*conn.connection_errors, OSError) as exc:
            raise BrokerUnreachable(f"cannot reach broker {self._where(conn)}: {exc}") from None

    def connect(self) -> None:
        conn = self.connection()
        try:
            self._ensure(conn)
        finally:
            conn.release()

    # -- publishing (any thread) ------------------------------------------------------------
    def queue(self, spec: str | QueueSpec) -> Queue:
        """A bare name: the queue as Celery declares it, durable, bound to a direct exchange of
        its name. A QueueSpec: as it says (reply queues with x-expires, say)."""
        key = spec if isinstance(spec, str) else spec.name
        found = self._queues.get(key)
        if found is None:
            if isinstance(spec, str):
                found = Queue(spec, Exchange(spec, "direct"), routing_key=spec)
            else:  # on the default exchange only, as Celery's reply queues are
                found = Queue(
                    spec.name,
                    routing_key=spec.name,
                    durable=spec.durable,
                    auto_delete=spec.auto_delete,
                    exclusive=spec.exclusive,
                    queue_arguments=dict(spec.arguments or {}),
                )
            self._queues[key] = found
        return found

    def _lend(self) -> tuple[Connection, Any]:
        """A publishing connection and producer for one publish: pooled, not one per thread,
        since a green-thread pool runs every task in a new (green) thread."""
        if self._pid != os.getpid():  # a forked child: the parent's connections are not ours
            self._pid, self._publishers, self._idle = os.getpid(), [], []
            self._lock = threading.Lock()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = self.connection()
        with self._lock:
            self._publishers.append(conn)
        return conn, conn.Producer()

    def _give_back(self, lent: tuple[Connection, Any], broken: bool) -> None:
        with self._lock:
            if not broken and len(self._idle) < MAX_IDLE_PUBLISHERS:
                self._idle.append(lent)
                return
            if lent[0] in self._publishers:
                self._publishers.remove(lent[0])
        try:
            lent[0].release()
        except Exception:
            pass

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Every message on one lent connection, in order."""
        lent = self._lend()
        broken = True
        try:
            for message in messages:
                props = dict(message.properties)
                expiration = props.pop("expiration", None)
                lent[1].publish(
                    message.body,
                    routing_key=message.routing_key,
                    exchange=message.exchange,
                    headers=dict(message.headers),
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    declare=[self.queue(name) for name in message.declare],
                    retry=self.publish_retry,
                    retry_policy=self.publish_retry_policy,
                    expiration=int(expiration) / 1000 if expiration is not None else None,
                    **props,
                )
            broken = False
        except OSError as exc:
            raise BrokerUnreachable(
                f"cannot publish to broker {safe_url(self.url)}: {exc}"
            ) from exc
        finally:
            self._give_back(lent, broken)

    # -- consuming (one thread) -------------------------------------------------------------
    def consume(
        self,
        queues: Sequence[str | QueueSpec],
        on_message: Callable[[Message], None],
        prefetch: int,
    ) -> None:
        conn = self._consumer_conn = self.connection()
        self._ensure(conn)
        self._consumer = conn.Consumer(
            [self.queue(q) for q in queues], on_message=_as_sent(on_message), no_ack=False
        )
        self._consumer.qos(prefetch_count=prefetch)
        self._consumer.consume()
        self.wakes_up = callable(getattr(conn.transport, "wakeup", None))

    def set_prefetch(self, prefetch: int) -> None:
        if self._consumer is not None:
            self._consumer.qos(prefetch_count=prefetch)

    def cancel_consuming(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()

    def poll(self, timeout: float) -> None:
        conn = self._consumer_conn
        if conn is None:
            return
        try:
            conn.drain_events(timeout=timeout)
        except TimeoutError:
            pass

    def wakeup(self) -> None:
        conn = self._consumer_conn
        if conn is not None and self.wakes_up:
            conn.transport.wakeup()

    def purge(self, queues: Sequence[str]) -> int:
        conn = self.connection()
        try:
            self._ensure(conn)
            channel = conn.default_channel
            total = 0
            for name in queues:
                bound = self.queue(name)(channel)
                bound.declare()
                total += bound.purge() or 0
            return total
        finally:
            conn.release()

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.cancel()
            except Exception:  # closing must go on even if the connection is already gone
                pass
            self._consumer = None
        conns = [self._consumer_conn] if self._consumer_conn is not None else []
        with self._lock:
            conns += self._publishers
            self._publishers, self._idle = [], []
        self._consumer_conn = None
        for conn in conns:
            try:
                conn.release()
            except Exception:
                pass
