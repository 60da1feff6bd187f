"""Raw limits: what the broker and the client libraries allow, without any task system.

Each function returns messages (or calls) per second; the `ping` one returns milliseconds.
"""

# kombu and py-amqp ship without type annotations (nor explicit exports).
# mypy: disable-error-code="no-untyped-call, attr-defined"

from __future__ import annotations

import statistics
import time
from typing import Any

import amqp
import redis
from kombu import Connection, Consumer, Queue

BODY = {"task": "bench.add", "args": [1, 2], "kwargs": {}}
IDLE_TIMEOUT = 10.0  # a consumer that waits this long for a message gives up


def _fill_kombu(conn: Connection, queue: Queue, n: int) -> None:
    queue(conn.default_channel).declare()
    producer = conn.Producer()
    with producer.batch():  # pipelined on Redis; immediate on AMQP
        for _ in range(n):
            producer.publish(BODY, routing_key=queue.name, serializer="json", retry=False)


def kombu_consume_ack(url: str, queue_name: str, n: int, prefetch: int = 100) -> float:
    """A kombu Consumer acking each of N messages: first delivery to last ack."""
    queue = Queue(queue_name, routing_key=queue_name)
    with Connection(url) as conn:
        _fill_kombu(conn, queue, n)
        count, first, last = 0, 0.0, 0.0

        def on_message(body: Any, message: Any) -> None:
            nonlocal count, first, last
            if not count:
                first = time.perf_counter()
            message.ack()
            count += 1
            last = time.perf_counter()

        with Consumer(conn, [queue], callbacks=[on_message], accept=["json"]) as consumer:
            consumer.qos(prefetch_count=prefetch)
            while count < n:
                conn.drain_events(timeout=IDLE_TIMEOUT)
        queue(conn.default_channel).delete()
    return (n - 1) / (last - first)


def redis_rpop_batch(url: str, key: str, n: int, batch: int = 100) -> float:
    """redis-py `RPOP key 100` until N small strings are drained."""
    client = redis.Redis.from_url(url)
    _redis_push(client, key, n)
    drained = 0
    start = time.perf_counter()
    while drained < n:
        drained += len(client.rpop(key, batch) or ())
    elapsed = time.perf_counter() - start
    client.delete(key)
    return n / elapsed


def redis_lpush_pipelined(url: str, key: str, n: int) -> float:
    """redis-py LPUSH of N small strings, pipelined 1,000 at a time: the enqueue ceiling."""
    client = redis.Redis.from_url(url)
    start = time.perf_counter()
    _redis_push(client, key, n)
    elapsed = time.perf_counter() - start
    client.delete(key)
    return n / elapsed


def _redis_push(client: redis.Redis, key: str, n: int, chunk: int = 1000) -> None:
    payload = b'{"task": "bench.add", "args": [1, 2]}'
    for start in range(0, n, chunk):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(chunk, n - start)):
            pipe.lpush(key, payload)
        pipe.execute()


def redis_ping_ms(url: str, n: int) -> float:
    """Median PING round trip with redis-py: the floor under any Redis round trip."""
    client = redis.Redis.from_url(url)
    client.ping()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def amqp_consume_no_ack(url: str, queue_name: str, n: int) -> float:
    """py-amqp basic_consume with no_ack=True: first to last delivery of N messages."""
    with Connection(url) as conn:  # filled through kombu, as the other tests are
        _fill_kombu(conn, Queue(queue_name, routing_key=queue_name), n)
    count, first, last = 0, 0.0, 0.0

    def on_message(message: Any) -> None:
        nonlocal count, first, last
        if not count:
            first = time.perf_counter()
        count += 1
        last = time.perf_counter()

    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as conn:
        channel = conn.channel()
        tag = channel.basic_consume(queue_name, callback=on_message, no_ack=True)
        while count < n:
            conn.drain_events(timeout=IDLE_TIMEOUT)
        channel.basic_cancel(tag)  # deleting a consumed queue would cancel it from the server
        channel.queue_delete(queue_name)
    return (n - 1) / (last - first)
