"""The base stays light to import, and every green plugin's adapter fulfils its contract."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kernel_pool_green.library import GreenLibrary

LIBRARIES = ["gevent", "eventlet"]


def test_the_base_loads_no_green_library() -> None:
    # the plugins import it before the standard library is patched (their step, at least)
    check = (
        "import sys, kernel_pool_green, kernel_pool_green.step, kernel_pool_green.pool\n"
        "import kernel_pool_green.testing.contracts\n"
        f"loaded = [name for name in {LIBRARIES!r} if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("name", LIBRARIES)
def test_each_plugin_step_builds_the_shared_pool_on_an_adapter(name: str) -> None:
    from kernel_pool_green.pool import GreenPool
    from kernel_pool_green.testing.pool_tests import green_step

    step = green_step(name)
    assert step.name == f"pool.{name}" and step.recycles is False
    pool = step.make_pool(3)
    assert isinstance(pool, GreenPool) and pool.concurrency == 3
    assert isinstance(pool.green, GreenLibrary) and pool.green.name == name
