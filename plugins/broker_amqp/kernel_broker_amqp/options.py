"""The settings this broker reads from an app, gathered once into one frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from kernel.plugin import App

DEFAULT_HEARTBEAT = 60.0
# Reconnect backoff: the first retry at once (a forced close usually means the server is up),
# then 0.5 s longer each time, at most 5 s, so a worker is back within 5 s of the server.
RECONNECT_POLICY = {"interval_start": 0.0, "interval_step": 0.5, "interval_max": 5.0}


@attrs.frozen
class AmqpOptions:
    """What the broker needs from the app's configuration."""

    transport_options: Mapping[str, Any] = attrs.field(factory=dict)
    connect_timeout: float = 4.0
    heartbeat: float = DEFAULT_HEARTBEAT
    connection_retry: bool = True
    connection_max_retries: int | None = 100
    publish_retry: bool = True
    publish_retry_policy: Mapping[str, Any] = attrs.field(factory=dict)
    max_priority: int | None = None
    ssl: Any = None

    @classmethod
    def from_app(cls, app: App) -> AmqpOptions:
        conf = app.conf
        transport = dict(conf.broker_transport_options or {})
        # broker_heartbeat when set explicitly, else the transport option, else the default
        heartbeat = conf.explicit().get("broker_heartbeat")
        if heartbeat is None:
            heartbeat = transport.get("heartbeat", conf.get("broker_heartbeat", DEFAULT_HEARTBEAT))
        priority = conf.get("task_queue_max_priority")
        return cls(
            transport_options=transport,
            connect_timeout=float(conf.broker_connection_timeout),
            heartbeat=float(heartbeat or 0),
            connection_retry=bool(conf.broker_connection_retry),
            connection_max_retries=conf.broker_connection_max_retries,
            publish_retry=bool(conf.task_publish_retry),
            publish_retry_policy=dict(conf.task_publish_retry_policy or {}),
            max_priority=int(priority) if priority is not None else None,
            ssl=conf.get("broker_use_ssl"),
        )

    def reconnect_policy(self) -> dict[str, Any]:
        """Backoff between reconnect attempts; `interval_*` transport options override it."""
        policy: dict[str, Any] = {
            key: float(self.transport_options.get(key, default))
            for key, default in RECONNECT_POLICY.items()
        }
        # None or 0: forever, as Celery reads broker_connection_max_retries
        policy["max_retries"] = self.connection_max_retries or None
        return policy

    def kombu_transport_options(self) -> dict[str, Any]:
        """Options handed to py-amqp's Connection (kombu passes them straight through)."""
        skip = {*RECONNECT_POLICY, "heartbeat"}
        return {k: v for k, v in self.transport_options.items() if k not in skip}
