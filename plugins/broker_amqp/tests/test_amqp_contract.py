"""The AMQP broker passes the broker contract against a real RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kernel.testing.contracts import BrokerContract


class TestAmqpBroker(BrokerContract):
    @pytest.fixture
    def broker_url(self, amqp_url: str) -> str:
        return amqp_url

    @pytest.fixture
    def queue(self, new_queue: Callable[[], str]) -> str:
        return new_queue()
