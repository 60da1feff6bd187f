"""The solo pool passes the pool contract: one slot, which it cannot resize or recycle."""

from __future__ import annotations

import pytest

from kernel.testing.contracts import PoolContract


class TestSoloPool(PoolContract):
    concurrency = 1
    resizable = False  # its one slot is the consumer's thread

    @pytest.fixture
    def pool_name(self) -> str:
        return "solo"
