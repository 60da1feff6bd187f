"""The pieces below the broker: ack frames, frame boundaries, wake-ups, URL naming."""

from __future__ import annotations

import struct
import threading
import time

from kernel_broker_amqp.urls import describe, split_urls
from kernel_broker_amqp.waking import Waker
from kernel_broker_amqp.wire import ACK, REJECT, Ledger, frame_complete, settle_frame


def test_settle_frames_are_basic_ack_and_reject_method_frames() -> None:
    frame = settle_frame(3, ACK, 2**40 + 5, False)
    kind, channel, size = struct.unpack_from(">BHI", frame)
    assert (kind, channel, size, len(frame)) == (1, 3, 13, 7 + 13 + 1)
    assert struct.unpack_from(">HHQB", frame, 7) == (60, 80, 2**40 + 5, 0)
    assert frame[-1] == 0xCE
    assert struct.unpack_from(">HHQB", settle_frame(1, REJECT, 9, True), 7) == (60, 90, 9, 1)


def test_frame_complete_needs_the_whole_frame() -> None:
    frame = settle_frame(1, ACK, 1, False)
    assert frame_complete(frame) and frame_complete(frame + frame[:3])
    assert not frame_complete(b"") and not frame_complete(frame[:6])
    assert not frame_complete(frame[:-1])


def test_a_burst_of_wakeups_is_one_and_none_is_lost() -> None:
    waker = Waker()
    try:
        for _ in range(1000):
            waker.wake()
        assert waker.wait(0)
        assert not waker.wait(0)  # consumed
        threading.Timer(0.1, waker.wake).start()
        began = time.monotonic()
        assert waker.wait(5)
        assert time.monotonic() - began < 2
        waker.wake()  # after clearing, a new wake-up must get through again
        assert waker.wait(0)
    finally:
        waker.close()
    waker.wake()  # a late wake-up after close is harmless
    assert waker.closed and not waker.wait(0.01)


def test_urls_are_named_with_masked_passwords_and_ports() -> None:
    assert split_urls(" amqp://a//; ;amqp://b// ") == ["amqp://a//", "amqp://b//"]
    assert (
        describe("amqp://user:pw@rabbit:5673/vh") == "amqp://user:****@rabbit:5673/vh (rabbit:5673)"
    )
    assert describe("amqps://rabbit//") == "amqps://rabbit// (rabbit:5671)"


def _frames(data: bytes) -> list[tuple[int, int, int]]:
    """(method, delivery tag, flag) of each settle frame in `data`."""
    size = len(settle_frame(1, ACK, 1, False))
    return [struct.unpack_from(">HQB", data, at + 9) for at in range(0, len(data), size)]


def test_acks_below_the_oldest_unsettled_delivery_are_one_multiple_ack() -> None:
    ledger = Ledger(1)
    for tag in range(1, 11):
        ledger.delivered(tag)
    for tag in (3, 1, 2, 5, 7):
        ledger.ack(tag)
    ledger.reject(6, True)
    # 4 is still out: 1-3 in one multiple ack; 5 and 7 alone; the reject before any ack
    assert _frames(ledger.take()) == [(REJECT, 6, 1), (ACK, 3, 1), (ACK, 5, 0), (ACK, 7, 0)]
    assert len(ledger) == 0 and ledger.take() == b""
    ledger.ack(4)
    ledger.ack(9)
    ledger.ack(8)
    # 1-8 are settled now (5-7 earlier); 10 is out
    assert _frames(ledger.take()) == [(ACK, 9, 1)]
    ledger.ack(10)
    assert _frames(ledger.take()) == [(ACK, 10, 1)]
