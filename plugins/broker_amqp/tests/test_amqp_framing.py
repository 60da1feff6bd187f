"""Our basic.publish frames are byte for byte those py-amqp writes, so every reader (Celery,
kombu, the management UI) sees exactly what it would see from a kombu client."""

from __future__ import annotations

import enum
from collections import OrderedDict
from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from amqp import spec
from amqp.basic_message import Message
from amqp.exceptions import FrameSyntaxError
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from kernel_broker_amqp import framing
from kernel_broker_amqp.broker import amqp_properties

from kernel.roles import Outgoing


class Level(enum.IntEnum):
    HIGH = 7


# every kind a header can hold, and the edges of each
EVERY_KIND: dict[str, Any] = {
    "text": "héllo ✓",
    "empty": "",
    "raw": b"\x00\xffbytes",
    "yes": True,
    "no": False,
    "none": None,
    "small": 5,
    "negative": -3,
    "int32 max": 2147483647,
    "int32 min": -2147483648,  # py-amqp sends this one as a long long
    "big": 2**40,
    "enum": Level.HIGH,
    "float": 1.5,
    "decimal": Decimal("-12.345"),
    "when": datetime(2026, 11, 23, 12, 30, 5, tzinfo=timezone.utc),
    "table": {"inner": [1, "two", None], "deeper": {"x": 1.0}},
    "ordered": OrderedDict(a=1),
    "list": [None, None],
    "tuple": ("a", 2, True),
    "stamps": {},
}


def test_tables_encode_as_py_amqp_encodes_them() -> None:
    assert framing.table(EVERY_KIND) == dumps("F", [EVERY_KIND])
    assert framing.table({}) == dumps("F", [{}])


def test_an_unsupported_value_names_its_key_and_type() -> None:
    with pytest.raises(FrameSyntaxError, match=r"object.*key 'odd'"):
        framing.table({"fine": 1, "odd": object()})
    with pytest.raises(FrameSyntaxError, match="AMQP array"):
        framing.table({"list": [1, {2}]})
    with pytest.raises(FrameSyntaxError, match="at most 255"):
        framing.table({"k" * 256: 1})


def _py_amqp_frames(
    channel: int, exchange: str, key: str, body: bytes, props: dict[str, Any], frame_max: int
) -> bytes:
    """What py-amqp's own frame writer puts on the socket for this publish."""
    written: list[bytes] = []
    connection = SimpleNamespace(frame_max=frame_max, bytes_sent=0)
    transport = SimpleNamespace(write=lambda data: written.append(bytes(data)))
    write = frame_writer(connection, transport)
    args = dumps("Bssbb", (0, exchange, key, False, False))
    write(1, channel, spec.Basic.Publish, args, Message(body, **props))
    return b"".join(written)


CELERY_LIKE = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "application_headers": {
        "lang": "py",
        "task": "tasks.add",
        "id": "5f0c6a4e-7d3f-4b9a-8f7e-1c2d3e4f5a6b",
        "shadow": None,
        "eta": None,
        "retries": 0,
        "timelimit": [None, None],
        "ignore_result": False,
        "stamps": {},
    },
    "delivery_mode": 2,
    "priority": 0,
    "correlation_id": "5f0c6a4e-7d3f-4b9a-8f7e-1c2d3e4f5a6b",
    "reply_to": "b5f2c2a0-2a8e-3e3c-9a55-0d1f3a4b5c6d",
}


@pytest.mark.parametrize(
    ("body", "props", "frame_max"),
    [
        (b'[[2, 2], {}, {"callbacks": null}]', CELERY_LIKE, 131072),
        (b"x" * 10_000, CELERY_LIKE, 4096),  # the body split over three frames
        (b"x" * 4088, CELERY_LIKE, 4096),  # exactly one full body frame
        (b"", {"content_type": "text/plain"}, 131072),  # no body frame at all
        (
            b"{}",
            {
                **CELERY_LIKE,
                "expiration": "60000",
                "message_id": "m1",
                "timestamp": 1_700_000_000,
                "type": "kind",
                "user_id": "guest",
                "app_id": "app",
                "cluster_id": "c",
            },
            131072,
        ),
        (b"{}", {"priority": 9, "delivery_mode": 1, "correlation_id": None}, 131072),
    ],
    ids=["celery-task", "split-body", "full-frame", "empty", "every-property", "sparse"],
)
def test_publish_frames_are_py_amqps(body: bytes, props: dict[str, Any], frame_max: int) -> None:
    ours = framing.publish(3, "celery", "celery", body, props, frame_max)
    assert ours == _py_amqp_frames(3, "celery", "celery", body, props, frame_max)


def _outgoing(properties: dict[str, Any]) -> Outgoing:
    return Outgoing(b"{}", "q", "", {"task": "t"}, properties, "application/json", "utf-8", ())


def test_properties_are_set_as_kombus_producer_sets_them() -> None:
    # persistent and priority 0 unless told otherwise, like kombu's Producer.publish
    props = amqp_properties(_outgoing({"correlation_id": "id", "reply_to": "r"}))
    assert props["delivery_mode"] == 2 and props["priority"] == 0
    assert props["application_headers"] == {"task": "t"}
    assert props["content_type"] == "application/json" and props["content_encoding"] == "utf-8"
    assert amqp_properties(_outgoing({"delivery_mode": "transient"}))["delivery_mode"] == 1
    assert amqp_properties(_outgoing({"delivery_mode": 1, "priority": 5}))["priority"] == 5
    assert amqp_properties(_outgoing({"expiration": "1500"}))["expiration"] == "1500"
