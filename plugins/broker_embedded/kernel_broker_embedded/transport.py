"""kombu virtual transport backed by one SQLite file: the embedded default broker."""

# kombu ships without type annotations.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import itertools
import os
import pathlib
import select
import socket
import sqlite3
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.log import get_logger
from kombu.transport import virtual
from kombu.transport.virtual.base import NotEquivalentError
from kombu.utils.json import dumps, loads
from kombu.utils.uuid import uuid

from . import liveness
from .doorbell import Doorbell, Ringer, bell_dir
from .leases import LeaseKeeper
from .store import DELAYED, READY, Row, Store
from .urls import path_from_client

logger = get_logger(__name__)

DEFAULT_VISIBILITY_TIMEOUT = 3600.0
DEFAULT_BUSY_TIMEOUT = 30.0
DEFAULT_HOUSEKEEPING_INTERVAL = 2.0
#: Most messages claimed in one transaction when the prefetch limit allows more.
DEFAULT_CLAIM_BATCH = 32

# Claim numbers never repeat within a process; with the channel's token they name a hand-out.
_claims = itertools.count(1)

Deliver = Callable[[dict[str, Any], str], None]


def eta_of(headers: dict[str, Any] | None) -> float | None:
    """The ``eta`` header as a Unix timestamp; None when absent or unparseable."""
    eta = headers.get("eta") if headers else None
    if not eta:
        return None
    try:
        when = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
    except ValueError:
        # Deliver now: the worker rejects it with a log line instead of it vanishing here.
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _wait_readable(fds: tuple[int, ...], timeout: float) -> None:
    # poll() rather than select(): a busy worker may hold descriptors numbered above 1024.
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(max(int(timeout * 1000 + 0.999), 0))
    else:
        select.select(list(fds), [], [], timeout)


def _split_tag(delivery_tag: Any) -> tuple[int, int] | None:
    try:
        row, _, claim = str(delivery_tag).partition(".")
        return int(row), int(claim)
    except ValueError:
        return None


def _retire(store: Store, token: str, leases: LeaseKeeper, ringer: Ringer, pid: int) -> None:
    """Give back a channel's reservations and forget it (it closed, was collected, or we exit)."""
    leases.forget(token)
    if os.getpid() != pid:
        return  # a forked child exiting must not release its parent's messages
    try:
        if store.retire_owner(token):
            ringer.ring()
    except sqlite3.Error:
        # Another consumer's dead-owner check or the leases will bring them back instead.
        logger.warning("could not release reservations of channel %s", token, exc_info=True)


class QoS(virtual.QoS):
    """Prefetch accounting for one channel.

    Unlike kombu's in-memory bookkeeping, the unacked messages themselves stay in the
    file, reserved by the channel, so nothing is lost if the process dies.
    """

    channel: Channel

    def __init__(self, channel: Channel, prefetch_count: int = 0) -> None:
        self.channel = channel
        self.prefetch_count = prefetch_count or 0
        # Insertion-ordered: acknowledging with ``multiple`` covers earlier tags.
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._restored = False

    def can_consume(self) -> bool:
        return not self.prefetch_count or len(self._delivered) < self.prefetch_count

    def can_consume_max_estimate(self) -> int | None:
        if self.prefetch_count:
            return max(self.prefetch_count - len(self._delivered), 0)
        return None

    def append(self, message: Any, delivery_tag: str) -> None:
        self._delivered[delivery_tag] = None

    def get(self, delivery_tag: str) -> Any:
        raise KeyError(delivery_tag)

    def ack(self, delivery_tag: str, multiple: bool = False) -> None:
        if self.channel.closed:
            return  # closing released the reservation; the message will come again
        tags = [delivery_tag]
        if multiple and delivery_tag in self._delivered:
            tags = list(itertools.takewhile(lambda t: t != delivery_tag, self._delivered))
            tags.append(delivery_tag)
        for tag in tags:
            self._delivered.pop(tag, None)
            ref = _split_tag(tag)
            if ref is not None:
                self.channel.store.ack(ref[0], self.channel.token, ref[1])

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self.channel.closed:
            return
        self._delivered.pop(delivery_tag, None)
        ref = _split_tag(delivery_tag)
        if ref is None:
            return
        row_id, claim = ref
        if requeue:
            if self.channel.store.requeue(row_id, self.channel.token, claim):
                self.channel.connection.ring()
        else:
            self.channel.store.ack(row_id, self.channel.token, claim)

    def restore_unacked(self) -> list[Any]:
        self._delivered.clear()
        self.channel._release_reserved()
        return []

    def restore_unacked_once(self, stderr: Any = None) -> None:
        if not self._restored:
            self._restored = True
            self.restore_unacked()

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Expired leases are reclaimed by the claim query itself."""


class Channel(virtual.Channel):
    """A channel with its own SQLite connection.

    Queues, exchanges and bindings live in the file, so a binding declared by one
    process routes what another publishes.
    """

    QoS = QoS
    connection: Transport
    # Routing is done here in basic_publish, fanout included, from persisted bindings.
    supports_fanout = False

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.store = Store(connection.db_path, connection.busy_timeout)
        #: Identifies this channel's reservations in the file.
        self.token = uuid().replace("-", "")
        self._retirement: weakref.finalize | None = None  # type: ignore[type-arg]
        self._no_ack_queues: set[str] = set()
        self._next_queue = 0

    # -- declarations ---------------------------------------------------------------

    def exchange_declare(
        self,
        exchange: str | None = None,
        type: str = "direct",
        durable: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        nowait: bool = False,
        passive: bool = False,
    ) -> None:
        type = type or "direct"
        exchange = exchange or f"amq.{type}"
        if passive:
            if self.store.exchange_type(exchange) is None:
                raise ChannelError(
                    f"NOT_FOUND - no exchange {exchange!r}",
                    (50, 10),
                    "Channel.exchange_declare",
                    "404",
                )
            return
        if type not in self.exchange_types:
            raise ChannelError(f"unsupported exchange type {type!r}")
        existing = self.store.declare_exchange(
            exchange, type, durable, auto_delete, dumps(arguments or {})
        )
        if existing != type:
            raise NotEquivalentError(
                f"Cannot redeclare exchange {exchange!r} as {type!r}: it is {existing!r}"
            )

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        self.store.delete_exchange(exchange)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        auto_delete = bool(kwargs.get("auto_delete") or kwargs.get("exclusive"))
        self.store.declare_queue(queue, auto_delete)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.store.has_queue(queue)

    def queue_bind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.store.bind(queue, exchange or "amq.direct", routing_key or "", dumps(arguments or {}))

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.store.unbind(queue, exchange or "amq.direct", routing_key or "")

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> int | None:
        if if_empty and self._size(queue):
            return None
        return self.store.delete_queue(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self.store.delete_queue(queue)

    def list_bindings(self) -> list[tuple[str, str, str]]:
        return self.store.all_bindings()

    def get_exchanges(self) -> list[str]:
        return self.store.exchanges()

    def typeof(self, exchange: str, default: str = "direct") -> Any:
        return self.exchange_types[self.store.exchange_type(exchange) or default]

    def get_table(self, exchange: str) -> list[tuple[str, Any, str]]:
        type, bindings = self.store.routes(exchange)
        if type is None:
            raise KeyError(exchange)
        kind: Any = self.exchange_types[type]
        return [kind.prepare_bind(q, exchange, rk, loads(a) if a else {}) for q, rk, a in bindings]

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if not exchange:
            return [routing_key]
        try:
            table = self.get_table(exchange)
        except KeyError:
            table = []
        queues = sorted(self.typeof(exchange).lookup(table, exchange, routing_key, None))
        if not queues and self.deadletter_queue:
            return [self.deadletter_queue]
        return queues

    # -- publishing -----------------------------------------------------------------

    def basic_publish(
        self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any
    ) -> None:
        self._inplace_augment_message(message, exchange, routing_key)
        queues = self._route(exchange, routing_key)
        if queues:
            self._insert(queues, message)
        else:
            logger.debug("unroutable message dropped: exchange=%r key=%r", exchange, routing_key)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self._insert([queue], message)

    def _insert(self, queues: list[str], message: dict[str, Any]) -> None:
        eta = eta_of(message.get("headers"))
        if eta is not None and eta > time.time():
            state, visible_at = DELAYED, eta
        else:
            state, visible_at = READY, 0.0
        self.store.insert(
            queues, self._get_message_priority(message), state, visible_at, dumps(message)
        )
        self.connection.ring()

    # -- consuming ------------------------------------------------------------------

    def _register(self) -> None:
        """Record who owns this channel's reservations, for dead-owner detection."""
        if self._retirement is None:
            pid = os.getpid()
            self.store.register_owner(self.token, liveness.host_id(), pid, liveness.start_time(pid))
            transport = self.connection
            # Also on garbage collection and at interpreter exit, so a channel that is
            # never closed does not keep its messages leased for as long as we live.
            self._retirement = weakref.finalize(
                self, _retire, self.store, self.token, transport.leases, transport._ringer, pid
            )

    def basic_consume(
        self,
        queue: str,
        no_ack: bool,
        callback: Callable[..., Any],
        consumer_tag: str,
        **kwargs: Any,
    ) -> Any:
        self._register()
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        self.store.adopt_queue(queue, self.token)
        self.store.add_consumer(self.token, queue)
        # A consumer starting up is the moment to take back what dead ones left behind.
        self.connection.housekeeping(self.store)
        return result

    def basic_cancel(self, consumer_tag: str) -> None:
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues and not self.closed:
            self.store.remove_consumer(self.token, queue)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        if not no_ack:
            self._register()
        rows, claim = self._fetch(queue, 1, no_ack)
        if not rows:
            return None
        message = self.Message(self._to_payload(rows[0], claim), channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        self._register()
        rows, claim = self._fetch(queue, 1, False)
        if not rows:
            raise Empty()
        return self._to_payload(rows[0], claim)

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        self.qos.ack(delivery_tag, multiple=multiple)

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False
    ) -> None:
        self.qos.prefetch_count = prefetch_count or 0

    def _fetch(self, queue: str, limit: int, no_ack: bool) -> tuple[list[Row], int]:
        now = time.time()
        if no_ack:
            return self.store.take(queue, now), 0
        claim = next(_claims)
        rows = self.store.claim(
            queue, limit, self.token, claim, now + self.connection.visibility_timeout, now
        )
        if rows:
            self.connection.leases.watch(self.token)
        return rows, claim

    def _to_payload(self, row: Row, claim: int) -> dict[str, Any]:
        row_id, _priority, redelivered, text = row
        payload: dict[str, Any] = loads(text)
        props = payload.setdefault("properties", {})
        # The tag names the row and this particular claim of it, so a stale ack (after the
        # lease ran out and someone else got the message) cannot delete the new holder's copy.
        props["delivery_tag"] = f"{row_id}.{claim}"
        info = props.get("delivery_info")
        if not isinstance(info, dict):
            info = props["delivery_info"] = {}
        info["redelivered"] = bool(redelivered)
        if redelivered:
            headers = payload.get("headers")
            if not isinstance(headers, dict):
                headers = payload["headers"] = {}
            headers["redelivered"] = True
        return payload

    def drain_events(self, timeout: float | None = None, callback: Deliver | None = None) -> None:
        """Deliver what one claim yields from the next non-empty queue; Empty if none."""
        if not self._consumers or self.closed:
            raise Empty()
        deliver: Deliver = callback or self.connection._deliver
        queues = self._active_queues
        count = len(queues)
        for step in range(count):
            index = (self._next_queue + step) % count
            queue = queues[index]
            no_ack = queue in self._no_ack_queues
            limit = 1
            if not no_ack:
                room = self.qos.can_consume_max_estimate()
                if room == 0:
                    raise Empty()
                limit = min(room or self.connection.claim_batch, self.connection.claim_batch)
            rows, claim = self._fetch(queue, limit, no_ack)
            if rows:
                # Start the next poll at the following queue, so no queue starves another.
                self._next_queue = (index + 1) % count
                self._hand_over(rows, claim, queue, deliver)
                return
        raise Empty()

    def _hand_over(self, rows: list[Row], claim: int, queue: str, deliver: Deliver) -> None:
        done = 0
        try:
            for row in rows:
                done += 1
                deliver(self._to_payload(row, claim), queue)
        finally:
            if claim and done < len(rows):
                # A callback raised: the rest were never seen, give them back untouched.
                self.store.unclaim([r[0] for r in rows[done:]], self.token, claim)

    def next_due(self) -> float | None:
        # With the prefetch window full nothing could be claimed when it falls due anyway.
        if not self._consumers or self.closed or not self.qos.can_consume():
            return None
        return self.store.next_due(self._active_queues)

    # -- size, purge, shutdown ------------------------------------------------------

    def _size(self, queue: str) -> int:
        return self.store.size(queue)

    def _purge(self, queue: str) -> int:
        return self.store.purge(queue)

    def _release_reserved(self) -> None:
        if self._retirement is not None and self.store.release_owner(self.token):
            self.connection.ring()

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._retirement is not None:
                self._retirement()
        finally:
            super().close()
            self.store.close()


class Transport(virtual.Transport):
    """The embedded broker transport: ``embedded:///path.db``.

    Transport options: ``visibility_timeout`` (seconds, default 3600),
    ``polling_interval`` (longest idle sleep, default 1 s), ``busy_timeout``
    (seconds to wait for the file's write lock, default 30) and
    ``housekeeping_interval`` (dead-owner check, default 2 s).
    """

    Channel = Channel
    driver_type = "embedded"
    driver_name = "sqlite"
    default_port = None
    # Only a safety net: idle consumers are woken by the doorbell.
    polling_interval = 1.0
    # "database is locked" beyond the busy timeout: worth a reconnect and retry.
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.OperationalError)  # type: ignore[assignment]
    channel_errors = (*virtual.Transport.channel_errors, NotEquivalentError)  # type: ignore[assignment]

    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        options = client.transport_options
        self.visibility_timeout = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
        )
        self.busy_timeout = float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
        self.housekeeping_interval = float(
            options.get("housekeeping_interval", DEFAULT_HOUSEKEEPING_INTERVAL)
        )
        self.claim_batch = max(int(options.get("claim_batch", DEFAULT_CLAIM_BATCH)), 1)
        path = path_from_client(client)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Resolved, so every process derives the same doorbell directory from it.
        self.db_path = pathlib.Path(os.path.realpath(path))
        self.leases = LeaseKeeper(self.db_path, self.visibility_timeout, self.busy_timeout)
        self._bells = bell_dir(self.db_path)
        self._ringer = Ringer(self._bells)
        self._doorbell: Doorbell | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._next_housekeeping = 0.0
        super().__init__(client, **kwargs)

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    def ring(self) -> None:
        """Tell listening consumers (in any process) that the file changed."""
        self._ringer.ring()

    def wakeup(self) -> None:
        """Make a ``drain_events`` blocked in another thread return promptly. Thread-safe."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # a full buffer already guarantees a wake-up

    def _clear_wakeups(self) -> bool:
        woken = False
        while True:
            try:
                if not self._wake_r.recv(4096):
                    return woken
            except OSError:
                return woken
            woken = True

    def _listen(self) -> Doorbell:
        if self._doorbell is None:
            self._doorbell = Doorbell(self._bells)
            self._ringer.skip = self._doorbell.name
        return self._doorbell

    def housekeeping(self, store: Store | None = None) -> None:
        """Release the reservations of dead consumer processes on this host."""
        self._next_housekeeping = time.monotonic() + self.housekeeping_interval
        if store is None:
            store = next((c.store for c in self.channels if not c.closed), None)
            if store is None:
                return
        released = 0
        for token, pid, started in store.owners_on(liveness.host_id()):
            if not liveness.is_alive(pid, started):
                n = store.retire_owner(token)
                if n:
                    logger.info("restored %d message(s) of dead consumer pid %d", n, pid)
                released += n
        if released:
            self.ring()

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        bell = self._listen()
        while True:
            # Clear rings before looking: a publish committed after this point rings
            # again, so the select below cannot sleep through it.
            woken = self._clear_wakeups()
            bell.clear()
            if time.monotonic() >= self._next_housekeeping:
                self.housekeeping()
            try:
                self.cycle.get(self._deliver)  # type: ignore[union-attr]
                return
            except Empty:
                pass
            if woken:
                raise TimeoutError()
            wait = self.polling_interval or 1.0
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                wait = min(wait, remaining)
            wait = min(wait, max(self._next_housekeeping - time.monotonic(), 0.0))
            due = self._next_due()
            if due is not None:
                # A little past the due time, so the claim's clock agrees it is due.
                wait = min(wait, max(due - time.time(), 0.0) + 0.002)
            if wait > 0:
                _wait_readable((bell.fileno(), self._wake_r.fileno()), wait)

    def _next_due(self) -> float | None:
        dues = [d for d in (c.next_due() for c in self.channels) if d is not None]
        return min(dues) if dues else None

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            self.leases.stop()
            if self._doorbell is not None:
                self._ringer.skip = None
                self._doorbell.close()
                self._doorbell = None
