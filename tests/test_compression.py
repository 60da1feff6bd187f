"""Compressed task messages run on every broker: the body is decompressed exactly once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kombu.connection import Connection

from kernel import App, Worker
from kernel.testing.helpers import require_server

SERVERS = {
    "redis": ("Redis", "127.0.0.1", 6379, "redis://127.0.0.1:6379/11"),
    "amqp": ("RabbitMQ", "127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672//"),
}


@pytest.mark.parametrize("compression", ["zlib", "bzip2"])
@pytest.mark.parametrize("broker", ["embedded", "redis", "amqp"])
def test_a_compressed_task_runs_and_returns(broker: str, compression: str, tmp_path: Path) -> None:
    if broker == "embedded":
        url = f"embedded:///{tmp_path}/broker.db"
    else:
        name, host, port, url = SERVERS[broker]
        require_server(name, host, port)
    queue = f"kt-compress-{uuid.uuid4().hex[:8]}"
    app = App(
        "compress",
        broker=url,
        backend=f"memory://{uuid.uuid4().hex}",
        task_default_queue=queue,
        task_compression=compression,
    )

    @app.task(name="compress.echo")
    def echo(text: str) -> str:
        return text

    worker = Worker(app=app, settings={"worker_pool": "solo"})
    worker.start()
    try:
        text = "compressible " * 5000
        assert echo.delay(text).get(timeout=10) == text
    finally:
        worker.stop()
        app.close()
        if broker == "amqp":  # the queue and its exchange are durable
            with Connection(url) as conn:
                conn.channel().queue_delete(queue)
                conn.channel().exchange_delete(queue)
