"""The Redis broker plugin: `redis://`, `rediss://` and `sentinel://` URLs (`;` to fail over)."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl

from .broker import RedisBroker, RedisMessage
from .urls import SCHEMES

__all__ = ["RedisBroker", "RedisMessage"]


@hookimpl
def kernel_broker(url: str, app: Any) -> RedisBroker | None:
    scheme = url.split(";", 1)[0].strip().split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        return None
    conf = app.conf
    return RedisBroker(
        url,
        transport_options=conf.broker_transport_options,
        connect_timeout=conf.broker_connection_timeout,
        publish_retry=conf.task_publish_retry,
        publish_retry_policy=conf.task_publish_retry_policy,
    )
