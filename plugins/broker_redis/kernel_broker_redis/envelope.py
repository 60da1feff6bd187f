"""The JSON envelope kombu's Redis transport stores: what goes in lists and the unacked hash."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from kernel.plugin import new_id


def envelope(
    body: bytes,
    *,
    exchange: str,
    routing_key: str,
    headers: Mapping[str, Any],
    properties: Mapping[str, Any],
    content_type: str,
    content_encoding: str,
) -> str:
    """kombu's layout, byte for byte the way its Redis transport writes it (Celery reads it)."""
    props = dict(properties)
    props["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
    props.setdefault("priority", 0)
    props["body_encoding"] = "base64"
    props["delivery_tag"] = new_id()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": dict(headers),
            "properties": props,
        }
    )


def parse(raw: str | bytes) -> dict[str, Any]:
    return json.loads(raw)  # type: ignore[no-any-return]


def body_of(payload: Mapping[str, Any]) -> bytes:
    body = payload.get("body", "")
    if payload.get("properties", {}).get("body_encoding") == "base64":
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)
