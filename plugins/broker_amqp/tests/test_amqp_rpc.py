"""rpc:// results over RabbitMQ: reply queues as Celery declares them, through a real worker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kernel_broker_amqp import AmqpBroker

from kernel import App, Worker
from kernel.testing.contracts import BackendContract

pytest.importorskip("kernel_backend_rpc")


def test_results_reach_the_sending_client_through_a_worker(
    amqp_url: str, new_queue: Callable[[], str]
) -> None:
    app = App("rpc", broker=amqp_url, backend="rpc://", task_default_queue=new_queue())

    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    worker = Worker(app=app, settings={"worker_pool": "threads", "worker_concurrency": 2})
    worker.start()
    try:
        results = [mul.delay(i, 2) for i in range(20)]
        assert [r.get(timeout=10) for r in results] == [2 * i for i in range(20)]
    finally:
        worker.stop()
        app.close()


def test_reply_queue_matches_celerys_declaration(amqp_url: str) -> None:
    from celery import Celery

    celery = Celery("rpc", broker=amqp_url, backend="rpc://")
    app = App("rpc", broker=amqp_url, backend="rpc://")
    try:
        oid = str(uuid.uuid4())
        backend: Any = app.backend  # the rpc:// backend knows its reply queues
        spec = backend.reply_queue(oid)
        broker = app.broker
        assert isinstance(broker, AmqpBroker)
        with celery.connection_for_write() as conn:
            binding = celery.backend.binding  # Celery's own reply queue, renamed to ours
            ours = broker.queue(spec)
            theirs = binding.__class__(
                oid,
                binding.exchange,
                oid,
                durable=binding.durable,
                auto_delete=binding.auto_delete,
                expires=binding.expires,
            )
            channel = conn.default_channel
            ours(channel).declare()
            theirs(channel).declare()  # PRECONDITION_FAILED if they differ
            channel.queue_delete(oid)
    finally:
        app.close()
        celery.close()


class TestRPCOverRabbitMQ(BackendContract):
    """rpc:// results over RabbitMQ pass the same contract as every other backend."""

    @pytest.fixture
    def backend_url(self) -> str:
        return "rpc://"

    @pytest.fixture
    def broker_url(self, amqp_url: str) -> str:
        return amqp_url
