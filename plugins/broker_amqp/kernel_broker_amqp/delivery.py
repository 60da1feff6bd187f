"""A delivered message tied to the connection that delivered it: invalid once that is lost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kombu.exceptions import MessageStateError

from .wire import ACK, REJECT

if TYPE_CHECKING:
    from .session import Session


class Delivery:
    """kombu's Message plus `valid`. An AMQP delivery tag means something only on its own
    channel: once that connection is lost the server has requeued the message itself, so
    acking or rejecting it is a no-op rather than an error (or, worse, an ack of another
    message). Acks and rejects go out with the session's next batch (at the next poll)."""

    __slots__ = (
        "_message",
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

    def __init__(self, message: Any, session: Session) -> None:
        self._message = message
        self._session = session
        self._state: str | None = None
        # copied once: the consumer reads these for every task
        self.body: bytes = message.body
        self.headers: dict[str, Any] = message.headers
        self.properties: dict[str, Any] = message.properties
        self.delivery_info: dict[str, Any] = message.delivery_info
        self.content_type: str = message.content_type
        self.content_encoding: str = message.content_encoding
        self.delivery_tag: Any = message.delivery_tag

    @property
    def valid(self) -> bool:
        return self._session.alive

    @property
    def acknowledged(self) -> bool:
        return self._state is not None

    def ack(self) -> None:
        self._settle("ACK", ACK, False)

    def reject(self, requeue: bool = False) -> None:
        self._settle("REQUEUED" if requeue else "REJECTED", REJECT, requeue)

    def requeue(self) -> None:
        self.reject(requeue=True)

    def _settle(self, state: str, method: int, flag: bool) -> None:
        if not self._session.alive:
            return
        if self._state is not None:
            raise MessageStateError(f"message {self.delivery_tag} already {self._state}")
        self._state = state
        self._session.settle(method, self.delivery_tag, flag)

    def __getattr__(self, name: str) -> Any:
        # anything else kombu's Message offers (payload, decode, ...)
        return getattr(self._message, name)

    def __repr__(self) -> str:
        state = "valid" if self.valid else "stale"
        return f"<Delivery {self.delivery_tag} {state}>"
