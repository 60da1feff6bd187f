"""Publishing to a real RabbitMQ: what arrives is what kombu's Producer would have sent."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Producer

from kernel import App
from kernel.plugin import Outgoing


def _get(url: str, queue: str) -> Any:
    with Connection(url) as conn:
        message = conn.channel().basic_get(queue, no_ack=True)
    assert message is not None, f"nothing arrived on {queue}"
    return message


def _declare(url: str, queue: str) -> None:
    with Connection(url) as conn:
        Queue(queue, Exchange(queue, "direct"), routing_key=queue)(conn.channel()).declare()


def test_what_arrives_is_what_kombus_producer_sends(
    amqp_url: str, new_queue: Callable[[], str]
) -> None:
    ours, theirs = new_queue(), new_queue()
    app = App("pub", broker=amqp_url, backend=f"memory://{uuid.uuid4().hex}")
    try:
        # a body over several frames, non-ASCII text, and headers of every common kind
        args = ["ü" * 300_000, 2**40, 1.5, None, True]
        _, message = app.build_message(
            "pub.task", args, {"k": [1, 2]}, {"queue": ours, "expires": 60, "priority": 3}
        )
        app.broker.publish([message])
        _declare(amqp_url, theirs)
        props = dict(message.properties)
        with Connection(amqp_url) as conn:
            Producer(conn.channel()).publish(
                message.body,
                routing_key=theirs,
                exchange=theirs,
                headers=dict(message.headers),
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                expiration=int(props.pop("expiration")) / 1000,
                **props,
            )
        got, expected = _get(amqp_url, ours), _get(amqp_url, theirs)
        assert got.body == expected.body  # (py-amqp decodes bodies to text)
        assert json.loads(got.body)[0] == args
        assert got.headers == expected.headers and got.headers["argsrepr"]
        # the expiration is what remained of 60 s when each was sent: close, not equal
        waited = int(got.properties.pop("expiration")) - int(expected.properties.pop("expiration"))
        assert abs(waited) < 5000
        assert got.properties == expected.properties
        assert got.properties["priority"] == 3 and got.properties["delivery_mode"] == 2
    finally:
        app.close()


def test_a_refused_publish_is_reported_and_the_next_one_gets_through(
    amqp_url: str, new_queue: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    queue = new_queue()
    app = App("pub", broker=amqp_url, backend=f"memory://{uuid.uuid4().hex}")
    try:
        _, good = app.build_message("pub.task", [1], {}, {"queue": queue})
        missing = f"kt-missing-{uuid.uuid4().hex[:8]}"
        refused = Outgoing(
            good.body,
            "any",
            missing,  # no such exchange: the server closes the channel
            good.headers,
            good.properties,
            good.content_type,
            good.content_encoding,
            (),
        )
        app.broker.publish([refused])
        time.sleep(0.3)  # the server's channel.close arrives after the publish returned
        with caplog.at_level(logging.WARNING, logger="kernel.broker.amqp"):
            app.broker.publish([good])
        assert any(missing in r.getMessage() for r in caplog.records), caplog.text
        assert _get(amqp_url, queue).headers["id"] == good.headers["id"]
    finally:
        app.close()
