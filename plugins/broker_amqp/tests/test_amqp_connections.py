"""Connecting, failing over, heartbeats, wake-ups, and what a lost connection does to messages."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kernel_broker_amqp import AmqpBroker
from kombu.connection import Connection

from kernel import App
from kernel.plugin import BrokerUnreachable, Outgoing

UNREACHABLE = "amqp://guest:secret@127.0.0.1:1//"


def _app(url: str, **settings: Any) -> App:
    return App("conn", broker=url, backend=f"memory://{uuid.uuid4().hex}", **settings)


def _send(broker: Any, queue: str, n: int = 1, first: int = 0) -> None:
    for i in range(first, first + n):
        broker.publish(
            [
                Outgoing(
                    b"{}",
                    queue,
                    "",
                    {"id": str(i)},
                    {"delivery_mode": 2},
                    "application/json",
                    "utf-8",
                    [queue],
                )
            ]
        )


def _amqp(app: App) -> AmqpBroker:
    broker = app.broker
    assert isinstance(broker, AmqpBroker)
    return broker


def _acking(got: list[Any]) -> Callable[[Any], None]:
    def on_message(message: Any) -> None:
        got.append(message)
        message.ack()

    return on_message


def _poll_until(broker: Any, done: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        broker.poll(0.1)
    return done()


def test_connect_to_a_closed_port_fails_quickly_in_one_line() -> None:
    app = App(broker="amqp://guest:guest@127.0.0.1:1//")
    began = time.monotonic()
    with pytest.raises(BrokerUnreachable) as info:
        app.broker.connect()
    assert time.monotonic() - began < app.conf.broker_connection_timeout
    message = str(info.value)
    assert "127.0.0.1:1" in message and "\n" not in message
    assert "guest:****@" in message


def test_worker_against_an_unreachable_broker_exits_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "unreachable_app.py").write_text(
        f"from kernel import App\napp = App('unreachable', broker={UNREACHABLE!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "kernel", "start", "-A", "unreachable_app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "secret" not in output
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "127.0.0.1:1" in errors[0], done.stderr


def test_failover_skips_a_closed_port(amqp_url: str, new_queue: Callable[[], str]) -> None:
    queue = new_queue()
    app = _app(f"amqp://guest:guest@127.0.0.1:1//;{amqp_url}")
    broker = _amqp(app)
    broker.connect()
    _send(broker, queue, 2)
    got: list[Any] = []
    broker.consume([queue], _acking(got), 10)
    assert _poll_until(broker, lambda: len(got) == 2)
    app.close()


def test_reconnect_fails_over_to_the_next_url(
    proxy: Any, amqp_url: str, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    queue = new_queue()
    app = _app(f"{proxy.url};{amqp_url}")
    broker = _amqp(app)
    got: list[Any] = []
    broker.consume([queue], _acking(got), 10)
    assert getattr(broker._session, "url", None) == proxy.url  # the first URL is preferred
    proxy.close()
    assert _poll_until(broker, lambda: getattr(broker._session, "url", None) == amqp_url)
    _send(broker, queue, 1)
    assert _poll_until(broker, lambda: len(got) == 1)
    assert "127.0.0.1:5672" in caplog.text and "reconnected" in caplog.text
    app.close()


def test_deliveries_of_a_lost_connection_turn_invalid_and_come_back(
    proxy: Any, amqp_url: str, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    queue = new_queue()
    sender = _app(amqp_url).broker
    _send(sender, queue, 2)
    app = _app(proxy.url)
    broker = _amqp(app)
    got: list[Any] = []
    broker.consume([queue], got.append, 10)
    assert _poll_until(broker, lambda: len(got) == 2)
    assert all(m.valid for m in got)

    proxy.close()
    broker.poll(0.5)  # notices the loss; must not raise
    assert not any(m.valid for m in got)
    got[0].ack()  # no-op, no error
    got[1].reject(requeue=True)

    # while it waits to reconnect, a wake-up still cuts a poll short
    threading.Timer(0.2, broker.wakeup).start()
    began = time.monotonic()
    broker.poll(5)
    assert time.monotonic() - began < 2

    proxy.open()
    assert _poll_until(broker, lambda: len(got) == 4)  # the server requeued both
    assert all(m.valid for m in got[2:])
    assert all(m.delivery_info["redelivered"] for m in got[2:])
    for message in got[2:]:
        message.ack()
    messages = [r.getMessage() for r in caplog.records if r.name == "kernel.broker.amqp"]
    assert any("lost the connection" in m and f"127.0.0.1:{proxy.port}" in m for m in messages)
    assert any("reconnected" in m for m in messages)
    assert not any("guest:guest@" in m for m in messages)
    app.close()
    sender.close()


def test_a_consumer_the_server_cancels_consumes_again(
    amqp_url: str, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    queue = new_queue()
    app = _app(amqp_url)
    broker = _amqp(app)
    got: list[Any] = []
    broker.consume([queue], _acking(got), 10)
    with Connection(amqp_url) as conn:
        conn.channel().queue_delete(queue)  # RabbitMQ cancels its consumers
    _poll_until(broker, lambda: "reconnected" in caplog.text, timeout=5)
    _send(_amqp(_app(amqp_url)), queue, 1)  # the queue was declared again
    assert _poll_until(broker, lambda: len(got) == 1)
    assert "cancelled the consumer" in caplog.text
    app.close()


def test_without_connection_retry_a_loss_is_an_error(
    proxy: Any, new_queue: Callable[[], str]
) -> None:
    app = _app(proxy.url, broker_connection_retry=False)
    broker = _amqp(app)
    broker.consume([new_queue()], lambda m: m.ack(), 10)
    proxy.close()
    with pytest.raises(BrokerUnreachable, match=f"127.0.0.1:{proxy.port}"):
        for _ in range(20):
            broker.poll(0.1)
    app.close()


def test_reconnecting_gives_up_after_max_retries(proxy: Any, new_queue: Callable[[], str]) -> None:
    app = _app(
        proxy.url,
        broker_connection_max_retries=3,
        broker_transport_options={"interval_start": 0, "interval_step": 0.05, "interval_max": 0.1},
    )
    broker = _amqp(app)
    broker.consume([new_queue()], lambda m: m.ack(), 10)
    proxy.close()
    with pytest.raises(BrokerUnreachable, match=r"gave up reconnecting .* after 3 attempt"):
        for _ in range(50):
            broker.poll(0.1)
    app.close()


def test_heartbeats_keep_an_idle_consumer_connected(
    amqp_url: str, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kernel.broker.amqp")
    app = _app(amqp_url, broker_transport_options={"heartbeat": 1})
    broker = _amqp(app)
    broker.consume([new_queue()], lambda m: m.ack(), 10)
    session = broker._session
    assert session is not None and session.conn.connection.heartbeat == 1
    began = time.monotonic()
    while time.monotonic() - began < 4:  # RabbitMQ closes after two silent intervals
        broker.poll(1.0)
    assert broker._session is session and session.alive
    assert "lost the connection" not in caplog.text
    app.close()


def test_acks_and_rejects_in_any_order_settle_exactly_those_messages(
    amqp_url: str, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    # acks go out as one multiple ack where they can: none may settle a message still held
    # (or one rejected), and the server must accept every frame (a bad tag closes the channel)
    queue = new_queue()
    sender = _app(amqp_url).broker
    _send(sender, queue, 60)
    app = _app(amqp_url)
    broker = _amqp(app)
    got: list[Any] = []
    broker.consume([queue], got.append, 100)
    assert _poll_until(broker, lambda: len(got) == 60)
    broker.cancel_consuming()  # what is requeued must reach the checker below
    # held: never settled while this connection lives (a gap, and the newest); the rest
    # settled nearly in order, neighbours swapped, so that runs of acks meet rejects
    held = {25, *range(50, 60)}
    order = [i for pair in zip(range(1, 50, 2), range(0, 50, 2), strict=True) for i in pair]
    requeued: set[str] = set()
    for step, index in enumerate(i for i in order if i not in held):
        message = got[index]
        if index % 7 == 0:
            message.reject(requeue=True)
            requeued.add(message.headers["id"])
        elif index % 5 == 0:
            message.reject()
        else:
            message.ack()
        if step % 4 == 3:
            broker.poll(0.01)  # a flush partway
    broker.poll(0.2)
    assert broker._session is not None and broker._session.alive
    again: list[Any] = []
    checker = _amqp(_app(amqp_url))
    checker.consume([queue], _acking(again), 100)
    assert _poll_until(checker, lambda: len(again) == len(requeued))
    checker.poll(0.5)  # nothing else may come
    assert {m.headers["id"] for m in again} == requeued
    app.close()  # the held ones go back now
    assert _poll_until(checker, lambda: len(again) == len(requeued) + len(held))
    assert {m.headers["id"] for m in again[len(requeued) :]} == {str(i) for i in held}
    assert not [r for r in caplog.records if r.name == "kernel.broker.amqp"]
    checker.close()
    sender.close()
