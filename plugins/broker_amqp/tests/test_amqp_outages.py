"""Outages: a worker keeps consuming after its connection drops; publishing retries, then fails."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kombu.connection import Connection

from kernel import App, Worker
from kernel.plugin import BrokerUnreachable, Outgoing
from kernel.testing.helpers import wait_until


def _worker_app(url: str, queue: str, backend: str) -> tuple[App, list[int]]:
    app = App("outage", broker=url, backend=backend, task_default_queue=queue)
    runs: list[int] = []

    @app.task(name="outage.work", acks_late=True)
    def work(n: int) -> int:
        runs.append(n)
        time.sleep(0.1)
        return n

    return app, runs


def _send(client: App, numbers: range) -> list[Any]:
    return [client.send_task("outage.work", args=[n]) for n in numbers]


def _results(results: list[Any]) -> list[Any]:
    return [r.get(timeout=30) for r in results]


def _amqp_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kernel.broker.amqp"]


def test_worker_consumes_again_after_the_proxy_drops_everything(
    proxy: Any, amqp_url: str, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    queue, backend = new_queue(), f"memory://{uuid.uuid4().hex}"
    app, runs = _worker_app(proxy.url, queue, backend)
    # the client sends around the proxy: a message cut off in the proxy before reaching the
    # server would be lost to the test, not to the worker (AMQP publishes are unconfirmed)
    client = App("client", broker=amqp_url, backend=backend, task_default_queue=queue)
    worker = Worker(app=app, settings={"worker_pool": "threads", "worker_concurrency": 4})
    worker.start()
    try:
        results = _send(client, range(40))
        assert wait_until(lambda: len(runs) >= 4, timeout=10)
        proxy.close()  # tasks are running and queued (prefetched) right now
        time.sleep(2)
        proxy.open()
        assert _results(results) == list(range(40))  # none lost
        assert set(runs) >= set(range(40))  # duplicates allowed for the ones that were running
        assert _results(_send(client, range(100, 110))) == list(range(100, 110))  # consuming again
    finally:
        worker.stop()
        app.close()
        client.close()
    log = _amqp_log(caplog)
    assert any("lost the connection" in m and f"127.0.0.1:{proxy.port}" in m for m in log)
    assert any("reconnected" in m for m in log)


def test_worker_consumes_again_after_rabbitmqctl_close_all_connections(
    vhost: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    backend = f"memory://{uuid.uuid4().hex}"
    app, runs = _worker_app(vhost.url, "outage", backend)
    client = App("client", broker=vhost.url, backend=backend, task_default_queue="outage")
    worker = Worker(app=app, settings={"worker_pool": "threads", "worker_concurrency": 4})
    worker.start()
    try:
        results = _send(client, range(20))
        assert wait_until(lambda: len(runs) >= 4, timeout=10)
        vhost.close_all_connections("outage test")  # the client's connection goes too
        assert _results(results) == list(range(20))
        assert _results(_send(client, range(100, 105))) == list(range(100, 105))
    finally:
        worker.stop()
        app.close()
        client.close()
    log = _amqp_log(caplog)
    assert any("lost the connection" in m and "CONNECTION_FORCED" in m for m in log), log
    assert any("reconnected" in m for m in log)


def _publish(app: App, queue: str) -> None:
    message = Outgoing(
        b"{}", queue, "", {}, {"delivery_mode": 2}, "application/json", "utf-8", [queue]
    )
    app.broker.publish([message])


def _waiting(amqp_url: str, queue: str) -> int:
    with Connection(amqp_url) as conn:
        return int(conn.channel().queue_declare(queue, passive=True).message_count)


def test_publish_retries_until_the_broker_is_back(
    proxy: Any, amqp_url: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    policy = {"max_retries": 30, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}
    app = App("pub", broker=proxy.url, task_publish_retry_policy=policy)
    try:
        _publish(app, queue)
        assert wait_until(lambda: _waiting(amqp_url, queue) == 1, timeout=5)
        proxy.close()
        threading.Timer(1.0, proxy.open).start()
        began = time.monotonic()
        _publish(app, queue)  # the connection it had is dead; new ones are refused for 1 s
        assert 0.8 < time.monotonic() - began < 10
        assert wait_until(lambda: _waiting(amqp_url, queue) == 2, timeout=5)
    finally:
        app.close()


def test_publish_gives_up_naming_host_and_port(
    proxy: Any, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    queue = new_queue()
    policy = {"max_retries": 3, "interval_start": 0, "interval_step": 0.05, "interval_max": 0.1}
    app = App("pub", broker=proxy.url, task_publish_retry_policy=policy)
    try:
        _publish(app, queue)
        proxy.close()
        with pytest.raises(BrokerUnreachable) as info:
            _publish(app, queue)
        message = str(info.value)
        assert f"127.0.0.1:{proxy.port}" in message and "guest:****@" in message
        assert "\n" not in message
        retries = [r for r in caplog.records if r.name == "kernel.retry"]
        assert len(retries) == 3  # the policy's tries, then the error
    finally:
        app.close()


def test_publisher_confirms_are_a_transport_option(
    amqp_url: str, new_queue: Callable[[], str]
) -> None:
    # without confirms a publish returns before the server has the message (as in Celery);
    # with them each publish waits for the server's ack, so one cut in flight raises instead
    queue = new_queue()
    app = App("pub", broker=amqp_url, broker_transport_options={"confirm_publish": True})
    try:
        for _ in range(3):
            _publish(app, queue)
        assert _waiting(amqp_url, queue) == 3  # confirmed: already queued, no waiting needed
    finally:
        app.close()
