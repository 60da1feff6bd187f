"""The pool contracts for a green pool: every test where the process is patched.

Unpatched, only the tests a blocking task cannot spoil run."""

from __future__ import annotations

import time

import pytest

from kernel.plugin import Pool
from kernel.testing.contracts import PoolContract, TimeLimitContract

# Unpatched, a task blocking in the standard library (time.sleep, threading.Event.wait) holds
# the only thread the pool's hub has: no other green thread runs meanwhile and no timeout
# fires. The worker tests run these classes again in a patched pytest, where all run.
# (Patched, `time.sleep` is the green library's.)
PATCHED = time.sleep.__module__ != "time"
needs_patching = pytest.mark.skipif(
    not PATCHED, reason="a blocking task holds the unpatched hub; the worker tests run it patched"
)


class GreenPoolContract(PoolContract):
    concurrency = 4

    @pytest.fixture
    def pool_name(self, green_pool: str) -> str:
        return green_pool

    @needs_patching
    def test_runs_up_to_concurrency_at_once(self, pool: Pool) -> None:
        super().test_runs_up_to_concurrency_at_once(pool)

    @needs_patching
    def test_grow_adds_slots_that_run_at_once(self, pool: Pool) -> None:
        super().test_grow_adds_slots_that_run_at_once(pool)

    @needs_patching
    def test_shrink_lets_running_work_finish_then_runs_fewer(self, pool: Pool) -> None:
        super().test_shrink_lets_running_work_finish_then_runs_fewer(pool)

    @needs_patching
    def test_terminate_returns_promptly_while_a_job_blocks(self, pool: Pool) -> None:
        super().test_terminate_returns_promptly_while_a_job_blocks(pool)


@needs_patching
class GreenTimeLimitContract(TimeLimitContract):
    @pytest.fixture
    def pool_name(self, green_pool: str) -> str:
        return green_pool


def contract_tests() -> int:
    """How many tests the two classes hold: what a patched run of them must pass."""
    return sum(
        name.startswith("test_")
        for cls in (GreenPoolContract, GreenTimeLimitContract)
        for name in dir(cls)
    )


__all__ = ["GreenPoolContract", "GreenTimeLimitContract", "contract_tests", "needs_patching"]
