"""One consuming connection: its channel and consumer, the frame pump, heartbeats, and failure."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from amqp.transport import TCPTransport

from .connector import close_quietly
from .delivery import Delivery
from .reading import DeliveryInfo, FrameReader, Properties
from .waking import SocketWaiter, Waker
from .wire import Ledger, frame_complete, read_in_chunks

log = logging.getLogger("kernel.broker.amqp")

# Once the socket is readable a whole frame is normally there or moments away; this bounds
# the wait for the rest of one that arrives in pieces, so a stalled peer cannot hang a poll.
FRAME_WAIT = 0.5
# Frames (or, with the frame reader, socket reads) in one go before handing deliveries over;
# the prefetch bounds them anyway.
MAX_FRAMES = 2000
MAX_READS = 64
# Acks and rejects held before they are sent without waiting for the next poll: a share of the
# prefetch window (the server refills the window while the rest of a batch runs, instead of
# waiting for the whole batch), at most MAX_UNSENT.
UNSENT_SHARE = 8
MAX_UNSENT = 512
QOS_MAX = 0xFFFF  # basic.qos carries a short; beyond it the only honest limit is none


class Session:
    """Owned by the consuming thread. `alive` turns False, for good, when the connection fails
    (or is closed): the server then requeues every message it delivered here."""

    def __init__(self, conn: Any, url: str, where: str, waker: Waker) -> None:
        self.conn = conn  # a connected kombu Connection
        self.url, self.where = url, where
        self.alive = True
        self.failure: BaseException | None = None
        self.opened_at = time.monotonic()
        self._pid = os.getpid()
        # py-amqp sometimes reports a vanished connection as an AttributeError on its transport
        self.errors: tuple[type[BaseException], ...] = (
            *conn.connection_errors,
            *conn.channel_errors,
            AttributeError,
        )
        amqp_conn = self._amqp = conn.connection
        self._read = amqp_conn.blocking_read
        self._transport = amqp_conn.transport
        self._sock = self._transport.sock
        # py-amqp sets the socket's timeout before each frame it reads and restores it after:
        # two system calls a frame, three frames a message. With the timeout already FRAME_WAIT
        # it skips both (this connection only consumes; publishers have their own).
        self._sock.settimeout(FRAME_WAIT)
        read_in_chunks(self._transport)
        self._waker = waker
        self._waiter = SocketWaiter(self._sock, waker)
        self.channel = conn.channel()
        # py-amqp would turn a body with a content_encoding into str; the role promises bytes
        # (and the decode is wasted work: the consumer decodes the payload itself)
        self.channel.auto_decode = False
        self._channel_id: int = self.channel.channel_id
        self._tags: list[str] = []
        # plain TCP: deliveries parsed here, a chunk of frames at a time (TLS: py-amqp reads)
        self._reader = (
            FrameReader(amqp_conn, self.channel, self._deliver)
            if isinstance(self._transport, TCPTransport)
            else None
        )
        self.prefetch: int | None = None
        self.on_message: Callable[[Delivery], None] | None = None
        # deliveries wait here until the frame reading is over, so the consumer's callback
        # (which may ack, or change the prefetch) never runs inside py-amqp's read loop
        self._pending: list[Delivery] = []
        # acks and rejects, sent together: one syscall (and mostly one multiple ack) a batch
        self._ledger = Ledger(self._channel_id)
        self._unsent_limit = MAX_UNSENT
        heartbeat = float(amqp_conn.heartbeat or 0)
        # ticks at a quarter of the interval; heartbeat_tick sends one when half has passed
        self._beat_every = heartbeat / 4 if heartbeat > 0 else 0.0
        self._next_beat = time.monotonic() + self._beat_every
        # RabbitMQ 3.3-3.x reads global=True as "one limit for the channel" (the spec's
        # per-consumer meaning otherwise), which is what bounds a consumer of several queues
        self._qos_global = not conn.qos_semantics_matches_spec

    # -- setting up (consuming thread) ----------------------------------------------------------
    def start(
        self,
        queues: Sequence[Any],
        on_message: Callable[[Delivery], None],
        prefetch: int,
    ) -> None:
        """Declare the queues as Celery does, set the prefetch, start consuming."""
        self.on_message = on_message
        for queue in queues:
            queue(self.channel).declare()
        self.qos(prefetch)
        for queue in queues:
            # deliveries py-amqp reads itself (while it waits for a reply, or over TLS)
            # come through the callback; the others through the frame reader
            self._tags.append(
                self.channel.basic_consume(queue.name, no_ack=False, callback=self._delivered)
            )

    def qos(self, prefetch: int) -> None:
        if prefetch == self.prefetch:
            return  # basic.qos is a round trip; the consumer asks again for every eta task
        count = prefetch if 0 <= prefetch <= QOS_MAX else 0
        if count != prefetch:
            log.warning(
                "prefetch %d exceeds AMQP's limit of %d: no limit is set", prefetch, QOS_MAX
            )
        self.flush()
        self.channel.basic_qos(0, count, self._qos_global)
        self.prefetch = prefetch
        self._unsent_limit = min(max(count // UNSENT_SHARE, 1), MAX_UNSENT) if count else MAX_UNSENT

    def cancel(self) -> None:
        if self._tags:
            self.flush()
        while self._tags:
            self.channel.basic_cancel(self._tags.pop())

    # -- acks (consuming thread) ---------------------------------------------------------------
    def ack(self, delivery_tag: int) -> None:
        """Queue a basic.ack; it is sent with the next flush."""
        self._ledger.ack(delivery_tag)
        if len(self._ledger) >= self._unsent_limit:
            self.flush()

    def reject(self, delivery_tag: int, requeue: bool) -> None:
        """Queue a basic.reject; it is sent with the next flush."""
        self._ledger.reject(delivery_tag, requeue)
        if len(self._ledger) >= self._unsent_limit:
            self.flush()

    def flush(self) -> None:
        """Send the queued acks and rejects. A failure is recorded, not raised: the server
        requeues those messages with the connection."""
        if not len(self._ledger):
            return
        data = self._ledger.take()
        if not self.alive:
            return
        try:
            self._sock.sendall(data)
        except self.errors as exc:
            self.fail(exc)
            return
        self._amqp.bytes_sent += 1  # traffic counts as a heartbeat in py-amqp's bookkeeping

    # -- pumping frames (consuming thread) -------------------------------------------------------
    def _deliver(self, body: bytes, properties: Properties, info: DeliveryInfo) -> None:
        delivery = Delivery(self, body, properties, info)
        self._ledger.delivered(delivery.delivery_tag)
        self._pending.append(delivery)

    def _delivered(self, message: Any) -> None:
        """A delivery py-amqp read (its body left as bytes: auto_decode is off)."""
        self._deliver(message.body, message.properties, message.delivery_info)

    def _frame_ready(self) -> bool:
        """A whole frame py-amqp already holds (or bytes TLS holds), which select cannot see.
        Part of a frame does not count: its rest comes through the socket."""
        if frame_complete(self._transport._read_buffer):
            return True
        pending = getattr(self._sock, "pending", None)
        return bool(pending and pending())

    def pump(self, timeout: float) -> None:
        """Send queued acks, wait up to `timeout` for the server or a wake-up, read whatever
        has arrived, then hand deliveries to `on_message`. A connection failure is recorded
        (`alive` turns False), not raised; exceptions of `on_message` itself propagate."""
        self.flush()
        if not self._pending and self.alive:
            try:
                self._receive(timeout)
            except self.errors as exc:
                self.fail(exc)
                return
        if self._pending:
            self._hand_over()

    def _receive(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self._beat_every and now >= self._next_beat:
                # py-amqp's own call: kombu's wrapper would reconnect a dead connection itself
                self._amqp.heartbeat_tick(rate=2)
                self._next_beat = now + self._beat_every
            if self._frame_ready():
                readable, woken = True, False
            else:
                wait = deadline - now
                if self._beat_every:
                    wait = min(wait, self._next_beat - now)
                readable, woken = self._waiter.wait(max(wait, 0.0))
            if woken:
                self._waker.clear()
            if readable:
                self._read_ready()
            if self._pending or woken or time.monotonic() >= deadline:
                return

    def _read_ready(self) -> None:
        reader = self._reader
        if reader is not None:
            if frame_complete(self._transport._read_buffer):
                reader.parse()  # frames py-amqp read ahead while it waited for a reply
            for _ in range(MAX_READS):
                if not self._waiter.sock_readable():
                    return
                reader.receive()
            return
        read = self._read
        for _ in range(MAX_FRAMES):
            try:
                read(FRAME_WAIT)
            except TimeoutError:
                return  # part of a frame: py-amqp keeps it buffered for the next read
            if not (self._frame_ready() or self._waiter.sock_readable()):
                return

    def _hand_over(self) -> None:
        pending, self._pending = self._pending, []
        on_message = self.on_message
        assert on_message is not None
        for index, delivery in enumerate(pending):
            if not self.alive:
                return  # the rest were requeued by the server with the connection
            try:
                on_message(delivery)
            except BaseException:
                # keep the ones not handed over yet: they hold prefetch slots until acked
                self._pending[:0] = pending[index + 1 :]
                raise

    # -- failure and closing -----------------------------------------------------------------
    def fail(self, exc: BaseException) -> None:
        """Record that the connection broke (an ack failed, say); poll() will reconnect."""
        if self.alive:
            self.alive = False
            self.failure = exc
            self._pending.clear()
            self._ledger.clear()

    def discard(self) -> None:
        """Drop a failed connection without talking to the server (it may hang)."""
        self.alive = False
        self._pending.clear()
        self._ledger.clear()
        if self._forked():
            return
        try:
            self.conn.collect()
        except Exception:  # the socket may already be gone in any number of ways
            pass

    def close(self, timeout: float) -> None:
        """Close politely, bounded by `timeout`; unacked messages go back to their queues."""
        if self.alive and not self._forked():
            self.flush()  # acks made since the last poll still count
            if self.alive:
                self.alive = False
                self._pending.clear()
                close_quietly(self.conn, timeout)
                return
        self.discard()

    def _forked(self) -> bool:
        """In a child process the socket is the parent's too: even a shutdown() would cut the
        parent off, so the child only forgets it."""
        return os.getpid() != self._pid
