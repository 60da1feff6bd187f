"""Names the pool these tests are for: the shared green tests read it from `green_pool`."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("kernel_pool_green.testing")


@pytest.fixture(scope="session")
def green_pool() -> str:
    return "gevent"
