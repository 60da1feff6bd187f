"""Mistakes a user makes on the command line with an app: one line naming what is wrong, or,
where nothing is wrong but the task will not run (a client in another directory than the
worker), a note saying where it went instead of a silent wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.testing.helpers import require_server
from kernel.testing.processes import WorkerProcess

# no URL: the embedded broker and backend, files under ./.taskkernel of the current directory
PROJ = """
from kernel import App

app = App("proj")

@app.task(name="proj.add")
def add(x, y):
    return x + y
"""

REDIS = "redis://127.0.0.1:6379/15"  # its own database (other tests and the bench use 2-14)


def make_project(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "proj.py").write_text(PROJ)
    return path


@pytest.fixture
def here(tmp_path: Path) -> Path:
    return make_project(tmp_path / "here")


def kernel(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_PLUGINS"}
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def workers() -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(cwd: Path, *args: str) -> WorkerProcess:
        worker = WorkerProcess("-A", "proj:app", *args, cwd=cwd)
        started.append(worker)
        return worker.wait_for(" ready", timeout=30)

    yield start
    for worker in started:
        worker.kill()


# -- bad values, refused before anything starts ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["-s", "broker_url=foo//bar"], ["setting 'broker_url': bad URL 'foo//bar'"]),
        # the redis plugin is installed, but a URL without :// is still a bad URL, not a
        # plugin that fails to start
        (["-s", "broker_url=rediss//bad"], ["setting 'broker_url': bad URL 'rediss//bad'"]),
        (["-b", "rediss//bad"], ["setting 'broker_url': bad URL", "did you mean 'rediss://bad'"]),
        (["--result-backend", "redis:/x"], ["setting 'result_backend': bad URL 'redis:/x'"]),
        (
            ["-s", "worker_concurrency=-2"],
            ["setting 'worker_concurrency': expected a number of at least 1, got '-2'"],
        ),
        (["-c", "0"], ["'-c' / '--concurrency'", "x>=1"]),
        (["-c", "-2"], ["'-c' / '--concurrency'", "x>=1"]),
        (
            ["-s", "worker_prefetch_multiplier=-1"],
            ["setting 'worker_prefetch_multiplier': expected a number of at least 0"],
        ),
        (
            ["-s", "task_time_limit=0"],
            ["setting 'task_time_limit': expected a number of seconds above 0, or None"],
        ),
        (
            ["-s", "task_soft_time_limit=-5"],
            ["setting 'task_soft_time_limit': expected a number of seconds above 0"],
        ),
    ],
)
def test_a_bad_value_is_one_line_and_status_2(
    here: Path, args: list[str], parts: list[str]
) -> None:
    line = one_line_error(kernel(here, "start", "-A", "proj:app", *args), *parts)
    assert "not installed" not in line


# -- -b/--broker and --result-backend ------------------------------------------------------------


def test_broker_and_backend_urls_on_the_command_line_pick_their_plugins(here: Path) -> None:
    listed = kernel(here, "plugins", "-A", "proj:app", "-b", REDIS, "--result-backend", REDIS)
    assert listed.returncode == 0, listed.stderr
    states = {
        line.split()[0]: line.split()[1] for line in listed.stdout.splitlines() if line[:1] != " "
    }
    assert states["broker.redis"] == states["backend.redis"] == "enabled"
    assert states["broker.embedded"] == states["backend.embedded"] == "installed"
    # the prescan sees the --flag=value form too
    listed = kernel(here, "plugins", "-A", "proj:app", f"--broker={REDIS}")
    states = {
        line.split()[0]: line.split()[1] for line in listed.stdout.splitlines() if line[:1] != " "
    }
    assert states["broker.redis"] == "enabled" and states["backend.redis"] == "installed"


def test_a_worker_started_with_a_redis_url_says_so_in_its_banner(here: Path, workers: Any) -> None:
    require_server("Redis", "127.0.0.1", 6379)
    queue = f"stumbles-{uuid.uuid4().hex}"  # nothing else on this Redis is sent here
    worker = workers(here, "-b", REDIS, "--result-backend", REDIS, "-Q", queue, "-P", "solo")
    assert f"broker  : {REDIS}" in worker.log and f"results : {REDIS}" in worker.log
    plugins = next(line for line in worker.log.splitlines() if "plugins :" in line)
    assert "broker.redis" in plugins and "backend.redis" in plugins
    assert "embedded" not in plugins
    assert worker.stop() == 0


# -- a client in another directory than the worker --------------------------------------------


def test_a_client_in_another_directory_is_told_where_its_task_went(
    tmp_path: Path, workers: Any
) -> None:
    there = make_project(tmp_path / "there")  # the worker's directory
    here = make_project(tmp_path / "here")  # the client's: another embedded:// file
    worker = workers(there, "-c", "1")
    there_db = os.path.realpath(there / ".taskkernel" / "broker.db")
    here_db = os.path.realpath(here / ".taskkernel" / "broker.db")
    assert f"broker  : embedded:// ({there_db})" in worker.log  # the banner names the file

    # beside the worker: the result, and no note
    beside = kernel(there, "call", "-A", "proj:app", "proj.add", "--args", "[2, 3]", "--wait")
    assert (beside.returncode, beside.stdout.strip(), beside.stderr) == (0, "5", "")

    # elsewhere, without --wait: the id, and a note naming the file nobody consumes from
    nobody = f"no worker consumes queue 'celery' at embedded:// ({here_db})"
    sent = kernel(here, "call", "-A", "proj:app", "proj.add", "--args", "[1, 1]")
    assert sent.returncode == 0 and len(sent.stdout.strip()) == 36
    assert sent.stderr.strip() == f"Note: {nobody}; the task waits there until one does"

    # with --wait and --timeout: gives up as asked, saying why
    timed = kernel(
        here, "call", "-A", "proj:app", "proj.add", "--args", "[2, 2]", "--wait", "--timeout", "1"
    )
    assert timed.returncode == 1
    assert timed.stderr.strip().endswith(f": no result after 1.0s (state PENDING); {nobody}")

    # with --wait and no timeout: a note after a short while, then it keeps waiting...
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_PLUGINS"}
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernel",
            "call",
            "-A",
            "proj:app",
            "proj.add",
            "--args",
            "[3, 4]",
            "--wait",
        ],
        cwd=here,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        began = time.monotonic()
        note = waiting.stderr.readline().strip()
        assert time.monotonic() - began < 20
        assert note.startswith("Note: task ") and note.endswith(
            f"is still PENDING: {nobody}; still waiting (Ctrl-C to stop; --timeout N gives up)"
        )
        assert waiting.poll() is None
        # ...until a worker consumes that file: then the result, as if nothing had happened
        workers(here, "-c", "1")
        out, err = waiting.communicate(timeout=30)
        assert (waiting.returncode, out.strip(), err) == (0, "7", "")
    finally:
        waiting.kill()
        waiting.wait(10)
    assert worker.stop() == 0
