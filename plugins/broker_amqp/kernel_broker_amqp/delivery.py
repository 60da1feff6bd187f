"""A delivered message tied to the connection that delivered it: invalid once that is lost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from kombu.exceptions import MessageStateError

if TYPE_CHECKING:
    from .session import Session


class Delivery:
    """A message as kombu's Message presents it, plus `valid`. An AMQP delivery tag means
    something only on its own channel: once that connection is lost the server has requeued
    the message itself, so acking or rejecting it is a no-op rather than an error (or, worse,
    an ack of another message). Acks and rejects go out with the session's next batch (at
    the next poll). The body is as it came over the wire (still compressed, if it was)."""

    __slots__ = (
        "_session",
        "_state",
        "body",
        "content_encoding",
        "content_type",
        "delivery_info",
        "delivery_tag",
        "headers",
        "properties",
    )

    def __init__(
        self,
        session: Session,
        body: bytes,
        properties: dict[str, Any],
        delivery_info: dict[str, Any],
    ) -> None:
        self._session = session
        self._state: str | None = None
        self.body = body
        self.properties = properties
        self.delivery_info = delivery_info
        self.headers: dict[str, Any] = properties.get("application_headers") or {}
        # None when the sender set none, as in kombu's Message; the consumer reads that
        self.content_type: str = cast(str, properties.get("content_type"))
        self.content_encoding: str = cast(str, properties.get("content_encoding"))
        self.delivery_tag: Any = delivery_info["delivery_tag"]

    @property
    def valid(self) -> bool:
        return self._session.alive

    @property
    def acknowledged(self) -> bool:
        return self._state is not None

    def ack(self) -> None:
        if self._claim("ACK"):
            self._session.ack(self.delivery_tag)

    def reject(self, requeue: bool = False) -> None:
        if self._claim("REQUEUED" if requeue else "REJECTED"):
            self._session.reject(self.delivery_tag, requeue)

    def requeue(self) -> None:
        self.reject(requeue=True)

    def _claim(self, state: str) -> bool:
        """Whether to settle now: not on a lost connection, and never twice."""
        if not self._session.alive:
            return False
        if self._state is not None:
            raise MessageStateError(f"message {self.delivery_tag} already {self._state}")
        self._state = state
        return True

    def __repr__(self) -> str:
        state = "valid" if self.valid else "stale"
        return f"<Delivery {self.delivery_tag} {state}>"
