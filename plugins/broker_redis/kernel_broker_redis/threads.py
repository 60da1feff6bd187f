"""The Redis broker's maintenance thread (heartbeats, leases, giving back what others abandoned)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import redis

from .keys import SEP, Keys

if TYPE_CHECKING:
    from .broker import RedisBroker

log = logging.getLogger("kernel.broker.redis")

ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
REAP_EVERY = 2.0


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def restore(client: redis.Redis, keys: Keys, tag: str, *, attempts: int = 5) -> bool:
    """Put an unacknowledged message back at the front of its queue, flagged redelivered.

    WATCH on the unacked hash makes this safe against another sweeper (ours or Celery's)
    restoring the same message at the same time; under load the watch may fail, so retry."""
    for _ in range(attempts):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.unacked)
                value = pipe.hget(keys.unacked, tag)
                if value is None:
                    pipe.unwatch()
                    client.zrem(keys.unacked_index, tag)
                    return False
                try:
                    payload, exchange, routing_key = json.loads(value)
                    payload["headers"]["redelivered"] = True
                    payload["properties"]["delivery_info"]["redelivered"] = True
                    priority = payload["properties"].get("priority") or 0
                except (ValueError, TypeError, KeyError, AttributeError):
                    log.error("cannot restore unreadable unacked entry %s; dropping it", tag)
                    payload, exchange, routing_key = None, "", ""
                queues = (
                    [routing_key] if not exchange else _bound(client, keys, exchange, routing_key)
                )
                pipe.multi()
                if payload is not None:
                    for queue in queues:
                        pipe.rpush(keys.queue(queue, priority), json.dumps(payload))
                pipe.hdel(keys.unacked, tag)
                pipe.zrem(keys.unacked_index, tag)
                pipe.execute()
                return payload is not None
            except redis.WatchError:
                continue
    return False


def _bound(client: redis.Redis, keys: Keys, exchange: str, routing_key: str) -> list[str]:
    """Queues bound to a named exchange with this routing key (kombu's binding set)."""
    found = []
    for member in client.smembers(keys.binding(exchange)):
        key, _, queue = text(member).split(SEP, 2)
        if key == routing_key:
            found.append(queue)
    return sorted(found)


class Maintenance(threading.Thread):
    """Heart-beats, renews the leases of held messages, and gives back what others abandoned.

    A thread of its own, so a task running in the consumer thread (the solo pool) or holding
    the GIL for a while does not make this worker look dead or let its leases lapse."""

    def __init__(self, broker: RedisBroker) -> None:
        super().__init__(name="kernel-redis-maintenance", daemon=True)
        self.broker = broker
        self._stop_event = threading.Event()
        vt = broker.visibility_timeout
        self.heartbeat_every = max(broker.worker_lost_timeout / 3, 0.5)
        self.renew_every = max(min(vt / 4, 60.0), 0.25)
        self.sweep_every = max(min(vt / 2, 60.0), 0.5)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(5)

    def run(self) -> None:
        now = time.monotonic()
        due = {"heartbeat": now, "renew": now + self.renew_every, "reap": now, "sweep": now}
        while not self._stop_event.is_set():
            now = time.monotonic()
            try:
                if now >= due["heartbeat"]:
                    self.heartbeat()
                    due["heartbeat"] = now + self.heartbeat_every
                if now >= due["renew"]:
                    self.renew()
                    due["renew"] = now + self.renew_every
                if now >= due["reap"]:
                    self.reap()
                    due["reap"] = now + REAP_EVERY
                if now >= due["sweep"]:
                    self.sweep()
                    due["sweep"] = now + self.sweep_every
            except ERRORS as exc:
                log.debug("maintenance could not reach the broker: %s", exc)
            except Exception:
                log.exception("broker maintenance failed")
            self._stop_event.wait(max(min(due.values()) - time.monotonic(), 0.05))

    def heartbeat(self) -> None:
        broker = self.broker
        with broker.client().pipeline(transaction=False) as pipe:
            pipe.set(broker.keys.heartbeat(broker.consumer_id), "1", ex=broker._heartbeat_ttl)
            pipe.sadd(broker.keys.consumers, broker.consumer_id)
            pipe.execute()

    def renew(self) -> None:
        """Push the delivery time of every held message to now: it is not abandoned."""
        broker = self.broker
        tags = tuple(broker.held)  # a snapshot: the consumer thread changes the dict
        if not tags:
            return
        now = time.time()
        broker.client().zadd(broker.keys.unacked_index, dict.fromkeys(tags, now), xx=True)

    def reap(self) -> None:
        """Give back the messages of our workers whose heartbeat has stopped."""
        broker = self.broker
        client, keys = broker.client(), broker.keys
        for member in client.smembers(keys.consumers):
            other = text(member)
            if other == broker.consumer_id or client.exists(keys.heartbeat(other)):
                continue
            # unregistered first: a take the silent worker left queued behind a blocking wait
            # takes nothing from now on, so the held set read next is complete
            client.srem(keys.consumers, other)
            tags = client.smembers(keys.held(other))
            given = sum(restore(client, keys, text(tag)) for tag in tags)
            client.delete(keys.held(other))
            if given:
                log.warning(
                    "worker %s stopped heart-beating: gave back %d message(s) it held", other, given
                )

    def sweep(self) -> None:
        """The visibility timeout, for holders that never heart-beat (Celery workers)."""
        broker = self.broker
        client, keys = broker.client(), broker.keys
        token = uuid.uuid4().hex
        # the same mutex kombu's sweep takes, so Celery workers and ours do not sweep at once
        if not client.set(keys.unacked_mutex, token, nx=True, px=300_000):
            return
        try:
            ceiling = time.time() - broker.visibility_timeout
            tags = client.zrangebyscore(keys.unacked_index, "-inf", ceiling, start=0, num=500)
            given = sum(restore(client, keys, text(tag)) for tag in tags)
            if given:
                log.warning(
                    "gave back %d message(s) unacknowledged for more than %ss",
                    given,
                    broker.visibility_timeout,
                )
        finally:
            if client.get(keys.unacked_mutex) == token.encode():
                client.delete(keys.unacked_mutex)
