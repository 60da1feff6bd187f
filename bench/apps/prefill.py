"""Fill a queue with the drain test's messages: a first marker, N `bench.add`, a last marker.

Redis and RabbitMQ queues are filled with the very same messages for both systems: Celery's
own client code builds each protocol-2 message and kombu publishes it, as `delay()` would,
without paying Celery's per-call overhead N times per run. (The embedded broker is ours alone;
`client.py prefill` fills it with our client.)
"""

# kombu and celery ship without type annotations (nor explicit exports).
# mypy: disable-error-code="no-untyped-call, attr-defined"

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from kombu import Connection, Producer

# stats argument of the first and the last marker, per broker kind
STATS = {"redis": ("reset", "read"), "amqp": ("", ""), "embedded": ("", "")}


class _Sender:
    def __init__(self, app: Celery, producer: Producer, queue: str, ignore_result: bool) -> None:
        self.app = app
        self.producer = producer
        self.queue = queue
        self.ignore_result = ignore_result

    def send(self, name: str, args: list[Any]) -> None:
        task_id = str(uuid.uuid4())
        message = self.app.amqp.as_task_v2(
            task_id, name, args, {}, ignore_result=self.ignore_result, origin="bench@prefill"
        )
        self.producer.publish(
            message.body,
            exchange="",
            routing_key=self.queue,
            serializer="json",
            headers=message.headers,
            delivery_mode=2,
            retry=False,
            **message.properties,
        )


def declare_queue(conn: Connection, app: Celery, queue: str) -> None:
    """Declare the queue exactly as a Celery worker consuming it would."""
    app.amqp.queues[queue](conn.default_channel).declare()


def fill(broker: str, kind: str, queue: str, run: str, n: int, ignore_result: bool) -> None:
    app = Celery("bench-prefill", broker=broker, set_as_current=False)
    app.conf.task_default_queue = queue
    first, last = STATS[kind]
    with Connection(broker) as conn:
        declare_queue(conn, app, queue)
        producer = conn.Producer()
        sender = _Sender(app, producer, queue, ignore_result)
        # kombu's batch pipelines the LPUSHes on Redis (one client per message otherwise)
        with producer.batch():
            sender.send("bench.mark", [run, "first", first])
            for i in range(n):
                sender.send("bench.add", [i, i])
            sender.send("bench.mark", [run, "last", last])
