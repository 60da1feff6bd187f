"""Celery's declarations: queues a Celery client or worker shares with ours, and priorities."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kernel_broker_amqp import AmqpBroker
from kernel_broker_amqp.urls import handles, host_port
from kombu.connection import Connection

from kernel import App


def _app(url: str, queue: str, **settings: Any) -> App:
    return App("decl", broker=url, backend=f"memory://{uuid.uuid4().hex}", **settings)


def _drain(app: App, queue: str, want: int, prefetch: int = 100) -> list[Any]:
    broker = app.open_broker(app.pm)
    got: list[Any] = []

    def on_message(message: Any) -> None:
        got.append(message)
        message.ack()

    broker.consume([queue], on_message, prefetch)
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        broker.poll(0.2)
    broker.close()
    return got


def test_urls_this_plugin_takes() -> None:
    assert handles("amqp://guest@h//") and handles("pyamqp://h") and handles("AMQPS://h")
    assert handles("amqp://h1:5672//;amqp://h2:5672//")
    assert not handles("redis://h") and not handles("amqp://h1;redis://h2") and not handles("")
    assert host_port("amqp://u:p@rabbit//") == "rabbit:5672"
    assert host_port("amqps://rabbit") == "rabbit:5671"


@pytest.mark.parametrize("priority", [None, 9])
@pytest.mark.parametrize("celery_first", [True, False])
def test_celery_declares_the_same_queue_and_exchange(
    amqp_url: str, new_queue: Callable[[], str], celery_first: bool, priority: int | None
) -> None:
    from celery import Celery

    queue = new_queue()
    ours = _app(amqp_url, queue, task_default_queue=queue, task_queue_max_priority=priority)
    celery = Celery("decl", broker=amqp_url)
    celery.conf.task_default_queue = queue
    celery.conf.task_queue_max_priority = priority

    def celery_side() -> None:
        # what a Celery worker declares before consuming, then what a client sends
        with celery.connection_for_write() as conn:
            celery.amqp.queues[queue](conn.default_channel).declare()
        celery.send_task("decl.task", args=[1])

    def our_side() -> None:
        ours.send_task("decl.task", args=[2])

    try:
        for side in (celery_side, our_side) if celery_first else (our_side, celery_side):
            side()  # a declaration that differs fails here with PRECONDITION_FAILED
        got = _drain(ours, queue, 2)
        assert sorted(m.headers["task"] for m in got) == ["decl.task", "decl.task"]
        assert {m.delivery_info["exchange"] for m in got} == {""}
        assert {m.delivery_info["routing_key"] for m in got} == {queue}
    finally:
        ours.close()
        celery.close()


def test_queue_arguments_match_celerys_settings(
    amqp_url: str, new_queue: Callable[[], str]
) -> None:
    plain, ranked = new_queue(), new_queue()
    unranked: Any = AmqpBroker(amqp_url).queue(plain)
    assert unranked.queue_arguments in (None, {}) and unranked.max_priority is None
    app = _app(amqp_url, ranked, task_queue_max_priority=9)
    broker = app.broker
    assert isinstance(broker, AmqpBroker)
    queue: Any = broker.queue(ranked)
    assert queue.max_priority == 9  # declared as x-max-priority (the Celery test checks it)
    assert queue.durable and queue.exchange.type == "direct" and queue.routing_key == ranked
    assert queue.exchange.name == ranked
    app.close()


def test_higher_priority_is_delivered_first_from_a_backlog(
    amqp_url: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    app = _app(amqp_url, queue, task_default_queue=queue, task_queue_max_priority=9)
    try:
        for n in range(10):
            app.send_task("prio.task", args=[n], priority=1)
        for n in range(10, 13):
            app.send_task("prio.task", args=[n], priority=9)
        got = _drain(app, queue, 13, prefetch=1)
        assert [m.properties["priority"] for m in got[:3]] == [9, 9, 9]
        assert len(got) == 13
    finally:
        app.close()


def test_messages_are_persistent_with_celerys_properties(
    amqp_url: str, new_queue: Callable[[], str]
) -> None:
    queue = new_queue()
    app = _app(amqp_url, queue, task_default_queue=queue)
    try:
        result = app.send_task("props.task", args=[1], expires=60)
        (message,) = _drain(app, queue, 1)
        props = message.properties
        assert props["delivery_mode"] == 2 and props["correlation_id"] == result.id
        assert 0 < int(props["expiration"]) <= 60000  # RabbitMQ drops it once expired
        with Connection(amqp_url) as conn:
            assert conn.channel().queue_declare(queue, passive=True).message_count == 0
    finally:
        app.close()
