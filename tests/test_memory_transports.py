"""The test kit's in-memory broker and backend pass the same contracts as real ones."""

from __future__ import annotations

import uuid

import pytest

from kernel.testing.contracts import BackendContract, BrokerContract


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    def broker_url(self) -> str:
        return "memory://"


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend_url(self) -> str:
        return f"memory://{uuid.uuid4().hex}"
