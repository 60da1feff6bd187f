"""maxtasks recycles pool children at its bounds without losing or failing a task."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kernel import App, ConfigError, Worker


def test_threads_are_recycled_after_n_tasks(tmp_path: Path) -> None:
    app = App(
        "leaky", broker=f"embedded:///{tmp_path}/b.db", backend=f"embedded:///{tmp_path}/r.db"
    )

    @app.task
    def where() -> str:
        return threading.current_thread().name

    worker = Worker(
        app=app,
        plugins=["maxtasks"],
        settings={
            "worker_pool": "threads",
            "worker_concurrency": 1,
            "worker_max_tasks_per_child": 2,
        },
    )
    worker.start()
    try:
        names = [where.delay().get(timeout=20) for _ in range(10)]
    finally:
        worker.stop()
    assert len(names) == 10  # nothing lost or failed
    assert all(names.count(name) <= 2 for name in names) and len(set(names)) == 5


def test_enabled_without_a_bound_is_a_start_up_error() -> None:
    app = App("leaky", broker="memory://", backend="memory://")
    with pytest.raises(ConfigError, match="plugin maxtasks is enabled but sets no bound"):
        Worker(app=app, plugins=["maxtasks"], settings={"worker_pool": "threads"}).build()


def test_options_exist_only_with_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "proj.py").write_text(
        "from kernel import App\napp = App('p', broker='memory://')\n"
    )
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "kernel", "graph", "-A", "proj:app", *a],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    without = run("--max-tasks-per-child", "5")
    assert without.returncode == 2 and "add --plugin maxtasks" in without.stderr
    shown = run("--plugin", "maxtasks", "--max-tasks-per-child", "5")
    assert shown.returncode == 0 and "after 5 tasks" in shown.stdout, shown.stderr


LEAKY = """
import os
from kernel import App
from kernel.plugin import rss_kib

app = App("leaky", broker="embedded:///{tmp}/b.db", backend="embedded:///{tmp}/r.db")
HOARD = []

@app.task(name="leaky.pid")
def pid():
    return os.getpid()

@app.task(name="leaky.rss")
def rss():
    return rss_kib()

@app.task(name="leaky.leak")
def leak(megabytes):
    HOARD.append(bytearray(megabytes * 1024 * 1024))  # kept: a leak
    return os.getpid()
"""


def _leaky(tmp_path: Path) -> object:
    import importlib.util
    import uuid

    (tmp_path / "leaky.py").write_text(LEAKY.format(tmp=tmp_path))
    spec = importlib.util.spec_from_file_location(
        f"leaky_{uuid.uuid4().hex}", tmp_path / "leaky.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernel",
            "start",
            "-A",
            "leaky:app",
            "-P",
            "prefork",
            "-c",
            "1",
            "--plugin",
            "maxtasks",
            *args,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    import signal

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_prefork_children_are_recycled_after_n_tasks(tmp_path: Path) -> None:
    leaky = _leaky(tmp_path)
    proc = _start(tmp_path, "--max-tasks-per-child", "3")
    try:
        pids = [leaky.pid.delay().get(timeout=30) for _ in range(9)]  # type: ignore[attr-defined]
    finally:
        _stop(proc)
    assert [pids.count(p) for p in dict.fromkeys(pids)] == [3, 3, 3]  # nothing lost or failed


def test_prefork_child_above_the_memory_bound_is_recycled_after_its_task(tmp_path: Path) -> None:
    leaky = _leaky(tmp_path)
    probe = _start(tmp_path, "--max-tasks-per-child", "1000")
    try:
        baseline = leaky.rss.delay().get(timeout=30)  # type: ignore[attr-defined]
    finally:
        _stop(probe)
    proc = _start(tmp_path, "--max-memory-per-child", str(baseline + 40_000))
    try:
        steady = [leaky.pid.delay().get(timeout=30) for _ in range(3)]  # type: ignore[attr-defined]
        leaker = leaky.leak.delay(60).get(timeout=30)  # type: ignore[attr-defined]
        after = leaky.pid.delay().get(timeout=30)  # type: ignore[attr-defined]
    finally:
        out = _stop(proc)
    assert len(set(steady)) == 1 and leaker == steady[0]  # below the bound: kept
    assert after != leaker  # the task that crossed it succeeded; then its child was replaced
    assert "recycling it" in out
