"""basic.publish encoded here, byte for byte as py-amqp would, at a fraction of its cost."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from struct import Struct
from typing import Any

from amqp.exceptions import FrameSyntaxError

# A frame: type (octet), channel (short), payload size (long), payload, frame-end (octet).
_FRAME_HEAD = Struct(">BHI")
_FRAME_END = b"\xce"
_METHOD, _HEADER, _BODY = 1, 2, 3
_OVERHEAD = _FRAME_HEAD.size + 1
# basic.publish (60, 40): reserved short, exchange, routing key, then mandatory/immediate bits
_PUBLISH = Struct(">HHH")
_BASIC = 60
# content header: class, weight, body size, then property flags and the properties
_CONTENT = Struct(">HHQH")

_LONG = Struct(">I")
_OCTET = Struct(">B")
_TIMESTAMP = Struct(">Q")
_INT = Struct(">cI")
_SIGNED = Struct(">ci")
_LONGLONG = Struct(">cq")
_DOUBLE = Struct(">cd")
_DECIMAL = Struct(">cBi")
_STAMP = Struct(">cQ")
_BOOLS = (b"t\x00", b"t\x01")
_VOID = b"V"


def _shortstr(value: Any, what: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
    if len(raw) > 255:
        raise FrameSyntaxError(f"{what} is {len(raw)} bytes; AMQP allows at most 255")
    return _OCTET.pack(len(raw)) + raw


def _longstr(value: str | bytes) -> bytes:
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return _INT.pack(b"S", len(raw)) + raw


def _item(value: Any) -> bytes:
    """One field value with its type octet. The types chosen are py-amqp's, so a reader sees
    exactly what it would see from kombu: str and bytes as long strings, bool, double, int as
    a signed long (or long long beyond it), decimal, timestamp, table, array, void."""
    kind = type(value)
    if kind is str:
        raw: bytes = value.encode("utf-8", "surrogatepass")
        return _INT.pack(b"S", len(raw)) + raw
    if value is None:
        return _VOID
    encode = _ENCODERS.get(kind)
    if encode is None:
        for base, found in _ENCODERS.items():  # subclasses (IntEnum, OrderedDict, ...)
            if isinstance(value, base):
                encode = found
                break
        else:
            raise ValueError(value)
    return encode(value)


def _int(value: int) -> bytes:
    if -2147483647 <= value <= 2147483647:
        return _SIGNED.pack(b"I", value)
    return _LONGLONG.pack(b"L", value)


def _decimal(value: Decimal) -> bytes:
    sign, digits, exponent = value.as_tuple()
    number = 0
    for digit in digits:
        number = number * 10 + digit
    assert isinstance(exponent, int)
    return _DECIMAL.pack(b"D", -exponent, -number if sign else number)


def _array(values: Any) -> bytes:
    parts: list[bytes] = []
    for value in values:
        try:
            parts.append(_item(value))
        except ValueError:
            raise FrameSyntaxError(
                f"cannot put a {type(value).__name__} ({value!r}) in an AMQP array"
            ) from None
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


# Encoded table keys: a few dozen names recur in every message (Celery's headers).
_KEYS: dict[Any, bytes] = {}
MAX_KEYS = 1024


def _key(key: Any) -> bytes:
    encoded = _shortstr(key, f"table key {key!r}")
    if len(_KEYS) < MAX_KEYS and type(key) is str:
        _KEYS[key] = encoded
    return encoded


def table(values: Mapping[Any, Any]) -> bytes:
    """An AMQP field table, its length first."""
    parts: list[bytes] = []
    append = parts.append
    keys = _KEYS
    for key, value in values.items():
        append(keys.get(key) or _key(key))
        # the common kinds inline: a call per header is most of the cost of a table
        if type(value) is str:
            raw = value.encode("utf-8", "surrogatepass")
            append(_INT.pack(b"S", len(raw)))
            append(raw)
        elif value is None:
            append(_VOID)
        else:
            try:
                append(_item(value))
            except ValueError:
                raise FrameSyntaxError(
                    f"cannot put a {type(value).__name__} ({value!r}) in an AMQP table "
                    f"(key {key!r})"
                ) from None
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


# Checked in this order for subclasses: bool before int, as bool is an int.
_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    bytes: lambda value: _INT.pack(b"S", len(value)) + value,
    bool: lambda value: _BOOLS[value],
    float: lambda value: _DOUBLE.pack(b"d", value),
    int: _int,
    Decimal: _decimal,
    datetime: lambda value: _STAMP.pack(b"T", calendar.timegm(value.utctimetuple())),
    dict: lambda value: b"F" + table(value),
    list: lambda value: b"A" + _array(value),
    tuple: lambda value: b"A" + _array(value),
    str: _longstr,
}


def _shortstr_property(name: str) -> Callable[[Any], bytes]:
    return lambda value: _shortstr(value or "", f"property {name}")


# The basic properties in flag order (bit 15 first), each with its encoder.
PROPERTIES: tuple[tuple[str, Callable[[Any], bytes]], ...] = (
    ("content_type", _shortstr_property("content_type")),
    ("content_encoding", _shortstr_property("content_encoding")),
    ("application_headers", lambda value: table(value or {})),
    ("delivery_mode", _OCTET.pack),
    ("priority", _OCTET.pack),
    ("correlation_id", _shortstr_property("correlation_id")),
    ("reply_to", _shortstr_property("reply_to")),
    ("expiration", _shortstr_property("expiration")),
    ("message_id", _shortstr_property("message_id")),
    ("timestamp", lambda value: _TIMESTAMP.pack(int(value))),
    ("type", _shortstr_property("type")),
    ("user_id", _shortstr_property("user_id")),
    ("app_id", _shortstr_property("app_id")),
    ("cluster_id", _shortstr_property("cluster_id")),
)


def properties(values: Mapping[str, Any]) -> tuple[int, bytes]:
    """The property flags and the encoded properties; a property set to None is left out."""
    flags = 0
    parts = []
    bit = 0x8000
    for name, encode in PROPERTIES:
        value = values.get(name)
        if value is not None:
            flags |= bit
            parts.append(encode(value))
        bit >>= 1
    return flags, b"".join(parts)


@lru_cache(maxsize=256)
def _method_frame(channel: int, exchange: str, routing_key: str) -> bytes:
    """The basic.publish method frame: the same for every message to one destination."""
    method = (
        _PUBLISH.pack(_BASIC, 40, 0)
        + _shortstr(exchange, "exchange name")
        + _shortstr(routing_key, "routing key")
        + b"\x00"
    )
    return _FRAME_HEAD.pack(_METHOD, channel, len(method)) + method + _FRAME_END


def publish(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    props: Mapping[str, Any],
    frame_max: int,
) -> bytes:
    """The frames of one basic.publish (not mandatory, not immediate): method, content
    header, and the body in as many frames as `frame_max` requires."""
    flags, encoded = properties(props)
    header = _CONTENT.pack(_BASIC, 0, len(body), flags) + encoded
    parts = [
        _method_frame(channel, exchange, routing_key),
        _FRAME_HEAD.pack(_HEADER, channel, len(header)),
        header,
        _FRAME_END,
    ]
    chunk = frame_max - _OVERHEAD
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        parts += (_FRAME_HEAD.pack(_BODY, channel, len(piece)), piece, _FRAME_END)
    return b"".join(parts)
