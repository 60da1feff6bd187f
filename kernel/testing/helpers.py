"""Small helpers for plugin tests: waiting for a condition, measuring a pool's parallelism."""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from ..engine.contracts import Pool


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def peak_concurrency(pool: Pool, jobs: int, timeout: float = 10.0) -> int:
    """Submit `jobs` functions that block together; return how many ran at once at the peak.

    Works for any pool: the counters live in shared memory (a forked pool child shares them)
    and the gate is polled with `time.sleep` (which green threads cooperate with). Waits until
    all `jobs` run or two seconds pass, releases them, and waits for every callback."""
    shared = multiprocessing.get_context("fork")
    running, peak, gate = shared.Value("i", 0), shared.Value("i", 0), shared.Value("b", 0)

    def hold(_: Any) -> None:
        with running.get_lock():
            running.value += 1
            peak.value = max(peak.value, running.value)
        deadline = time.monotonic() + timeout
        while not gate.value and time.monotonic() < deadline:
            time.sleep(0.01)
        with running.get_lock():
            running.value -= 1

    finished: list[Any] = []
    for _ in range(jobs):
        pool.apply(hold, None, finished.append, finished.append)
    wait_until(lambda: peak.value >= jobs, timeout=min(timeout, 2.0))
    gate.value = 1
    if not wait_until(lambda: len(finished) == jobs, timeout=timeout):
        raise AssertionError(f"only {len(finished)} of {jobs} jobs called back")
    return int(peak.value)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_server(name: str, host: str, port: int, timeout: float = 2.0) -> None:
    """Skip the calling test when `name` is unreachable at host:port, with the reason; under
    CI=true fail it instead, because CI must prove the paths that need real servers."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = f"{name} is unreachable at {host}:{port} ({exc})"
        if in_ci():
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
