"""Small helpers for plugin tests: waiting for a condition, holding and counting a pool's slots."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
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


class Gate:
    """Jobs that hold their slot until the gate opens: how many run now, and the most at once.

    Works for any pool: the counters live in shared memory (a forked pool child shares them)
    and the gate is polled with `time.sleep` (which green threads cooperate with). A held job
    gives up after `timeout` seconds, so a gate never opened cannot hang a test for good."""

    def __init__(self, timeout: float = 10.0) -> None:
        shared = multiprocessing.get_context("fork")
        self._running, self._peak = shared.Value("i", 0), shared.Value("i", 0)
        self._open = shared.Value("b", 0)
        self.timeout = timeout
        self.finished: list[Any] = []  # what each job's callback (or error callback) got
        # one callable for every job: a prefork pool forks a child for each new function
        self.hold: Callable[[Any], str] = self._hold

    def _hold(self, _: Any) -> str:
        with self._running.get_lock():
            self._running.value += 1
            self._peak.value = max(self._peak.value, self._running.value)
        deadline = time.monotonic() + self.timeout
        while not self._open.value and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._running.get_lock():
            self._running.value -= 1
        return "held"

    @property
    def running(self) -> int:
        return int(self._running.value)

    @property
    def peak(self) -> int:
        return int(self._peak.value)

    def submit(self, pool: Pool, jobs: int) -> threading.Thread:
        """Apply `jobs` holding jobs from a thread of their own, as the consumer applies from
        its thread: a pool that runs a job inside `apply` (solo) blocks that thread, not us."""

        def apply_all() -> None:
            for _ in range(jobs):
                pool.apply(self.hold, None, self.finished.append, self.finished.append)

        thread = threading.Thread(target=apply_all, name="kernel-test-gate", daemon=True)
        thread.start()
        return thread

    def open(self) -> None:
        self._open.value = 1

    def wait_running(self, jobs: int, timeout: float = 10.0) -> bool:
        return wait_until(lambda: self.running >= jobs, timeout)

    def wait_finished(self, jobs: int, timeout: float = 10.0) -> bool:
        return wait_until(lambda: len(self.finished) >= jobs, timeout)


def peak_concurrency(pool: Pool, jobs: int, timeout: float = 10.0) -> int:
    """Submit `jobs` functions that block together; return how many ran at once at the peak.

    Works for any pool (see Gate). Waits until all `jobs` run or two seconds pass, releases
    them, and waits for every callback."""
    gate = Gate(timeout)
    gate.submit(pool, jobs)
    gate.wait_running(jobs, timeout=min(timeout, 2.0))
    gate.open()
    if not gate.wait_finished(jobs, timeout=timeout):
        raise AssertionError(f"only {len(gate.finished)} of {jobs} jobs called back")
    return gate.peak


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
