"""Celery task messages (protocol 2; 1 on input too): building them, decoding them into Requests."""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs
from kombu import compression as kombu_compression
from kombu import serialization
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.utils import json as kombu_json

from .exceptions import InvalidTaskError

if TYPE_CHECKING:
    from .transport import Message

UTC = timezone.utc
REPR_MAX = 1024
JSON = "application/json"
# A message header our clients set when their result backend can announce results in batches:
# the channel on which the client waits. Celery ignores it; its clients never set it, so
# results of their tasks are announced one by one, as Celery's are.
NOTIFY_HEADER = "kernel_notify"


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """ISO-8601 with an explicit offset, as Celery sends eta/expires (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def parse_time(value: Any, field: str, naive_is_utc: bool = True) -> datetime | None:
    """An aware datetime from an ISO-8601 string (naive taken as UTC), or InvalidTaskError."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidTaskError(f"unparseable {field} {value!r}") from None
    else:
        raise InvalidTaskError(f"unparseable {field} {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC) if naive_is_utc else parsed.astimezone()
    return parsed


def safe_repr(value: Any, limit: int = REPR_MAX) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not stop a task from being sent
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.define(slots=True, kw_only=True, eq=False)
class Request:
    """One task invocation, as decoded from a message (also `task.request` while it runs).

    Its names are those of Celery's request context (`task.request`), so task code reads
    alike on both: `task` is the task's name, `properties` the message properties as received.
    `headers` holds every header of the message, where Celery's keeps only the custom ones
    (its own are fields here too): a superset, and no per-message filtering."""

    id: str | None = None
    name: str = ""
    args: list[Any] = attrs.Factory(list)
    kwargs: dict[str, Any] = attrs.Factory(dict)
    callbacks: Sequence[Mapping[str, Any]] | None = None
    errbacks: Sequence[Mapping[str, Any]] | None = None
    chain: Sequence[Mapping[str, Any]] | None = None
    chord: dict[str, Any] | None = None
    eta: datetime | None = None
    expires: datetime | None = None
    retries: int = 0
    timelimit: tuple[float | None, float | None] = (None, None)  # (hard, soft), as on the wire
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    shadow: str | None = None
    origin: str | None = None
    ignore_result: bool | None = None
    argsrepr: str = ""
    kwargsrepr: str = ""
    reply_to: str | None = None
    correlation_id: str | None = None
    priority: int | None = None
    delivery_info: dict[str, Any] = attrs.Factory(dict)
    headers: dict[str, Any] = attrs.Factory(dict)
    properties: dict[str, Any] = attrs.Factory(dict)
    stamps: dict[str, Any] = attrs.Factory(dict)
    stamped_headers: list[str] | None = None
    replaced_task_nesting: int = 0
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    protocol: int = 2
    hostname: str | None = None
    is_eager: bool = False
    called_directly: bool = False

    @property
    def redelivered(self) -> bool:
        return bool(self.delivery_info.get("redelivered") or self.headers.get("redelivered"))

    # Celery's other names for what the fields hold (read-only views, nothing more to pickle)
    @property
    def task(self) -> str:
        """The task's name, from the message's `task` header."""
        return self.name

    @property
    def taskset(self) -> str | None:
        """The group id under its old (protocol 1) name."""
        return self.group

    @property
    def time_limit(self) -> float | None:
        """The hard time limit the message asked for (seconds), or None."""
        return self.timelimit[0]

    @property
    def soft_time_limit(self) -> float | None:
        """The soft time limit the message asked for (seconds), or None."""
        return self.timelimit[1]

    def get(self, key: str, default: Any = None) -> Any:
        """`request.get("retries", 0)`, as on Celery's request context."""
        return getattr(self, key, default)

    def __reduce__(self) -> tuple[Any, tuple[tuple[Any, ...]]]:
        # a tuple of values, not a dict of names: a request is pickled for every task a prefork
        # child runs, and this halves its size and the parent's CPU for it
        return (_rebuild_request, (_request_values(self),))


_REQUEST_FIELDS = tuple(field.name for field in attrs.fields(Request))
_request_values = operator.attrgetter(*_REQUEST_FIELDS)
# each slot's own setter: calling it skips the attribute lookup `setattr` makes per field,
# which halves the time a prefork child takes to rebuild a request
_REQUEST_SETTERS = tuple(Request.__dict__[name].__set__ for name in _REQUEST_FIELDS)


def _rebuild_request(values: tuple[Any, ...]) -> Request:
    request = object.__new__(Request)
    for set_slot, value in zip(_REQUEST_SETTERS, values, strict=True):
        set_slot(request, value)
    return request


# -- building -------------------------------------------------------------------------------


def task_message(
    *,
    task_id: str,
    name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    origin: str,
    eta: datetime | None = None,
    expires: datetime | None = None,
    retries: int = 0,
    timelimit: tuple[float | None, float | None] = (None, None),
    root_id: str | None = None,
    parent_id: str | None = None,
    group: str | None = None,
    group_index: int | None = None,
    shadow: str | None = None,
    ignore_result: bool | None = False,
    callbacks: Sequence[Mapping[str, Any]] | None = None,
    errbacks: Sequence[Mapping[str, Any]] | None = None,
    chain: Sequence[Mapping[str, Any]] | None = None,
    chord: dict[str, Any] | None = None,
    reply_to: str | None = None,
    priority: int | None = None,
    stamps: Mapping[str, Any] | None = None,
    stamped_headers: list[str] | None = None,
    replaced_task_nesting: int = 0,
    extra_headers: Mapping[str, Any] | None = None,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
    delivery_mode: int = 2,
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """(headers, properties, body) of a protocol-2 message, with Celery's header set and order."""
    args = list(args)
    kwargs = dict(kwargs or {})
    headers: dict[str, Any] = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": shadow,
        "eta": format_time(eta) if eta is not None else None,
        "expires": format_time(expires) if expires is not None else None,
        "group": group,
        "group_index": group_index,
        "retries": retries,
        "timelimit": list(timelimit),
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": argsrepr if argsrepr is not None else safe_repr(tuple(args)),
        "kwargsrepr": kwargsrepr if kwargsrepr is not None else safe_repr(kwargs),
        "origin": origin,
        "ignore_result": ignore_result,
        "replaced_task_nesting": replaced_task_nesting,
        "stamped_headers": stamped_headers,
        "stamps": dict(stamps or {}),
    }
    if extra_headers:
        headers.update(extra_headers)
    properties: dict[str, Any] = {"correlation_id": task_id, "delivery_mode": delivery_mode}
    if reply_to:
        properties["reply_to"] = reply_to
    if priority is not None:
        properties["priority"] = priority
    if expires is not None:
        # Celery also sets the per-message TTL, which RabbitMQ enforces (in ms, as a string)
        remaining = max((expires - utcnow()).total_seconds(), 0.0)
        properties["expiration"] = str(int(remaining * 1000))
    embed = {"callbacks": callbacks, "errbacks": errbacks, "chain": chain, "chord": chord}
    return headers, properties, [args, kwargs, embed]


_JSON_ENCODER = kombu_json.JSONEncoder()  # kombu's output; made once, not once per message


def json_dumps(value: Any) -> bytes:
    """kombu's JSON (datetimes and other types tagged `__type__`), as UTF-8."""
    return _JSON_ENCODER.encode(value).encode("utf-8")


def encode_body(
    body: Any, serializer: str, compression: str | None = None
) -> tuple[bytes, str, str, dict[str, str]]:
    """Serialize (and compress) a body: (bytes, content_type, content_encoding, extra headers)."""
    if serializer == "json" and not compression:  # the common case, without the registry
        return json_dumps(body), JSON, "utf-8", {}
    content_type, content_encoding, data = serialization.dumps(body, serializer=serializer)
    raw = data.encode(content_encoding or "utf-8") if isinstance(data, str) else data
    if compression:
        raw, compressed_type = kombu_compression.compress(raw, compression)
        return raw, content_type, content_encoding, {"compression": compressed_type}
    return raw, content_type, content_encoding, {}


# -- decoding -------------------------------------------------------------------------------


def json_loads(body: bytes | str) -> Any:
    """kombu's JSON (datetimes and other types tagged `__type__`), read by the C decoder alone
    when nothing in the text can be such a tag, as in most messages."""
    text = bytes(body).decode("utf-8") if not isinstance(body, str) else body
    if "__type__" in text or "\\u" in text:  # a tag, or an escape that could spell one
        return kombu_json.loads(text)
    return json.loads(text)


def decode_payload(
    body: bytes | str,
    content_type: str | None,
    content_encoding: str | None,
    headers: Mapping[str, Any],
    accept: set[str] | None,
) -> Any:
    """Decompress and deserialize a body, refusing content types outside `accept`."""
    try:
        if headers.get("compression"):
            body = kombu_compression.decompress(body, headers["compression"])
        elif content_type == JSON and (accept is None or JSON in accept):
            return json_loads(body)  # the common case, without the registry's detour
        return serialization.loads(body, content_type, content_encoding, accept=accept)
    except ContentDisallowed:
        raise InvalidTaskError(f"content type {content_type!r} is not accepted") from None
    except DecodeError as exc:
        raise InvalidTaskError(f"undecodable {content_type} body: {exc}") from None
    except Exception as exc:  # a codec may raise anything on garbage input
        raise InvalidTaskError(f"undecodable body: {type(exc).__name__}: {exc}") from None


def decode_message(message: Message, accept: set[str] | None) -> Request:
    """The Request a delivered message carries; InvalidTaskError says why it cannot be run."""
    headers = message.headers or {}
    payload = decode_payload(
        message.body, message.content_type, message.content_encoding, headers, accept
    )
    return decode_request(
        headers,
        message.properties or {},
        message.delivery_info or {},
        payload,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
    )


def decode_request(
    headers: Mapping[str, Any],
    properties: Mapping[str, Any],
    delivery_info: Mapping[str, Any],
    payload: Any,
    *,
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
) -> Request:
    """A Request from a protocol-2 message (task in the headers) or protocol 1 (in the body)."""
    if "task" in headers:
        request = _from_v2(headers, payload)
    else:
        request = _from_v1(payload)
    request.headers = dict(headers)
    request.properties = properties if isinstance(properties, dict) else dict(properties)
    request.reply_to = properties.get("reply_to")
    request.correlation_id = properties.get("correlation_id") or request.id
    request.priority = properties.get("priority")
    request.delivery_info = {
        "exchange": delivery_info.get("exchange"),
        "routing_key": delivery_info.get("routing_key"),
        "priority": properties.get("priority"),
        "redelivered": bool(delivery_info.get("redelivered") or headers.get("redelivered")),
    }
    request.content_type = content_type
    request.content_encoding = content_encoding
    return request


def _text(value: Any, what: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidTaskError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _timelimit(value: Any) -> tuple[float | None, float | None]:
    if value is None:
        return (None, None)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InvalidTaskError(f"timelimit must be [hard, soft], got {value!r}")
    hard, soft = value
    for part in (hard, soft):
        if part is not None and (isinstance(part, bool) or not isinstance(part, (int, float))):
            raise InvalidTaskError(f"timelimit must be [hard, soft], got {value!r}")
    return (hard, soft)


def _int(value: Any, what: str, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTaskError(f"{what} must be an integer, got {value!r}")
    return value


def _embed_list(embed: Mapping[str, Any], key: str) -> list[dict[str, Any]] | None:
    value = embed.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
        raise InvalidTaskError(f"embed {key} must be a list of signatures, got {value!r}")
    return list(value)


def _from_v2(headers: Mapping[str, Any], payload: Any) -> Request:
    name = _text(headers.get("task"), "task header", required=True)
    task_id = _text(headers.get("id"), "id header", required=True)
    if isinstance(payload, dict) and "args" in payload:  # hybrid: v2 headers, v1-style body
        args, kwargs, embed = payload.get("args", []), payload.get("kwargs", {}), payload
    else:
        if not isinstance(payload, (list, tuple)) or len(payload) != 3:
            raise InvalidTaskError(
                f"malformed body: expected [args, kwargs, embed], got {safe_repr(payload, 120)}"
            )
        args, kwargs, embed = payload
    if not isinstance(args, (list, tuple)):
        raise InvalidTaskError(f"malformed body: args must be a list, got {safe_repr(args, 120)}")
    if not isinstance(kwargs, dict):
        raise InvalidTaskError(
            f"malformed body: kwargs must be an object, got {safe_repr(kwargs, 120)}"
        )
    if embed is None:
        embed = {}
    if not isinstance(embed, dict):
        raise InvalidTaskError(
            f"malformed body: embed must be an object, got {safe_repr(embed, 120)}"
        )
    chord = embed.get("chord")
    if chord is not None and not isinstance(chord, dict):
        raise InvalidTaskError(f"embed chord must be a signature, got {chord!r}")
    stamps = headers.get("stamps") or {}
    return Request(
        id=task_id,
        name=name or "",
        args=list(args),
        kwargs=kwargs,
        callbacks=_embed_list(embed, "callbacks"),
        errbacks=_embed_list(embed, "errbacks"),
        chain=_embed_list(embed, "chain"),
        chord=chord,
        eta=parse_time(headers.get("eta"), "eta"),
        expires=parse_time(headers.get("expires"), "expires"),
        retries=_int(headers.get("retries"), "retries", 0) or 0,
        timelimit=_timelimit(headers.get("timelimit")),
        root_id=headers.get("root_id"),
        parent_id=headers.get("parent_id"),
        group=headers.get("group"),
        group_index=_int(headers.get("group_index"), "group_index", None),
        shadow=headers.get("shadow"),
        origin=headers.get("origin"),
        ignore_result=headers.get("ignore_result"),
        argsrepr=headers.get("argsrepr") or safe_repr(tuple(args)),
        kwargsrepr=headers.get("kwargsrepr") or safe_repr(kwargs),
        stamps=stamps if isinstance(stamps, dict) else {},
        stamped_headers=headers.get("stamped_headers"),
        replaced_task_nesting=_int(headers.get("replaced_task_nesting"), "replaced_task_nesting", 0)
        or 0,
        protocol=2,
    )


def _from_v1(payload: Any) -> Request:
    if not isinstance(payload, dict):
        raise InvalidTaskError(
            f"malformed message: no task header and the body is not a protocol-1 dict "
            f"({safe_repr(payload, 120)})"
        )
    name = _text(payload.get("task"), "task field", required=True)
    task_id = _text(payload.get("id"), "id field", required=True)
    args, kwargs = payload.get("args") or [], payload.get("kwargs") or {}
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise InvalidTaskError(
            "malformed protocol-1 body: args must be a list and kwargs an object"
        )
    utc = payload.get("utc", True) is not False
    group = payload.get("group") or payload.get("taskset")
    return Request(
        id=task_id,
        name=name or "",
        args=list(args),
        kwargs=kwargs,
        callbacks=_embed_list(payload, "callbacks"),
        errbacks=_embed_list(payload, "errbacks"),
        chord=payload.get("chord"),
        eta=parse_time(payload.get("eta"), "eta", naive_is_utc=utc),
        expires=parse_time(payload.get("expires"), "expires", naive_is_utc=utc),
        retries=_int(payload.get("retries"), "retries", 0) or 0,
        timelimit=_timelimit(payload.get("timelimit")),
        root_id=task_id,
        group=group,
        group_index=payload.get("group_index"),
        argsrepr=safe_repr(tuple(args)),
        kwargsrepr=safe_repr(kwargs),
        protocol=1,
    )


def new_id() -> str:
    """A random (version 4) UUID as text, as `str(uuid.uuid4())` makes it, in a third of the
    time: one is made for every message sent."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
