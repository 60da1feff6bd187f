"""The embedded broker passes the broker contract through the worker's own Broker API."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.testing.contracts import BrokerContract


class TestEmbeddedBroker(BrokerContract):
    @pytest.fixture
    def broker_url(self, tmp_path: Path) -> str:
        return f"embedded:///{tmp_path}/broker.db"
