"""A started two-child prefork pool, terminated after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernel_pool_prefork import PreforkPool


@pytest.fixture
def pool() -> Iterator[PreforkPool]:
    pool = PreforkPool(2)
    pool.start()
    yield pool
    pool.terminate()
