"""Fixtures for the patched-worker tests: `kernel start -P gevent` subprocesses and a client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent


class WorkerProcess:
    """`python -m kernel start -A green_tasks -P gevent ...`, its output collected line by line."""

    def __init__(self, cwd: Path, environ: dict[str, str], *args: str) -> None:
        path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, **environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        env.pop("KERNEL_PLUGINS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", "start", "-A", "green_tasks", "-P", "gevent", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert self.proc.poll() is None, f"worker exited:\n{self.log}"
            assert time.monotonic() < deadline, f"{text!r} never logged:\n{self.log}"
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture(scope="module")
def start_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., WorkerProcess]]:
    """`start_worker({"GREEN_BROKER": ..., ...}, "-c", "1000")`; stopped after the module."""
    started: list[WorkerProcess] = []

    def start(environ: dict[str, str], *args: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path_factory.mktemp("worker"), environ, *args)
        started.append(worker)
        worker.wait_for(" ready", 30)
        return worker

    yield start
    for worker in started:
        worker.stop()
