"""Frames we encode and decode ourselves: our basic.publish frames are byte for byte those
py-amqp writes (so every reader sees what it would see from a kombu client), and deliveries
parsed off the socket read as py-amqp reads them."""

from __future__ import annotations

import enum
import struct
from collections import OrderedDict
from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from amqp import spec
from amqp.basic_message import Message
from amqp.exceptions import FrameSyntaxError, UnexpectedFrame
from amqp.method_framing import frame_writer
from amqp.serialization import decode_properties_basic, dumps
from kernel_broker_amqp import framing
from kernel_broker_amqp.broker import amqp_properties
from kernel_broker_amqp.reading import FrameReader, decode_properties

from kernel.plugin import Outgoing


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


EVERY_PROPERTY = {
    **CELERY_LIKE,
    "expiration": "60000",
    "message_id": "m1",
    "timestamp": 1_700_000_000,
    "type": "kind",
    "user_id": "guest",
    "app_id": "app",
    "cluster_id": "c",
}


@pytest.mark.parametrize(
    ("body", "props", "frame_max"),
    [
        (b'[[2, 2], {}, {"callbacks": null}]', CELERY_LIKE, 131072),
        (b"x" * 10_000, CELERY_LIKE, 4096),  # the body split over three frames
        (b"x" * 4088, CELERY_LIKE, 4096),  # exactly one full body frame
        (b"", {"content_type": "text/plain"}, 131072),  # no body frame at all
        (b"{}", EVERY_PROPERTY, 131072),
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


def _both(encoded: bytes) -> tuple[str, str]:
    """Ours and py-amqp's reading, as reprs: True and 1 are equal, but not the same value."""
    (flags,) = struct.unpack_from(">H", encoded)
    return repr(decode_properties(flags, encoded, 2)), repr(decode_properties_basic(encoded, 0)[0])


@pytest.mark.parametrize(
    "props",
    [
        CELERY_LIKE,
        EVERY_PROPERTY,
        {"content_type": "text/plain"},
        {"application_headers": EVERY_KIND, "priority": 9},
        {},
    ],
    ids=["celery-task", "every-property", "one", "every-kind", "none"],
)
def test_properties_read_as_py_amqp_reads_them(props: dict[str, Any]) -> None:
    flags, encoded = framing.properties(props)
    ours, theirs = _both(struct.pack(">H", flags) + encoded)
    assert ours == theirs


def test_table_kinds_other_clients_send_read_as_py_amqp_reads_them() -> None:
    # kinds py-amqp never writes but RabbitMQ, Java or .NET clients do; and bad UTF-8
    items = [
        b"\x01bb\xfe",  # short-short int
        b"\x01BB\xfe",  # short-short unsigned
        b"\x01UU\xff\xfe",  # short
        b"\x01uu\xff\xfe",  # unsigned short
        b"\x01ii\xff\xff\xff\xfe",  # unsigned long
        b"\x01ll" + struct.pack(">q", -1000),  # RabbitMQ's long long (x-delay)
        b"\x01ff" + struct.pack(">f", 0.5),
        b"\x01xx\x00\x00\x00\x02\xff\x00",  # byte array
        b"\x01TT" + struct.pack(">Q", 1_700_000_000),
        b"\x01DD\x02\x00\x00\x04\xd2",  # decimal 12.34
        b"\x01ss\xff\xfe",  # RabbitMQ's signed short
        b"\x01SS\x00\x00\x00\x02\xff\xfe",  # not UTF-8: kept as bytes
    ]
    table = b"".join(items)
    encoded = struct.pack(">HI", 0x2000, len(table)) + table
    ours, theirs = _both(encoded)
    assert ours == theirs and ours.count(", '") == len(items) - 1


def _deliver(channel: int, tag: int, consumer: str = "ctag") -> bytes:
    args = dumps("sLbss", (consumer, tag, tag % 2 == 0, "ex", "rk"))
    method = struct.pack(">HH", 60, 60) + args
    return struct.pack(">BHI", 1, channel, len(method)) + method + b"\xce"


def _delivery(channel: int, tag: int, body: bytes, frame_max: int = 131072) -> bytes:
    # the content frames of a publish are those of a delivery; swap its method frame
    published = framing.publish(channel, "ex", "rk", body, CELERY_LIKE, frame_max)
    (size,) = struct.unpack_from(">I", published, 3)
    return _deliver(channel, tag) + published[size + 8 :]


class _Connection:
    """What the reader touches of py-amqp's connection, recording the frames it hands on."""

    def __init__(self, data: bytes) -> None:
        self.transport = SimpleNamespace(_read_buffer=data, sock=SimpleNamespace(recv=None))
        self.bytes_recv = 0
        self.handed: list[tuple[int, int, bytes]] = []

    def on_inbound_frame(self, frame: tuple[int, int, bytes]) -> None:
        self.handed.append(frame)


def _reader(data: bytes, got: list[Any]) -> tuple[FrameReader, _Connection]:
    conn = _Connection(data)
    channel = SimpleNamespace(channel_id=1, callbacks={"ctag": None})
    return FrameReader(conn, channel, lambda *delivery: got.append(delivery)), conn


def test_deliveries_come_out_whole_and_other_frames_go_to_py_amqp() -> None:
    heartbeat = b"\x08\x00\x00\x00\x00\x00\x00\xce"
    other_channel = _delivery(2, 1, b"theirs")
    data = (
        _delivery(1, 1, b'{"a": 1}')
        + heartbeat
        + _delivery(1, 2, b"x" * 10_000, frame_max=4096)  # three body frames
        + other_channel
        + _delivery(1, 3, b"")
    )
    tail = _delivery(1, 4, b"next")
    got: list[Any] = []
    reader, conn = _reader(data + tail[:-3], got)
    reader.parse()
    assert [(body, info["delivery_tag"]) for body, _, info in got] == [
        (b'{"a": 1}', 1),
        (b"x" * 10_000, 2),
        (b"", 3),
    ]
    _, props, info = got[0]
    assert props == decode_properties_basic(_props(), 0)[0]
    assert info == {
        "consumer_tag": "ctag",
        "delivery_tag": 1,
        "redelivered": False,
        "exchange": "ex",
        "routing_key": "rk",
    }
    assert got[1][2]["redelivered"] is True
    # the heartbeat and channel 2's frames went to py-amqp, in order
    assert [(kind, channel) for kind, channel, _ in conn.handed] == [(8, 0), (1, 2), (2, 2), (3, 2)]
    # the unfinished frame waits in py-amqp's buffer; its rest completes the delivery, even
    # when all but the frame-end octet was there
    assert len(conn.transport._read_buffer) > 0
    conn.transport._read_buffer += tail[-3:-1]
    reader.parse()
    assert len(got) == 3
    conn.transport._read_buffer += tail[-1:]
    reader.parse()
    assert got[-1][0] == b"next" and conn.transport._read_buffer == b""


def _props() -> bytes:
    flags, encoded = framing.properties(CELERY_LIKE)
    return struct.pack(">H", flags) + encoded


def test_a_broken_frame_end_is_an_error() -> None:
    frame = bytearray(_delivery(1, 1, b"{}"))
    frame[len(_deliver(1, 1)) - 1] = 0x00
    reader, _ = _reader(bytes(frame), [])
    with pytest.raises(UnexpectedFrame, match="frame end"):
        reader.parse()
