"""What a broker and a result backend must do (Protocols), and the values they carry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from .urls import safe_url

if TYPE_CHECKING:
    from ..settings import Settings


class Configured(Protocol):
    """What a transport reads of the app that opens it: its settings (`app.conf`)."""

    @property
    def conf(self) -> Settings: ...


class QueueSpec(NamedTuple):
    """A queue to declare with more than the defaults (a bare name means a durable queue bound
    to a direct exchange of its name, as Celery declares task queues)."""

    name: str
    durable: bool = True
    auto_delete: bool = False
    exclusive: bool = False
    arguments: Mapping[str, Any] | None = None


class Outgoing(NamedTuple):
    """One serialized message ready to publish (what `publish` takes, as one value)."""

    body: bytes
    routing_key: str
    exchange: str
    headers: Mapping[str, Any]
    properties: Mapping[str, Any]
    content_type: str
    content_encoding: str
    declare: Sequence[str | QueueSpec] = ()


class Stored(NamedTuple):
    """One result to store: the task, its state, its encoded meta, and where to reply (rpc)."""

    task_id: str
    state: str
    data: bytes
    reply_to: str | None = None
    notify: str | None = None  # where the sending client waits for notice (NOTIFY_HEADER)


@runtime_checkable
class Message(Protocol):
    """A message handed to a consumer (kombu's Message has this shape, plus `valid`)."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    delivery_info: dict[str, Any]
    body: bytes
    content_type: str
    content_encoding: str
    delivery_tag: Any
    # False once the broker has taken the message back (the connection it came on was lost,
    # AMQP): it will be delivered again, so the consumer drops it instead of running it, and
    # acking or rejecting it does nothing. Always True where deliveries outlive a connection.
    valid: bool

    def ack(self) -> None: ...

    def reject(self, requeue: bool = False) -> None: ...


class Broker(Protocol):
    """A connection to a broker. `publish` may be called from any thread; the consuming methods
    (`consume`, `poll`, `cancel_consuming`, message acks) only from the one thread that consumes.

    What a broker may do beyond the minimum is declared here with its default in `BaseBroker`;
    the worker reads these members, it never probes for them."""

    url: str

    @property
    def wakes_up(self) -> bool:
        """Whether `wakeup()` makes a blocked `poll()` return. If not, the consumer polls in
        short slices while tasks run, so finished tasks are not kept waiting (default True)."""

    @property
    def location(self) -> str:
        """Where the broker is, for people (banners, messages): its URL without the password,
        and more where the URL alone does not say, as for a file named relative to the
        current directory (default: the URL)."""

    def consumers(self, queue: str) -> int | None:
        """How many live consumers `queue` has, or None if the broker cannot tell (the
        default): a client says so when a task it sends may wait for a worker that is not
        there. Asked outside any consuming thread."""

    def connect(self) -> None:
        """Check the broker is reachable; raise BrokerUnreachable naming the host and port."""

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send `messages` in order, declaring the queues each names first (once per
        connection). A single send is a batch of one; a broker sends a batch in as few round
        trips as it can (Redis: one pipeline; AMQP: a few socket writes)."""

    def consume(
        self,
        queues: Sequence[str | QueueSpec],
        on_message: Callable[[Message], None],
        prefetch: int,
    ) -> None:
        """Start delivering messages from `queues` to `on_message` during `poll()`."""

    def set_prefetch(self, prefetch: int) -> None:
        """Change how many unacknowledged messages may be held at once (0: no limit)."""

    def cancel_consuming(self) -> None:
        """Stop new deliveries; messages already delivered may still be acked or rejected."""

    def poll(self, timeout: float) -> None:
        """Deliver waiting messages, blocking up to `timeout` seconds (less if woken)."""

    def wakeup(self) -> None:
        """Make a `poll()` blocked in another thread return soon. Thread-safe."""

    def purge(self, queues: Sequence[str]) -> int:
        """Delete the waiting messages of `queues`; return how many."""

    def close(self) -> None:
        """Close every connection; unacknowledged messages go back to their queues."""


class BaseBroker:
    """Defaults for a broker's optional members (subclass it, or declare them yourself)."""

    url: str = ""
    wakes_up: bool = True

    @property
    def location(self) -> str:
        return safe_url(self.url)

    def consumers(self, queue: str) -> int | None:
        return None


class ResultBackend(Protocol):
    """Where task states and results are stored, as Celery's meta documents.

    Optional abilities are declared with their defaults in `kernel.plugin.BaseBackend`."""

    url: str

    # `store` works from any thread and in a forked pool child, concurrently with the worker's
    # own calls: the worker then has a task alone in it store its result where it ran
    stores_in_pool: bool

    def reply_queue(self, oid: str) -> QueueSpec | None:
        """The queue a client with id `oid` must declare before it sends a task, for a backend
        that answers with messages (rpc://; the broker drops a reply to a missing queue), or
        None. Asked once per client thread."""

    def notify_channel(self, oid: str) -> str | None:
        """Where the client with id `oid` waits to hear of results announced in batches
        (Redis), sent in each task's NOTIFY_HEADER; None when the backend has no such notice.
        Asked once per client thread."""

    def encode(self, meta: Mapping[str, Any]) -> bytes:
        """Serialize a meta document (done where the task ran, so a bad result fails that task)."""

    def store(self, items: Sequence[Stored]) -> None:
        """Store each result; never replace a stored SUCCESS."""

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The stored meta, or None if nothing is stored (the state is then PENDING)."""

    def forget(self, task_id: str) -> None:
        """Delete what is stored for the task."""

    def wait_for(
        self, task_id: str, *, deadline: float | None, interval: float
    ) -> dict[str, Any] | None:
        """Block until the task's meta is in a ready state and return it; None once `deadline`
        (a `time.monotonic()` value) passes. `interval` bounds the sleep between polls."""

    def close(self) -> None:
        """Release connections."""
