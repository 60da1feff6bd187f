"""Messages and result metas, checked against messages a real Celery 5.7 sent and stored."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kombu import serialization

from kernel.wire.exceptions import InvalidTaskError, NotRegistered, TaskRevokedError
from kernel.wire.meta import exception_from_meta, exception_to_meta, result_meta
from kernel.wire.protocol import (
    decode_payload,
    decode_request,
    encode_body,
    parse_time,
    task_message,
    utcnow,
)

CAPTURES = Path(__file__).parent / "data" / "celery_captures"
JSON = serialization.prepare_accept_content(["json"])


def capture(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / f"{name}.json").read_text())


def decode_captured(name: str) -> Any:
    envelope = capture(name)
    body = base64.b64decode(envelope["body"])
    payload = decode_payload(
        body, envelope["content-type"], envelope["content-encoding"], envelope["headers"], JSON
    )
    return decode_request(
        envelope["headers"],
        envelope["properties"],
        envelope["properties"]["delivery_info"],
        payload,
    )


def test_decodes_a_celery_task_message() -> None:
    request = decode_captured("redis_task_simple")
    assert (request.name, request.id, request.args, request.kwargs) == (
        "proj.add",
        "aaaaaaaa-0000-0000-0000-000000000001",
        [2, 3],
        {},
    )
    assert request.root_id == request.id and request.parent_id is None
    assert request.reply_to == "fe7b9d8b-02fe-3505-b651-595a400e389c"
    assert request.delivery_info["routing_key"] == "celery"
    assert request.protocol == 2 and request.timelimit == (None, None)


def test_decodes_a_chain_step_with_its_remaining_chain() -> None:
    request = decode_captured("redis_task_chain_step")
    assert request.args == [3, 3]
    assert request.parent_id == request.root_id == "9ecb88aa-c9b9-4441-bc49-a9b486e492a3"
    assert request.chain is not None and request.chain[-1]["task"] == "proj.add"


def test_decodes_a_retry_republish_with_its_eta() -> None:
    request = decode_captured("redis_task_retry_republish")
    assert request.retries == 1 and request.parent_id == request.id
    assert request.eta == datetime(2026, 11, 23, 3, 50, 40, 993267, tzinfo=timezone.utc)


def test_builds_the_header_set_celery_sends_in_its_order() -> None:
    celery = capture("redis_task_simple")
    headers, properties, body = task_message(
        task_id="aaaaaaaa-0000-0000-0000-000000000001",
        name="proj.add",
        args=(2, 3),
        origin="gen5686@vm",
        reply_to="fe7b9d8b-02fe-3505-b651-595a400e389c",
        priority=0,
    )
    assert list(headers) == list(celery["headers"])
    assert headers == celery["headers"]
    assert body == celery["body_decoded"]
    sent = {
        k: v
        for k, v in celery["properties"].items()
        if k not in ("delivery_info", "body_encoding", "delivery_tag")
    }
    assert properties == sent


def test_eta_expires_and_time_limits_go_where_celery_puts_them() -> None:
    eta = datetime(2026, 11, 23, 3, 50, 12, 676819, tzinfo=timezone.utc)
    expires = utcnow() + timedelta(seconds=60)
    headers, properties, _ = task_message(
        task_id="x", name="t", origin="o", eta=eta, expires=expires, timelimit=(30, 20)
    )
    assert headers["eta"] == "2026-11-23T03:50:12.676819+00:00"
    assert headers["timelimit"] == [30, 20]  # hard first, then soft
    assert 58_000 <= int(properties["expiration"]) <= 60_000


def test_protocol_1_messages_are_accepted() -> None:
    body = {
        "task": "proj.add",
        "id": "1111",
        "args": [2, 3],
        "kwargs": {"z": 1},
        "group": None,
        "taskset": "g1",
        "retries": 0,
        "eta": "2026-11-23T03:54:43.341482+00:00",
        "expires": None,
        "utc": True,
        "callbacks": None,
        "errbacks": None,
        "timelimit": [30, 20],
        "chord": None,
    }
    request = decode_request({}, {}, {}, body)
    assert (request.protocol, request.name, request.args, request.kwargs) == (
        1,
        "proj.add",
        [2, 3],
        {"z": 1},
    )
    assert request.group == "g1" and request.timelimit == (30, 20)
    assert request.eta is not None and request.eta.tzinfo is not None


def test_hybrid_message_takes_arguments_from_the_body() -> None:
    request = decode_request({"task": "t", "id": "1"}, {}, {}, {"args": [1], "kwargs": {"a": 2}})
    assert (request.args, request.kwargs) == ([1], {"a": 2})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([[2, 3], {}], "malformed body: expected [args, kwargs, embed]"),
        ("just text", "malformed body"),
        ([{"a": 1}, {}, {}], "args must be a list"),
        ([[], [], {}], "kwargs must be an object"),
        ([[], {}, 5], "embed must be an object"),
    ],
)
def test_malformed_bodies_are_refused_naming_why(payload: Any, reason: str) -> None:
    with pytest.raises(InvalidTaskError, match=reason.replace("[", r"\[")):
        decode_request({"task": "t", "id": "1"}, {}, {}, payload)


def test_three_elements_with_empty_or_null_embed_are_fine() -> None:
    assert decode_request({"task": "t", "id": "1"}, {}, {}, [[], {}, {}]).callbacks is None
    assert decode_request({"task": "t", "id": "1"}, {}, {}, [[], {}, None]).chain is None


def test_unparseable_eta_is_refused() -> None:
    with pytest.raises(InvalidTaskError, match="unparseable eta 'tomorrow-ish'"):
        decode_request({"task": "t", "id": "1", "eta": "tomorrow-ish"}, {}, {}, [[], {}, {}])


def test_naive_times_are_utc() -> None:
    parsed = parse_time("2026-11-23T03:56:39", "eta")
    assert parsed == datetime(2026, 11, 23, 3, 56, 39, tzinfo=timezone.utc)


def test_content_types_outside_accept_are_refused() -> None:
    import pickle

    with pytest.raises(
        InvalidTaskError, match="content type 'application/x-python-serialize' is not accepted"
    ):
        decode_payload(
            pickle.dumps([[], {}, {}]), "application/x-python-serialize", "binary", {}, JSON
        )


def test_undecodable_body_is_refused() -> None:
    with pytest.raises(InvalidTaskError, match="undecodable"):
        decode_payload(b"{not json", "application/json", "utf-8", {}, JSON)


def test_kombu_type_tags_round_trip_in_arguments() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    _, _, body = task_message(task_id="1", name="t", origin="o", args=[when, Decimal("1.5")])
    raw, content_type, encoding, _ = encode_body(body, "json")
    assert b'"__type__": "datetime"' in raw
    request = decode_request(
        {"task": "t", "id": "1"}, {}, {}, decode_payload(raw, content_type, encoding, {}, JSON)
    )
    assert request.args == [when, Decimal("1.5")]


def test_compressed_bodies_round_trip() -> None:
    _, _, body = task_message(task_id="1", name="t", origin="o", args=["x" * 1000])
    raw, content_type, encoding, extra = encode_body(body, "json", "zlib")
    assert extra == {"compression": "application/x-gzip"} and len(raw) < 200
    assert decode_payload(raw, content_type, encoding, extra, JSON)[0] == ["x" * 1000]


# -- result metas ---------------------------------------------------------------------------


def test_success_meta_has_celerys_fields_in_celerys_order() -> None:
    celery = capture("result_meta_SUCCESS")["value"]
    ours = result_meta(celery["task_id"], "SUCCESS", 5)
    assert list(ours) == list(celery)
    assert {k: v for k, v in ours.items() if k != "date_done"} == {
        k: v for k, v in celery.items() if k != "date_done"
    }


def test_failure_meta_written_by_celery_reads_back_as_the_exception() -> None:
    celery = capture("result_meta_FAILURE")["value"]
    exc = exception_from_meta(celery["result"])
    assert type(exc) is ValueError and str(exc) == "bad value 7"
    assert exception_to_meta(exc) == celery["result"]


def test_our_exceptions_travel_under_celerys_names() -> None:
    revoked = capture("result_meta_REVOKED")["value"]["result"]
    exc = exception_from_meta(revoked)
    assert isinstance(exc, TaskRevokedError)
    assert exception_to_meta(TaskRevokedError("revoked")) == revoked
    assert exception_to_meta(NotRegistered("x"))["exc_module"] == "celery.exceptions"


def test_unknown_exception_classes_are_stood_in_for_by_name() -> None:
    exc = exception_from_meta(
        {"exc_type": "GoneError", "exc_message": ["gone"], "exc_module": "nonexistent.module"}
    )
    assert type(exc).__name__ == "GoneError" and type(exc).__module__ == "nonexistent.module"
    assert str(exc) == "gone"


def test_a_stored_name_that_is_not_an_exception_is_never_called() -> None:
    exc = exception_from_meta(
        {"exc_type": "system", "exc_message": ["echo pwned"], "exc_module": "os"}
    )
    assert isinstance(exc, Exception) and type(exc).__name__ == "system"
