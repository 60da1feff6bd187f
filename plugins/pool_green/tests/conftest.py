"""The shared green test classes' asserts report their values here too."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("kernel_pool_green.testing")
