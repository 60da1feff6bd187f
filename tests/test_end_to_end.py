"""`kernel start` as a user runs it, on the embedded broker: results, failures, time, crashes."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kernel.testing.processes import WorkerProcess
from kernel.wire.exceptions import TaskRevokedError
from kernel.wire.transport import Outgoing

PROJ = """
import os, time
from pathlib import Path
from kernel import App

HERE = Path(__file__).parent
app = App("proj", broker=f"embedded:///{HERE}/broker.db", backend=f"embedded:///{HERE}/results.db")

@app.task(name="proj.add")
def add(x, y):
    return x + y

@app.task(name="proj.fail")
def fail(message):
    raise ValueError(message)

@app.task(name="proj.retrier", bind=True, max_retries=3)
def retrier(self, times):
    if self.request.retries < times:
        raise self.retry(countdown=1)
    return self.request.retries

@app.task(name="proj.clock")
def clock():
    return time.time()

@app.task(name="proj.job", acks_late=True)
def job(marker, seconds):
    with open(marker, "a") as fh:
        fh.write(f"start {os.getpid()}\\n")
    time.sleep(seconds)
    with open(marker, "a") as fh:
        fh.write("end\\n")
    return "done"
"""


def worker_process(cwd: Path, *args: str) -> WorkerProcess:
    """`kernel start -A proj:app ARGS` in `cwd`, once it says it is ready."""
    return WorkerProcess("-A", "proj:app", *args, cwd=cwd).wait_for(" ready", timeout=30)


@pytest.fixture
def proj(tmp_path: Path) -> ModuleType:
    (tmp_path / "proj.py").write_text(PROJ)
    spec = importlib.util.spec_from_file_location(f"proj_{uuid.uuid4().hex}", tmp_path / "proj.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    module.app.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = worker_process(tmp_path, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def test_a_thousand_tasks_all_correct(proj: ModuleType, start_worker: Any) -> None:
    start_worker("-c", "4")
    results = [proj.add.delay(i, i) for i in range(1000)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(1000)]


def test_a_raising_task_reraises_from_get(proj: ModuleType, start_worker: Any) -> None:
    worker = start_worker()
    result = proj.fail.delay("bad value 7")
    with pytest.raises(ValueError, match="bad value 7"):
        result.get(timeout=20)
    assert result.state == "FAILURE" and "ValueError: bad value 7" in (result.traceback or "")
    worker.wait_for("failed in")


def test_retry_with_countdown(proj: ModuleType, start_worker: Any) -> None:
    start_worker()
    began = time.monotonic()
    assert proj.retrier.delay(2).get(timeout=30) == 2
    assert time.monotonic() - began >= 2.0  # two retries, one second apart


def test_eta_runs_at_its_time_not_before(proj: ModuleType, start_worker: Any) -> None:
    start_worker()
    sent = time.time()
    ran = proj.clock.apply_async(countdown=2).get(timeout=20)
    assert sent + 2.0 <= ran < sent + 3.5


def test_expired_task_is_revoked_not_run(proj: ModuleType, start_worker: Any) -> None:
    worker = start_worker()
    result = proj.add.apply_async((1, 1), expires=-1)
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=20)
    assert result.state == "REVOKED"
    worker.wait_for("expired at")


def test_acks_late_task_survives_sigkill_of_its_worker(
    proj: ModuleType, start_worker: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    first = start_worker()
    result = proj.job.delay(str(marker), 2)
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), first.log
    first.stop(signal.SIGKILL)
    assert marker.read_text().splitlines() == [f"start {first.proc.pid}"]  # killed mid-task
    second = start_worker()
    assert result.get(timeout=30) == "done"
    lines = marker.read_text().splitlines()
    assert lines[0] == f"start {first.proc.pid}" and lines[-1] == "end"
    assert f"start {second.proc.pid}" in lines


def test_bad_messages_are_rejected_and_the_worker_goes_on(
    proj: ModuleType, start_worker: Any
) -> None:
    worker = start_worker()
    broker, queue = proj.app.broker, proj.app.conf.task_default_queue

    def raw(body: bytes, headers: dict[str, Any], content_type: str = "application/json") -> None:
        broker.publish([Outgoing(body, queue, "", headers, {}, content_type, "utf-8", [queue])])

    raw(b"[[1, 2]]", {"task": "proj.add", "id": "malformed-body"})
    raw(b"[[], {}, {}]", {"task": "proj.nope", "id": "unknown-task"})
    raw(
        b"\x80\x04K\x01.",
        {"task": "proj.add", "id": "not-accepted"},
        content_type="application/x-python-serialize",
    )
    raw(b"[[1, 2], {}, {}]", {"task": "proj.add", "id": "bad-eta", "eta": "half past nine"})
    assert proj.add.delay(40, 2).get(timeout=20) == 42
    log = worker.log
    assert "rejected message malformed-body: malformed body" in log
    assert "rejected message unknown-task: unknown task 'proj.nope'" in log
    assert (
        "rejected message not-accepted: content type "
        "'application/x-python-serialize' is not accepted" in log
    )
    assert "rejected message bad-eta: unparseable eta 'half past nine'" in log
    assert worker.proc.poll() is None


def test_warm_shutdown_finishes_the_running_task_and_stores_its_result(
    proj: ModuleType, start_worker: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    worker = start_worker()
    result = proj.job.delay(str(marker), 1.5)
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    began = time.monotonic()
    assert worker.stop(signal.SIGTERM) == 0
    assert time.monotonic() - began >= 1.0  # it waited for the task
    assert marker.read_text().splitlines()[-1] == "end"
    assert result.state == "SUCCESS" and result.get(timeout=1) == "done"


def kernel(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_PLUGINS"}
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_call_and_result_commands(proj: ModuleType, start_worker: Any, tmp_path: Path) -> None:
    start_worker()
    waited = kernel(tmp_path, "call", "-A", "proj:app", "proj.add", "--args", "[2, 3]", "--wait")
    assert (waited.returncode, waited.stdout.strip()) == (0, "5"), waited.stderr
    failed = kernel(
        tmp_path,
        "call",
        "-A",
        "proj:app",
        "proj.fail",
        "--args",
        '["nope"]',
        "--wait",
        "--timeout",
        "20",
    )
    assert failed.returncode == 1 and "FAILURE: ValueError('nope')" in failed.stdout
    sent = kernel(tmp_path, "call", "-A", "proj:app", "proj.add", "--kwargs", '{"x": 1, "y": 1}')
    task_id = sent.stdout.strip()
    assert sent.returncode == 0 and len(task_id) == 36
    shown = kernel(tmp_path, "result", "-A", "proj:app", task_id, "--wait", "--timeout", "20")
    assert (shown.returncode, shown.stdout.strip()) == (0, "2")


def test_purge_deletes_waiting_tasks(proj: ModuleType, tmp_path: Path) -> None:
    for i in range(3):
        proj.add.delay(i, i)
    purged = kernel(tmp_path, "purge", "-A", "proj:app", "-f")
    assert purged.returncode == 0 and "Purged 3 message(s) from celery." in purged.stdout
    again = kernel(tmp_path, "purge", "-A", "proj:app", "-f")
    assert "Purged 0 message(s)" in again.stdout


def test_graph_shows_the_worker_an_app_would_run(proj: ModuleType, tmp_path: Path) -> None:
    shown = kernel(tmp_path, "graph", "-A", "proj:app", "--pool", "solo")
    names = [line.split()[1] for line in shown.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert names == ["backend", "broker", "pool.solo", "consumer"], shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["start", "-A", "nosuch:app"],
            "cannot import app 'nosuch:app': ModuleNotFoundError: No module named 'nosuch'",
        ),
        (
            ["start", "-A", "proj:app", "--pool", "nosuch"],
            "unknown pool 'nosuch' (worker_pool); choose one of:",
        ),
        (["start", "-A", "proj:app", "-c", "0"], "Invalid value for '-c' / '--concurrency'"),
        (["start", "-A", "proj:missing"], "'proj:missing' is not a kernel.App"),
        (["call", "proj.add", "--args", "[2, 3"], "Invalid value for --args: not JSON"),
        (
            ["call", "proj.add", "--kwargs", "[1]"],
            "Invalid value for --kwargs: expected a JSON object",
        ),
    ],
)
def test_mistakes_get_one_line_and_status_2(
    proj: ModuleType, tmp_path: Path, args: list[str], message: str
) -> None:
    result = kernel(tmp_path, *args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
