"""The AMQP Broker: Celery's declarations, a wakeable poll, reconnects, failover, retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from amqp.exceptions import NotFound
from kombu.entity import Exchange, Queue, maybe_delivery_mode

from kernel.plugin import BrokerUnreachable, KombuBroker, Outgoing, QueueSpec, intervals

from .connector import CONNECT_ERRORS, Connector, close_quietly, reason
from .options import AmqpOptions
from .publisher import Link, Publishers
from .session import Session
from .urls import split_urls
from .waking import Waker

if TYPE_CHECKING:
    from kernel.plugin import App, Message

log = logging.getLogger("kernel.broker.amqp")

# A reconnect attempt that fails: nobody answered, or the session could not be set up again.
RECONNECT_ERRORS: tuple[type[BaseException], ...] = (BrokerUnreachable, *CONNECT_ERRORS)

# A connection lost sooner than this after it was made continues the backoff of the outage
# before it, rather than starting afresh, so a server that accepts and then drops connections
# is not hammered with immediate reconnects.
FLAPPING = 5.0


def amqp_properties(message: Outgoing) -> dict[str, Any]:
    """The basic properties of a message, as kombu's Producer would set them: persistent
    unless told otherwise (by number or by name), priority 0 by default, the expiration in
    milliseconds as a string, the headers as the application headers."""
    props = dict(message.properties)
    props["delivery_mode"] = maybe_delivery_mode(props.get("delivery_mode"))
    props.setdefault("priority", 0)
    expiration = props.get("expiration")
    if expiration is not None:
        props["expiration"] = str(int(expiration))
    props["content_type"] = message.content_type
    props["content_encoding"] = message.content_encoding
    props["application_headers"] = message.headers
    return props


class AmqpBroker(KombuBroker):
    """RabbitMQ through py-amqp. Publishing works from any thread; consuming (`consume`, `poll`,
    `set_prefetch`, `cancel_consuming`, acks) belongs to the one thread that consumes."""

    def __init__(self, url: str, options: AmqpOptions | None = None) -> None:
        options = options or AmqpOptions()
        super().__init__(
            url,
            transport_options=options.transport_options,
            connect_timeout=options.connect_timeout,
            publish_retry=options.publish_retry,
            publish_retry_policy=options.publish_retry_policy,
        )
        self.options = options
        self.wakes_up = True
        self.connector = Connector(split_urls(url), options)
        self._waker = Waker()
        self._senders = Publishers(
            self.connector, options.publish_retry, options.publish_retry_policy
        )
        # consuming state, kept across reconnects
        self._session: Session | None = None
        self._queue_specs: list[str | QueueSpec] = []
        self._on_message: Callable[[Message], None] | None = None
        self._prefetch = 0
        self._consuming = False
        self._backoff: Iterator[float] | None = None
        self._attempts = 0
        self._next_attempt = 0.0
        self._gave_up: str | None = None  # why reconnecting stopped, once it has

    @classmethod
    def for_app(cls, url: str, app: App, **_: Any) -> AmqpBroker:
        return cls(url, AmqpOptions.from_app(app))

    # -- declarations ---------------------------------------------------------------------------
    def queue(self, spec: str | QueueSpec) -> Queue:
        """A bare name as Celery declares it: durable, bound to a direct exchange of its name with
        its name as the key, and `x-max-priority` only when `task_queue_max_priority` is set.
        A QueueSpec (an rpc:// reply queue, say) as it says, on the default exchange only, as
        Celery declares reply queues: an exchange per reply queue would pile up on the server."""
        name = spec if isinstance(spec, str) else spec.name
        found = self._queues.get(name)
        if found is not None:
            return found
        if isinstance(spec, str):
            found = Queue(
                spec,
                Exchange(spec, "direct"),
                routing_key=spec,
                max_priority=self.options.max_priority,
            )
        else:
            found = Queue(
                spec.name,
                Exchange(""),
                routing_key=spec.name,
                durable=spec.durable,
                auto_delete=spec.auto_delete,
                exclusive=spec.exclusive,
                queue_arguments=dict(spec.arguments or {}),
            )
        self._queues[name] = found
        return found

    def connection(self) -> Any:
        """A kombu Connection to the first URL of the list (not yet connected)."""
        return self.connector.connection(self.connector.urls[0], 0.0)

    def connect(self) -> None:
        """One attempt per URL, within the connect timeout each; BrokerUnreachable otherwise."""
        conn, _ = self.connector.open()
        close_quietly(conn, self.options.connect_timeout)

    # -- publishing (any thread) ----------------------------------------------------------------
    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send messages over one borrowed connection, retried together per the policy (so a
        batch cut off midway may send its first messages twice: at least once, never lost)."""
        prepared = []
        entities: dict[str, Queue] = {}
        for message in messages:
            for spec in message.declare:
                queue = self.queue(spec)
                entities.setdefault(queue.name, queue)
            prepared.append(
                (
                    message.exchange,
                    message.routing_key,
                    message.body,
                    amqp_properties(message),
                )
            )

        def send(link: Link) -> None:
            link.declare(list(entities.values()))
            link.send(prepared)

        self._senders.publish(send)

    # -- consuming (one thread) -----------------------------------------------------------------
    def consume(
        self,
        queues: Sequence[str | QueueSpec],
        on_message: Callable[[Message], None],
        prefetch: int,
    ) -> None:
        self._queue_specs = list(queues)
        self._on_message = on_message
        self._prefetch = prefetch
        self._consuming = True
        self._gave_up = None
        if self._waker.closed:
            self._waker = Waker()  # consuming again after close()
        if self._session is not None:
            self._session.close(self.options.connect_timeout)
            self._session = None
        self._session = self._open_session()

    def _open_session(self) -> Session:
        conn, url = self.connector.open(heartbeat=self.options.heartbeat)
        try:
            session = Session(conn, url, self.connector.where(url), self._waker)
        except BaseException:
            conn.collect()
            raise
        try:
            assert self._on_message is not None
            session.start(
                [self.queue(spec) for spec in self._queue_specs], self._on_message, self._prefetch
            )
        except BaseException:
            session.discard()
            raise
        return session

    def set_prefetch(self, prefetch: int) -> None:
        self._prefetch = prefetch
        session = self._session
        if session is not None and session.alive:
            try:
                session.qos(prefetch)
            except session.errors as exc:
                session.fail(exc)  # poll() reconnects, with the prefetch asked for here

    def cancel_consuming(self) -> None:
        self._consuming = False
        session = self._session
        if session is not None and session.alive:
            try:
                session.cancel()
            except session.errors as exc:
                session.fail(exc)

    def poll(self, timeout: float) -> None:
        session = self._session
        if session is not None and session.alive:
            session.pump(timeout)
            if session.alive:
                return
        if session is not None:
            self._lost(session)  # noticed here, or by an ack or a qos call before
        self._recover(timeout)

    def wakeup(self) -> None:
        self._waker.wake()

    # -- losing and regaining the connection (consuming thread) -----------------------------
    def _lost(self, session: Session) -> None:
        """Forget a failed connection; its deliveries are already invalid (`session.alive`)."""
        self._session = None
        session.discard()
        what = reason(session.failure) if session.failure else "connection closed"
        if not self._consuming:
            # stopping: nothing more to consume, and the server requeues what was delivered
            log.warning("lost the connection to broker %s while stopping: %s", session.where, what)
            return
        if not self.options.connection_retry:
            self._gave_up = (
                f"lost the connection to broker {session.where}: {what} "
                "(broker_connection_retry is off)"
            )
            raise BrokerUnreachable(self._gave_up)
        log.warning("lost the connection to broker %s: %s; reconnecting", session.where, what)
        if self._backoff is None or time.monotonic() - session.opened_at > FLAPPING:
            self._backoff = intervals(self.options.reconnect_policy())
            self._attempts = 0
        self._schedule(what)

    def _schedule(self, what: str) -> None:
        """Set the time of the next attempt, or give up when the policy has no more."""
        assert self._backoff is not None
        pause = next(self._backoff, None)
        if pause is None:
            self._gave_up = (
                f"gave up reconnecting to {self.connector.name} after "
                f"{self._attempts} attempt(s): {what}"
            )
            raise BrokerUnreachable(self._gave_up)
        self._next_attempt = time.monotonic() + pause

    def _recover(self, timeout: float) -> None:
        """Reconnect when the backoff allows, else wait (wakeable) until it does or time's up.
        Raises BrokerUnreachable once the retries run out."""
        if self._gave_up is not None:
            raise BrokerUnreachable(self._gave_up)  # until consume() starts afresh
        if not self._consuming or self._on_message is None:
            self._waker.wait(timeout)
            return
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            if self._waker.wait(min(wait, timeout)) or time.monotonic() < self._next_attempt:
                return
        self._attempts += 1
        try:
            session = self._open_session()
        except RECONNECT_ERRORS as exc:
            what = reason(exc)
            self._schedule(what)
            log.warning(
                "cannot reconnect (attempt %d): %s; next attempt in %.1fs",
                self._attempts,
                what,
                max(self._next_attempt - time.monotonic(), 0.0),
            )
            return
        self._session = session
        log.warning(
            "reconnected to broker %s after %d attempt(s); consuming from %s again",
            session.where,
            self._attempts,
            ", ".join(spec if isinstance(spec, str) else spec.name for spec in self._queue_specs),
        )

    # -- housekeeping --------------------------------------------------------------------------
    def purge(self, queues: Sequence[str]) -> int:
        conn, _ = self.connector.open()
        try:
            channel = conn.channel()
            total = 0
            for name in queues:
                try:
                    total += channel.queue_purge(name) or 0
                except NotFound:
                    channel = conn.channel()  # no such queue; the error closed the channel
            return total
        finally:
            close_quietly(conn, self.options.connect_timeout)

    def close(self) -> None:
        self._consuming = False
        session, self._session = self._session, None
        if session is not None:
            session.close(self.options.connect_timeout)
        self._senders.close()
        self._waker.close()
