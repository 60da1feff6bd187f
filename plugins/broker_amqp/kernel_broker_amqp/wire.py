"""Two shortcuts past py-amqp on the consuming connection: batched acks and chunked reads."""

from __future__ import annotations

import struct
from typing import Any

from amqp.transport import TCPTransport

# AMQP 0-9-1 basic.ack (60, 80) and basic.reject (60, 90): a method frame on the channel whose
# payload is class, method, delivery tag (long long) and one octet of flags (multiple for ack,
# requeue for reject), then the frame-end octet.
BASIC = 60
ACK = 80
REJECT = 90
_SETTLE = struct.Struct(">BHIHHQBB")
_METHOD_FRAME, _PAYLOAD_SIZE, _FRAME_END = 1, 13, 0xCE
# A frame: type (octet), channel (short), payload size (long), payload, frame-end (octet).
_SIZE = struct.Struct(">I")
_HEADER, _OVERHEAD = 7, 8

# Bytes asked of the socket per recv. py-amqp asks for exactly the next field (header, payload,
# frame end: three syscalls per frame); larger reads serve many frames. Kept modest because
# py-amqp copies the unread rest of its buffer on every field it takes.
READ_CHUNK = 16384


def settle_frame(channel_id: int, method: int, delivery_tag: int, flag: bool) -> bytes:
    """The encoded basic.ack or basic.reject of one delivery."""
    return _SETTLE.pack(
        _METHOD_FRAME,
        channel_id,
        _PAYLOAD_SIZE,
        BASIC,
        method,
        delivery_tag,
        1 if flag else 0,
        _FRAME_END,
    )


def frame_complete(buffer: bytes) -> bool:
    """Whether `buffer` starts with a whole frame (so reading it will not wait on the socket)."""
    return len(buffer) >= _HEADER and len(buffer) >= _SIZE.unpack_from(buffer, 3)[0] + _OVERHEAD


def read_in_chunks(transport: Any) -> None:
    """Make a plain TCP transport of py-amqp receive up to READ_CHUNK bytes per recv; what
    goes beyond the field asked for stays in py-amqp's own read buffer. (TLS transports read
    whole records already.)"""
    if isinstance(transport, TCPTransport):
        recv = transport.sock.recv

        def recv_chunk(wanted: int) -> bytes:
            return recv(max(wanted, READ_CHUNK))  # type: ignore[no-any-return]

        transport._quick_recv = recv_chunk


class Ledger:
    """The deliveries of a channel not yet settled, and the acks and rejects made since the
    last flush. `take` encodes these in as few frames as it can: one basic.ack with
    `multiple` set covers every ack below the oldest delivery still unsettled (the server
    then does one settlement, not one per message); acks beyond that, and every reject, go
    one frame each."""

    def __init__(self, channel_id: int) -> None:
        self.channel_id = channel_id
        # unsettled delivery tags, oldest first (tags grow on a channel; dicts keep order)
        self._open: dict[int, None] = {}
        self._acks: list[int] = []
        self._rejects: list[tuple[int, bool]] = []

    def __len__(self) -> int:
        return len(self._acks) + len(self._rejects)

    def delivered(self, tag: int) -> None:
        self._open[tag] = None

    def ack(self, tag: int) -> None:
        self._open.pop(tag, None)
        self._acks.append(tag)

    def reject(self, tag: int, requeue: bool) -> None:
        self._open.pop(tag, None)
        self._rejects.append((tag, requeue))

    def clear(self) -> None:
        self._open.clear()
        self._acks.clear()
        self._rejects.clear()

    def take(self) -> bytes:
        """The frames of the acks and rejects made since the last take. Rejects come first:
        a multiple ack sent before one would settle it as acked."""
        channel = self.channel_id
        frames = [settle_frame(channel, REJECT, tag, requeue) for tag, requeue in self._rejects]
        self._rejects.clear()
        if self._acks:
            oldest = next(iter(self._open), None)
            below = self._acks if oldest is None else [t for t in self._acks if t < oldest]
            if below:
                frames.append(settle_frame(channel, ACK, max(below), True))
            if len(below) < len(self._acks):
                assert oldest is not None
                frames += [settle_frame(channel, ACK, t, False) for t in self._acks if t > oldest]
            self._acks.clear()
        return b"".join(frames)
