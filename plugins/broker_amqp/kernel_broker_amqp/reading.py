"""Deliveries read straight off the consuming socket; every other frame still goes to py-amqp."""

from __future__ import annotations

import logging
from collections.abc import Callable
from struct import Struct
from typing import Any

from amqp.exceptions import UnexpectedFrame
from amqp.serialization import _read_item, loads

log = logging.getLogger("kernel.broker.amqp")

_FRAME_HEAD = Struct(">BHI")
_HEAD_SIZE = _FRAME_HEAD.size
_FRAME_END = 0xCE
_METHOD, _HEADER, _BODY = 1, 2, 3
_DELIVER = b"\x00\x3c\x00\x3c"  # basic.deliver: class 60, method 60
_CONTENT = Struct(">HHQH")  # class, weight, body size, property flags
_LONG = Struct(">I")
_SIGNED = Struct(">i")
_LONGLONG = Struct(">Q")
_DOUBLE = Struct(">d")
_SIGNED_LONGLONG = Struct(">q")

# Bytes asked of the socket per recv: many deliveries each. (py-amqp's own reads, while it
# waits for a reply, take wire.READ_CHUNK: it copies its buffer for every field it takes.)
RECEIVE_SIZE = 65536

Properties = dict[str, Any]
DeliveryInfo = dict[str, Any]
OnDelivery = Callable[[bytes, Properties, DeliveryInfo], None]


def _text(raw: bytes) -> str | bytes:
    """py-amqp's reading of a string: UTF-8 (lone surrogates allowed), else the raw bytes."""
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw


def _table(buf: bytes, offset: int, end: int) -> dict[Any, Any]:
    """The items of a field table from `offset` to `end`, read as py-amqp reads them: the
    common kinds inline here (a call per item is most of the cost), the rest by `_value`.
    Text that is not UTF-8 raises UnicodeDecodeError; the caller then lets py-amqp read it."""
    out: dict[Any, Any] = {}
    unpack_long = _LONG.unpack_from
    while offset < end:
        size = buf[offset]
        start = offset + 1
        offset = start + size
        key = buf[start:offset].decode("utf-8", "surrogatepass")
        kind = buf[offset]
        if kind == 83:  # S: long string
            start = offset + 5
            offset = start + unpack_long(buf, offset + 1)[0]
            out[key] = buf[start:offset].decode("utf-8", "surrogatepass")
        elif kind == 86:  # V: void
            out[key] = None
            offset += 1
        else:
            out[key], offset = _value(buf, offset)
    return out


def _value(buf: bytes, offset: int) -> tuple[Any, int]:
    kind = buf[offset]
    if kind == 83:  # S: long string
        (size,) = _LONG.unpack_from(buf, offset + 1)
        start = offset + 5
        return buf[start : start + size].decode("utf-8", "surrogatepass"), start + size
    if kind == 86:  # V: void
        return None, offset + 1
    if kind == 73:  # I: signed long
        return _SIGNED.unpack_from(buf, offset + 1)[0], offset + 5
    if kind == 116:  # t: boolean
        return buf[offset + 1] != 0, offset + 2
    if kind == 70:  # F: table
        (size,) = _LONG.unpack_from(buf, offset + 1)
        start = offset + 5
        return _table(buf, start, start + size), start + size
    if kind == 65:  # A: array
        (size,) = _LONG.unpack_from(buf, offset + 1)
        start = end = offset + 5
        end += size
        items = []
        while start < end:
            item, start = _value(buf, start)
            items.append(item)
        return items, end
    if kind == 100:  # d: double
        return _DOUBLE.unpack_from(buf, offset + 1)[0], offset + 9
    if kind == 76 or kind == 108:  # L, l: long long (signed, as py-amqp reads both)
        return _SIGNED_LONGLONG.unpack_from(buf, offset + 1)[0], offset + 9
    return _read_item(buf, offset)  # type: ignore[no-any-return]


def _shortstr(buf: bytes, offset: int) -> tuple[str | bytes, int]:
    size = buf[offset]
    return _text(buf[offset + 1 : offset + 1 + size]), offset + 1 + size


# Basic properties in flag order (bit 15 first): name, and how each is read.
_SHORTSTR, _TABLE, _OCTET, _TIMESTAMP = range(4)
_PROPERTIES = (
    ("content_type", _SHORTSTR),
    ("content_encoding", _SHORTSTR),
    ("application_headers", _TABLE),
    ("delivery_mode", _OCTET),
    ("priority", _OCTET),
    ("correlation_id", _SHORTSTR),
    ("reply_to", _SHORTSTR),
    ("expiration", _SHORTSTR),
    ("message_id", _SHORTSTR),
    ("timestamp", _TIMESTAMP),
    ("type", _SHORTSTR),
    ("user_id", _SHORTSTR),
    ("app_id", _SHORTSTR),
    ("cluster_id", _SHORTSTR),
)


def decode_properties(flags: int, buf: bytes, offset: int) -> Properties:
    """The basic properties whose flags are set, as py-amqp's decoder returns them."""
    props: Properties = {}
    bit = 0x8000
    for name, kind in _PROPERTIES:
        if flags & bit:
            if kind == _SHORTSTR:
                props[name], offset = _shortstr(buf, offset)
            elif kind == _TABLE:
                (size,) = _LONG.unpack_from(buf, offset)
                try:
                    props[name] = _table(buf, offset + 4, offset + 4 + size)
                except UnicodeDecodeError:  # some text is not UTF-8: py-amqp keeps it as bytes
                    props[name] = loads("F", buf, offset)[0][0]
                offset += 4 + size
            elif kind == _OCTET:
                props[name] = buf[offset]
                offset += 1
            else:
                props[name] = _LONGLONG.unpack_from(buf, offset)[0]
                offset += 8
        bit >>= 1
    return props


class FrameReader:
    """Reads the consuming connection's socket in large chunks and parses the frames itself:
    basic.deliver on our channel, its content header and body frames become a delivery
    (`on_delivery(body, properties, delivery_info)`, the body as it came over the wire);
    anything else (heartbeats, replies, a close) goes to py-amqp's own frame handler.

    The unparsed rest always stays in py-amqp's read buffer, so py-amqp can take over the
    socket at any moment (a basic.qos waiting for its reply) and give it back."""

    def __init__(self, amqp_conn: Any, channel: Any, on_delivery: OnDelivery) -> None:
        self._conn = amqp_conn
        self._transport = amqp_conn.transport
        self._recv = self._transport.sock.recv
        self._channel_id: int = channel.channel_id
        self._channel = channel
        self._on_delivery = on_delivery
        # a delivery whose content is still arriving: info, properties, size, body chunks
        self._info: DeliveryInfo | None = None
        self._props: Properties | None = None
        self._size = 0
        self._chunks: list[bytes] = []
        self._received = 0

    def receive(self) -> None:
        """One recv (the socket is readable, or this waits up to its timeout), then every
        whole frame buffered is handled."""
        data = self._recv(RECEIVE_SIZE)
        if not data:
            raise OSError("Server unexpectedly closed connection")
        self._transport._read_buffer += data
        self.parse()

    def parse(self) -> None:
        """Handle every whole frame in the read buffer; a partial one waits there."""
        transport = self._transport
        buf: bytes = transport._read_buffer
        pos, end = 0, len(buf)
        unpack = _FRAME_HEAD.unpack_from
        ours = self._channel_id
        while end - pos >= _HEAD_SIZE:
            kind, channel, size = unpack(buf, pos)
            start = pos + _HEAD_SIZE
            stop = start + size
            if stop >= end:
                break  # the frame-end octet has not arrived yet
            if buf[stop] != _FRAME_END:
                transport._read_buffer = buf[pos:]
                raise UnexpectedFrame(f"bad frame end {buf[stop]:#x} on channel {channel}")
            if channel == ours and self._take(kind, buf, start, stop):
                pos = stop + 1
                continue
            # not a delivery of ours: py-amqp's handler, with its buffer in order first
            transport._read_buffer = buf[stop + 1 :]
            self._conn.on_inbound_frame((kind, channel, buf[start:stop]))
            buf = transport._read_buffer
            pos, end = 0, len(buf)
        transport._read_buffer = buf[pos:] if pos else buf
        self._conn.bytes_recv += 1  # traffic counts as a heartbeat in py-amqp's bookkeeping

    def _take(self, kind: int, buf: bytes, start: int, stop: int) -> bool:
        """Handle one frame of a delivery; False for a frame py-amqp should have."""
        if kind == _METHOD:
            if self._info is not None or buf[start : start + 4] != _DELIVER:
                return False
            tag, offset = _shortstr(buf, start + 4)
            (delivery_tag,) = _LONGLONG.unpack_from(buf, offset)
            redelivered = bool(buf[offset + 8] & 1)
            exchange, offset = _shortstr(buf, offset + 9)
            routing_key, _ = _shortstr(buf, offset)
            self._info = {
                "consumer_tag": tag,
                "delivery_tag": delivery_tag,
                "redelivered": redelivered,
                "exchange": exchange,
                "routing_key": routing_key,
            }
            return True
        if self._info is None:
            return False  # content of a method py-amqp handles (none expected here)
        if kind == _HEADER and self._props is None:
            _, _, self._size, flags = _CONTENT.unpack_from(buf, start)
            self._props = decode_properties(flags, buf, start + _CONTENT.size)
            self._chunks, self._received = [], 0
            if self._size == 0:
                self._complete(b"")
            return True
        if kind == _BODY and self._props is not None:
            chunk = buf[start:stop]
            self._received += len(chunk)
            if self._received >= self._size and not self._chunks:
                self._complete(chunk)
            else:
                self._chunks.append(chunk)
                if self._received >= self._size:
                    self._complete(b"".join(self._chunks))
            return True
        raise UnexpectedFrame(
            f"frame type {kind} in the middle of a delivery on channel {self._channel_id}"
        )

    def _complete(self, body: bytes) -> None:
        info, props = self._info, self._props
        assert info is not None and props is not None
        self._info = self._props = None
        self._chunks = []
        if info["consumer_tag"] not in self._channel.callbacks:
            # a consumer cancelled meanwhile: back to the queue, as py-amqp would do
            log.warning(
                "requeued delivery %s for unknown consumer %s",
                info["delivery_tag"],
                info["consumer_tag"],
            )
            self._channel.basic_reject(info["delivery_tag"], requeue=True)
            return
        self._on_delivery(body, props, info)
