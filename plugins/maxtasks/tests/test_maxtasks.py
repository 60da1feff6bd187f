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
