"""The gevent pool passes the pool and time-limit contracts (every test of them when patched)."""

from __future__ import annotations

import pytest
from kernel_pool_gevent.patch import is_patched

from kernel.plugin import Pool
from kernel.testing.contracts import PoolContract, TimeLimitContract

# Unpatched, a task blocking in the standard library (threading.Event.wait, time.sleep) holds
# the only thread the pool's hub has: no other greenlet runs meanwhile and no Timeout fires.
# test_gevent_worker.py runs this module again in a gevent-patched pytest, where all run.
needs_patching = pytest.mark.skipif(
    not is_patched(),
    reason="a blocking task holds the unpatched hub; test_gevent_worker.py runs it patched",
)


class TestGeventPool(PoolContract):
    concurrency = 4

    @pytest.fixture
    def pool_name(self) -> str:
        return "gevent"

    @needs_patching
    def test_runs_up_to_concurrency_at_once(self, pool: Pool) -> None:
        super().test_runs_up_to_concurrency_at_once(pool)


@needs_patching
class TestGeventTimeLimits(TimeLimitContract):
    @pytest.fixture
    def pool_name(self) -> str:
        return "gevent"
