"""Throughput of the embedded broker: publish rate, then consume+ack rate with 1 and 2 consumers.

Usage: python bench/embedded_transport.py [-n 20000] [--prefetch 100] [--db PATH]
"""

# kombu ships without type annotations.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import argparse
import multiprocessing
import pathlib
import sys
import tempfile
import time
from typing import Any

try:
    import kernel_broker_embedded  # noqa: F401
except ImportError:  # running from a checkout without the plugin installed
    sys.path.insert(
        0, str(pathlib.Path(__file__).resolve().parents[1] / "plugins" / "broker_embedded")
    )

from kernel_broker_embedded import Transport
from kombu import Connection, Queue

QUEUE = "bench"


def publish(url: str, n: int) -> float:
    """Publish ``n`` small messages; return seconds taken."""
    with Connection(url, transport=Transport) as conn:
        producer = conn.Producer()
        queue = Queue(QUEUE, routing_key=QUEUE)
        queue(conn.default_channel).declare()
        body = {"task": "bench.noop", "args": [1, 2], "kwargs": {}}
        start = time.perf_counter()
        for _ in range(n):
            producer.publish(body, routing_key=QUEUE, serializer="json")
        return time.perf_counter() - start


def consume(url: str, prefetch: int, idle: float = 0.5) -> tuple[int, float, float]:
    """Consume and ack until the queue stays empty for ``idle`` seconds.

    Returns (messages, wall-clock time of the first delivery, of the last ack).
    """
    count = 0
    first = last = 0.0

    def on_message(body: object, message: object) -> None:
        nonlocal count, first, last
        if not count:
            first = time.time()
        message.ack()  # type: ignore[attr-defined]
        last = time.time()
        count += 1

    with Connection(url, transport=Transport) as conn:
        with conn.Consumer(
            [Queue(QUEUE, routing_key=QUEUE)], callbacks=[on_message], accept=["json"]
        ) as c:
            c.qos(prefetch_count=prefetch)
            while True:
                try:
                    conn.drain_events(timeout=idle)
                except TimeoutError:
                    break
    return count, first, last


def _consumer_process(url: str, prefetch: int, start: Any, out: Any) -> None:
    with Connection(url, transport=Transport) as conn:
        conn.connect()  # import and open everything before the clock starts
    start.wait()
    out.put(consume(url, prefetch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages per run")
    parser.add_argument("--prefetch", type=int, default=100, help="consumer prefetch_count")
    parser.add_argument("--db", help="database file (default: a fresh temporary one)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    db = pathlib.Path(args.db) if args.db else pathlib.Path(tmp.name) / "bench.db"
    url = f"embedded:///{db.resolve()}"
    n = args.n

    seconds = publish(url, n)
    print(f"publish:                    {n / seconds:9.0f} msgs/s  ({n} in {seconds:.2f}s)")

    got, first, last = consume(url, args.prefetch)
    seconds = last - first
    assert got == n, f"consumed {got} of {n}"
    print(f"consume+ack, 1 consumer:    {n / seconds:9.0f} msgs/s  ({n} in {seconds:.2f}s)")

    publish(url, n)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_consumer_process, args=(url, args.prefetch, start, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let both import and connect
    start.set()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    # From the earlier first delivery to the later last ack, without the idle tail.
    total = sum(r[0] for r in results)
    assert total == n, f"consumed {total} of {n}"
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    print(
        f"consume+ack, 2 processes:   {n / elapsed:9.0f} msgs/s  "
        f"({' + '.join(str(r[0]) for r in results)} in {elapsed:.2f}s)"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
