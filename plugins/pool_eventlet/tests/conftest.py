"""Fixtures for the patched-worker tests: `kernel start -P eventlet` subprocesses and a client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kernel.testing.processes import WorkerProcess

HERE = Path(__file__).parent


def green_worker(cwd: Path, environ: dict[str, str], *args: str) -> WorkerProcess:
    """`python -m kernel start -A green_tasks -P eventlet ARGS`, with green_tasks importable."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return WorkerProcess(
        "-A", "green_tasks", "-P", "eventlet", *args, cwd=cwd, env={**environ, "PYTHONPATH": path}
    )


@pytest.fixture(scope="module")
def start_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., WorkerProcess]]:
    """`start_worker({"GREEN_BROKER": ..., ...}, "-c", "1000")`; stopped after the module."""
    started: list[WorkerProcess] = []

    def start(environ: dict[str, str], *args: str) -> WorkerProcess:
        worker = green_worker(tmp_path_factory.mktemp("worker"), environ, *args)
        started.append(worker)
        worker.wait_for(" ready", 30)
        return worker

    yield start
    for worker in started:
        worker.stop()
