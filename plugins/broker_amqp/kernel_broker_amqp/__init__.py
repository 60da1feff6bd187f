"""RabbitMQ broker plugin: `amqp://`, `amqps://`, `pyamqp://` URLs, `;`-separated to fail over."""

from __future__ import annotations

from typing import Any

from kernel import hookimpl

from .broker import AmqpBroker
from .options import AmqpOptions
from .urls import handles

__all__ = ["AmqpBroker", "AmqpOptions", "kernel_broker"]


@hookimpl
def kernel_broker(url: str, app: Any) -> AmqpBroker | None:
    if not handles(url):
        return None
    return AmqpBroker.for_app(url, app)
