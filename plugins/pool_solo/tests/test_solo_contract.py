"""The solo pool passes the pool contract."""

from __future__ import annotations

import pytest

from kernel.testing.contracts import PoolContract


class TestSoloPool(PoolContract):
    concurrency = 1

    @pytest.fixture
    def pool_name(self) -> str:
        return "solo"
