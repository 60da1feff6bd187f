"""A worker killed with SIGKILL mid-task: with acks_late, another worker runs the task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kernel import App
from kernel.testing.helpers import wait_until

APP_MODULE = """
import os, time
from kernel import App

app = App("killed", broker={broker!r}, backend={backend!r}, task_default_queue={queue!r})


@app.task(name="killed.mark", acks_late=True)
def mark(path):
    first = not os.path.exists(path)
    with open(path, "a") as f:
        f.write(f"{{os.getpid()}}\\n")
    if first:
        time.sleep(120)  # the first worker is killed while it sleeps here
    return "done"
"""


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", "start", "-A", "killed_app", "-c", "1"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_sigkill_mid_task_then_a_new_worker_completes_it(
    amqp_url: str,
    new_queue: Callable[[], str],
    tmp_path: Path,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    queue = new_queue()
    backend = f"embedded:///{tmp_path}/results.db"
    (tmp_path / "killed_app.py").write_text(
        APP_MODULE.format(broker=amqp_url, backend=backend, queue=queue)
    )
    client = App("client", broker=amqp_url, backend=backend, task_default_queue=queue)
    marker = tmp_path / f"runs-{uuid.uuid4().hex[:6]}.txt"
    try:
        result = client.send_task("killed.mark", args=[str(marker)])
        first = start_worker()
        assert wait_until(marker.exists, timeout=30), "the first worker never started the task"
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL

        second = start_worker()
        assert result.get(timeout=30) == "done"
        runs = marker.read_text().split()
        assert len(runs) == 2 and runs[0] == str(first.pid) and runs[1] != runs[0]
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        client.close()
