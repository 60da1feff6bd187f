"""The Redis broker: batched atomic fetches, batched acks, leases that live as long as the worker.

On-Redis layout is kombu's (lists named after queues, priority lists, the `unacked` hash and
`unacked_index` zset, binding sets), so Celery clients and workers share queues with ours.
What differs is how this side uses it:

* a batch of messages is taken and recorded as unacknowledged by one Lua script (kombu pops,
  then records: a worker that dies in between loses the message);
* acknowledgements are gathered and sent as one pipeline per loop turn;
* a live worker renews the `unacked_index` score of everything it holds, so neither our
  visibility sweep nor Celery's hands a message held for an eta or a long task to someone else;
* each worker heart-beats; the others give back a silent worker's messages within
  `worker_lost_timeout` seconds instead of the one-hour visibility timeout.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from kernel.plugin import BaseBroker, BrokerUnreachable, Outgoing, QueueSpec, retry_call

from .envelope import body_of, envelope, parse
from .keys import SEP, Keys
from .lanes import Lanes
from .scripts import FETCH
from .threads import Maintenance, restore, text
from .urls import Target, targets
from .waits import Waits

log = logging.getLogger("kernel.broker.redis")

ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
ACK_BATCH = 64  # acknowledgements sent together once this many have gathered
# ... or with the next take, or once the first of them has waited this long (seconds): an
# ack sent on its own while a task runs is a round trip that delays noticing the task's end
ACK_LINGER = 0.05


class RedisMessage:
    """One delivered message. ack/reject are recorded here and sent in the next batch."""

    valid = True  # a delivery stays this consumer's across a reconnect: never taken back

    __slots__ = (
        "_broker",
        "body",
        "content_encoding",
        "content_type",
        "delivery_info",
        "delivery_tag",
        "headers",
        "properties",
        "raw",
        "source",
    )

    def __init__(self, broker: RedisBroker, raw: str, source: str, tag: str) -> None:
        self._broker, self.raw, self.source, self.delivery_tag = broker, raw, source, tag
        try:
            payload = parse(raw)
            self.headers = dict(payload.get("headers") or {})
            self.properties = dict(payload.get("properties") or {})
            self.body = body_of(payload)
            self.content_type = payload.get("content-type") or ""
            self.content_encoding = payload.get("content-encoding") or "utf-8"
        except (ValueError, TypeError, AttributeError):
            # not kombu's envelope: hand the bytes on, so the consumer logs why it refuses them
            self.headers, self.properties, self.body = {}, {}, raw.encode("utf-8", "replace")
            self.content_type, self.content_encoding = "application/x-unknown-envelope", "binary"
        info = self.properties.get("delivery_info")
        self.delivery_info = dict(info) if isinstance(info, dict) else {}
        self.delivery_info.setdefault("redelivered", bool(self.headers.get("redelivered")))

    def ack(self) -> None:
        self._broker._settle(self)

    def reject(self, requeue: bool = False) -> None:
        if requeue:
            self._broker._requeue(self)
        else:
            self._broker._settle(self)


class RedisBroker(BaseBroker):
    """`publish` from any thread; consuming from the one thread calling `consume` and `poll`."""

    wakes_up = True

    def __init__(
        self,
        url: str,
        *,
        transport_options: Mapping[str, Any] | None = None,
        connect_timeout: float = 4.0,
        publish_retry: bool = True,
        publish_retry_policy: Mapping[str, Any] | None = None,
    ) -> None:
        options = dict(transport_options or {})
        self.url = url
        self.keys = Keys.from_options(options)
        self.visibility_timeout = float(options.get("visibility_timeout", 3600))
        self.worker_lost_timeout = float(options.get("worker_lost_timeout", 10))
        self.fetch_batch = int(options.get("fetch_batch", 100))
        self.publish_retry = publish_retry
        self.publish_policy = dict(publish_retry_policy or {})
        self._targets: list[Target] = targets(url, options, connect_timeout)
        self._target = 0
        self._client: redis.Redis | None = None
        self._fetch: Any = None
        self.lanes = Lanes()
        self._lock = threading.Lock()
        self._bound: set[str] = set()
        self._routes: dict[str, tuple[float, list[tuple[str, str]]]] = {}
        # consuming state, owned by the consuming thread
        self.consumer_id = uuid.uuid4().hex
        self.lists: list[str] = []
        self._on_message: Callable[[Any], None] | None = None
        self._prefetch = 0
        self._consuming = False
        self.held: dict[str, RedisMessage] = {}
        self._acks: list[str] = []
        self._acks_since = 0.0  # when the oldest pending ack was made
        self._dry = False  # the last take found the lists empty
        self._maintenance: Maintenance | None = None
        self._waits = Waits(self)
        self._down_since: float | None = None
        self._pauses = 0

    # -- connections ------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return self._targets[self._target].where

    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = self._targets[self._target].client()
                self._fetch = self._client.register_script(FETCH)
            return self._client

    def new_client(self) -> redis.Redis:
        """A separate client to the current target (for threads that block in Redis)."""
        return self._targets[self._target].client()

    def _fail_over(self, exc: BaseException | None = None) -> None:
        """Drop the client; with several URLs, move to the next one."""
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:
                    pass
            self._client = None
            if len(self._targets) > 1:
                self._target = (self._target + 1) % len(self._targets)

    def connect(self) -> None:
        errors = []
        for _ in self._targets:
            try:
                self.client().ping()
                return
            except ERRORS as exc:
                errors.append(f"{self.where}: {exc}")
                self._fail_over()
        raise BrokerUnreachable("cannot reach broker " + "; ".join(errors))

    # -- publishing (any thread) ------------------------------------------------------------
    def publish(self, messages: Sequence[Outgoing]) -> None:
        """LPUSH each message onto its list (one command for one message, else one pipeline)."""
        pushes = []
        for message in messages:
            raw = envelope(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                headers=message.headers,
                properties=message.properties,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
            )
            pushes.append((message, raw, message.properties.get("priority") or 0))
        declared = {self._name(q) for message in messages for q in message.declare}

        def send() -> None:
            client = self.client()
            fresh = sorted(declared - self._bound)
            targets = [
                (self.keys.queue(queue, priority), raw)
                for message, raw, priority in pushes
                for queue in (
                    [message.routing_key]
                    if not message.exchange
                    else self._route(client, message.exchange, message.routing_key)
                )
            ]
            commands: list[tuple[Any, ...]] = [
                # the binding Celery records when it declares a queue
                ("SADD", self.keys.binding(name), self.keys.binding_member(name, name))
                for name in fresh
            ]
            commands += [("LPUSH", key, raw) for key, raw in targets]
            if commands:
                self.lanes.call(client, *commands)
            self._bound.update(fresh)

        self._with_retries(send, "publish")

    def _with_retries(self, fn: Callable[[], Any], what: str) -> Any:
        policy = self.publish_policy if self.publish_retry else {"max_retries": 0}
        try:
            return retry_call(
                fn, ERRORS, policy, f"{what} to {self.where}", on_retry=self._fail_over
            )
        except ERRORS as exc:
            raise BrokerUnreachable(f"cannot {what} to broker {self.where}: {exc}") from None

    @staticmethod
    def _name(queue: str | QueueSpec) -> str:
        return queue if isinstance(queue, str) else queue.name

    def _route(self, client: redis.Redis, exchange: str, routing_key: str) -> list[str]:
        """Queues a named (direct) exchange sends `routing_key` to, from kombu's binding set."""
        cached = self._routes.get(exchange)
        if cached is None or cached[0] < time.monotonic():
            members = client.smembers(self.keys.binding(exchange))
            table = []
            for member in members:
                text = member.decode() if isinstance(member, bytes) else str(member)
                key, _, queue = text.split(SEP, 2)
                table.append((key, queue))
            cached = self._routes[exchange] = (time.monotonic() + 5.0, table)
        queues = sorted({queue for key, queue in cached[1] if key == routing_key})
        if not queues:
            log.warning(
                "no queue is bound to exchange %r with key %r; message dropped",
                exchange,
                routing_key,
            )
        return queues

    # -- consuming (one thread) -------------------------------------------------------------
    def consume(
        self, queues: Sequence[str | QueueSpec], on_message: Callable[[Any], None], prefetch: int
    ) -> None:
        names = [self._name(q) for q in queues]
        self.lists = self.keys.queue_lists(names)
        self._on_message = on_message
        self._prefetch = prefetch
        client = self.client()
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.sadd(self.keys.binding(name), self.keys.binding_member(name, name))
            pipe.sadd(self.keys.consumers, self.consumer_id)
            pipe.set(self.keys.heartbeat(self.consumer_id), "1", ex=self._heartbeat_ttl)
            pipe.execute()
        self._consuming = True
        self._maintenance = Maintenance(self)
        self._maintenance.start()

    @property
    def _heartbeat_ttl(self) -> int:
        return max(int(self.worker_lost_timeout), 2)

    def set_prefetch(self, prefetch: int) -> None:
        self._prefetch = prefetch

    def cancel_consuming(self) -> None:
        self._consuming = False
        self._waits.disarm()

    def wakeup(self) -> None:
        self._waits.wakeup()

    def poll(self, timeout: float) -> None:
        """Take a batch if there is room for one; otherwise wait.

        Batching is what makes this fast: acks go out with the next take, when ACK_BATCH have
        gathered, or ACK_LINGER after the first of them; a new batch is taken only once a
        quarter of the window is free (or nothing is held), so a busy worker does not pay a
        round trip per message."""
        waits = self._waits
        try:
            if self._down_since is not None:
                self._back_up(self._down_since)  # raises while the broker is still away
            if len(self._acks) >= ACK_BATCH or (
                self._acks and time.monotonic() - self._acks_since >= ACK_LINGER
            ):
                self._flush_acks()
            if self._consuming:
                room = self._room()
                if self._dry:
                    # the last take emptied the lists: wait in Redis, not another take; armed
                    # only now, once what it took is on its way to the pool
                    self._dry = False
                    waits.arm(room)
                elif room > 0 and (room >= self._refill_at() or not self.held) and not waits.armed:
                    taken = self._take(room)
                    if taken:
                        self._dry = taken < room
                        return
                    waits.arm(room)  # block in Redis until a list fills
            if self._acks:  # wake up to send them when the linger ends
                timeout = min(timeout, max(self._acks_since + ACK_LINGER - time.monotonic(), 0))
            dry = False
            for found, want in waits.wait(timeout):
                dry = self._deliver(found) < want or dry
            self._dry = dry
        except ERRORS as exc:
            self._connection_lost(exc)
            waits.disarm()
            waits.forget()
            waits.wait(min(timeout, self._retry_pause()))

    def _room(self) -> int:
        if not self._prefetch:
            return self.fetch_batch
        return min(self._prefetch - len(self.held), self.fetch_batch)

    def _refill_at(self) -> int:
        window = self._prefetch or self.fetch_batch
        return max(min(window // 4, self.fetch_batch), 1)

    def fetch_command(self, count: int, registered: bool) -> tuple[Any, ...]:
        """The fetch script's call taking up to `count` messages (see FETCH); `registered`:
        only while this consumer is registered (a take queued behind a blocking wait)."""
        keys = (
            self.keys.unacked,
            self.keys.unacked_index,
            self.keys.held(self.consumer_id),
            self.keys.consumers,
            *self.lists,
        )
        guard = self.consumer_id if registered else ""
        return ("EVALSHA", self._fetch.sha, len(keys), *keys, count, time.time(), guard)

    def _take(self, count: int) -> int:
        """Fetch up to `count` messages, sending the pending acks in the same round trip."""
        client = self.client()
        tags, self._acks = self._acks, []
        fetch = self.fetch_command(count, False)
        try:
            commands = self._ack_commands(tags) if tags else []
            commands.append(fetch)
            found = self.lanes.call(client, *commands)[-1]
        except redis.exceptions.NoScriptError:  # the server lost its scripts (a restart)
            found = self._fetch(keys=fetch[3 : 3 + fetch[2]], args=fetch[3 + fetch[2] :])
        except ERRORS:
            self._acks.extend(tags)  # acks are idempotent: send them again next time
            raise
        return self._deliver(found)

    def _deliver(self, found: list[Any]) -> int:
        """Hand the fetch script's reply to the consumer, message by message."""
        on_message = self._on_message
        assert on_message is not None
        for i in range(0, len(found), 3):
            source = self.lists[int(found[i]) - 1]
            tag = text(found[i + 1])
            message = RedisMessage(self, text(found[i + 2]), source, tag)
            if tag:
                self.held[tag] = message
            on_message(message)
        return len(found) // 3

    def _settle(self, message: RedisMessage) -> None:
        if self.held.pop(message.delivery_tag, None) is not None:
            if not self._acks:
                self._acks_since = time.monotonic()
            self._acks.append(message.delivery_tag)

    def _flush_acks(self) -> None:
        tags, self._acks = self._acks, []
        try:
            self.lanes.call(self.client(), *self._ack_commands(tags))
        except ERRORS:
            self._acks.extend(tags)  # acks are idempotent: send them again next time
            raise

    def _ack_commands(self, tags: list[str]) -> list[tuple[Any, ...]]:
        return [
            ("HDEL", self.keys.unacked, *tags),
            ("ZREM", self.keys.unacked_index, *tags),
            ("SREM", self.keys.held(self.consumer_id), *tags),
        ]

    def _requeue(self, message: RedisMessage) -> None:
        """Reject with requeue: the message goes to the back of its queue, as kombu does."""
        if self.held.pop(message.delivery_tag, None) is None:
            return
        self.give_back(message.delivery_tag, message.raw, message.source, front=False)

    def give_back(
        self, tag: str, raw: str, source: str, *, front: bool, redelivered: bool = False
    ) -> None:
        if redelivered:
            raw = flag_redelivered(raw)
        with self.client().pipeline(transaction=True) as pipe:
            (pipe.rpush if front else pipe.lpush)(source, raw)
            pipe.hdel(self.keys.unacked, tag)
            pipe.zrem(self.keys.unacked_index, tag)
            pipe.srem(self.keys.held(self.consumer_id), tag)
            pipe.execute()

    # -- outages ----------------------------------------------------------------------------
    def _connection_lost(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._pauses = 0
            log.warning(
                "lost the broker at %s (%s: %s); reconnecting", self.where, type(exc).__name__, exc
            )
        self._fail_over(exc)

    def _retry_pause(self) -> float:
        self._pauses += 1
        return float(min(0.1 * 2**self._pauses, 5.0))

    def _back_up(self, down_since: float) -> None:
        """First contact after an outage: register again, and give back what a take whose
        reply was lost recorded as ours.

        Runs before anything is taken or waited for again (the waits were dropped with the
        connection), so every tag in this consumer's held set is either handed on (in
        `held`), settled (its ack pending), or taken by a script whose reply never came:
        the last are given back now, not one visibility timeout later."""
        client, held = self.client(), self.keys.held(self.consumer_id)
        # the registry may have been lost with the server, or reaped while we were away
        with client.pipeline(transaction=False) as pipe:
            pipe.sadd(self.keys.consumers, self.consumer_id)
            pipe.set(self.keys.heartbeat(self.consumer_id), "1", ex=self._heartbeat_ttl)
            pipe.smembers(held)
            recorded = pipe.execute()[-1]
        known = set(self.held).union(self._acks)
        lost = [tag for tag in map(text, recorded) if tag not in known]
        given = sum(restore(client, self.keys, tag) for tag in lost)
        if lost:
            client.srem(held, *lost)
        log.warning(
            "reconnected to the broker at %s after %.1fs; consuming again%s",
            self.where,
            time.monotonic() - down_since,
            f" (gave back {given} message(s) taken as the connection broke)" if given else "",
        )
        self._down_since = None

    # -- other ------------------------------------------------------------------------------
    def purge(self, queues: Sequence[str]) -> int:
        lists = self.keys.queue_lists(list(queues))

        def purge_all() -> int:
            with self.client().pipeline(transaction=True) as pipe:
                for key in lists:
                    pipe.llen(key)
                for key in lists:
                    pipe.delete(key)
                results = pipe.execute()
            return int(sum(results[: len(lists)]))

        return int(self._with_retries(purge_all, "purge"))

    def close(self) -> None:
        """Stop threads, send pending acks, give held messages back to the front of their queues."""
        self._consuming = False
        if self._maintenance is not None:
            self._maintenance.stop()
        try:
            if self._acks:
                self._flush_acks()
            consumed = self._on_message is not None
            if consumed:
                # unregistered first: a waiter's take still queued in Redis takes nothing now
                self.client().srem(self.keys.consumers, self.consumer_id)
            for tag, message in list(self.held.items()):
                self.give_back(tag, message.raw, message.source, front=True, redelivered=True)
            self.held.clear()
            if consumed:
                client, held = self.client(), self.keys.held(self.consumer_id)
                # taken by a waiter but never handed on (it arrived as the worker stopped)
                for tag in client.smembers(held):
                    restore(client, self.keys, text(tag))
                client.delete(self.keys.heartbeat(self.consumer_id), held)
        except ERRORS as exc:
            log.warning(
                "broker at %s unreachable while closing (%s); the other workers will "
                "give back what this one held",
                self.where,
                exc,
            )
        finally:
            self._waits.close()
            self._fail_over()


def flag_redelivered(raw: str) -> str:
    """Mark an envelope as delivered before, where kombu marks it (Celery reads either)."""
    try:
        payload = json.loads(raw)
        payload.setdefault("headers", {})["redelivered"] = True
        payload.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
        return json.dumps(payload)
    except (ValueError, TypeError, AttributeError):
        return raw
