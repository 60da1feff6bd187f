"""A real worker on the prefork pool: children that die, and children recycled by a policy."""

from __future__ import annotations

import os
import pathlib
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from kernel import App, Worker, hookimpl
from kernel.plugin import WorkerLostError


@pytest.fixture
def app(tmp_path: pathlib.Path) -> Iterator[App]:
    app = App(
        "prefork",
        broker=f"embedded:///{tmp_path}/broker.db",
        backend=f"embedded:///{tmp_path}/results.db",
    )
    yield app
    app.close()


def start(app: App, *plugins: Any, concurrency: int = 2) -> Worker:
    worker = Worker(
        app=app,
        plugins=list(plugins),
        settings={"worker_pool": "prefork", "worker_concurrency": concurrency},
    )
    worker.start()
    return worker


def die(how: str) -> None:
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)


@pytest.mark.parametrize(
    ("how", "reason"), [("kill", "signal 9 (SIGKILL)"), ("exit", "exitcode 1")]
)
def test_a_task_whose_child_dies_fails_with_worker_lost(app: App, how: str, reason: str) -> None:
    @app.task
    def doomed(how: str) -> None:
        die(how)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    worker = start(app)
    try:
        result = doomed.delay(how)
        with pytest.raises(
            WorkerLostError, match=re.escape(f"Worker exited prematurely: {reason}.")
        ):
            result.get(timeout=20)
        assert result.state == "FAILURE"
        assert add.delay(2, 3).get(timeout=20) == 5
    finally:
        worker.stop()


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_a_late_ack_task_lost_with_its_child_is_delivered_again(
    app: App, tmp_path: pathlib.Path, how: str
) -> None:
    marker = tmp_path / "tried"

    @app.task(acks_late=True, reject_on_worker_lost=True)
    def dies_once(path: str) -> str:
        if not os.path.exists(path):
            pathlib.Path(path).touch()
            die(how)
        return "second time lucky"

    worker = start(app)
    try:
        assert dies_once.delay(str(marker)).get(timeout=20) == "second time lucky"
    finally:
        worker.stop()


class RecyclePolicy:
    """Recycles a child after two tasks; each child notes its pid as it starts."""

    plugin_name = "test-recycle-policy"

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    @hookimpl
    def kernel_child_init(self, worker: Worker) -> None:
        with self.path.open("a") as fh:
            fh.write(f"{os.getpid()}\n")

    @hookimpl
    def kernel_recycle_child(self, tasks: int, rss_kib: int) -> bool:
        assert rss_kib > 0
        return tasks >= 2


def test_children_are_recycled_without_losing_a_task(app: App, tmp_path: pathlib.Path) -> None:
    started = tmp_path / "children"

    @app.task
    def whoami(n: int) -> int:
        return os.getpid()

    worker = start(app, RecyclePolicy(started))
    try:
        pids = [r.get(timeout=20) for r in [whoami.delay(n) for n in range(10)]]
    finally:
        worker.stop()
    assert len(pids) == 10
    assert len(set(pids)) >= 5
    assert max(pids.count(pid) for pid in pids) <= 2
    initialised = {int(line) for line in started.read_text().split()}
    assert set(pids) <= initialised
    assert os.getpid() not in initialised  # the hook runs in the children, not the worker


def test_children_forked_while_the_worker_uses_its_embedded_files_never_hang(app: App) -> None:
    # every task is run by a fresh child (one task per child), forked while the consumer and
    # lease threads keep using SQLite; each task sends another from its child. A child forked
    # while a thread was inside SQLite would wait for ever on SQLite's mutexes.
    class OneTaskPerChild:
        @hookimpl
        def kernel_recycle_child(self, tasks: int) -> bool:
            return True

    @app.task(bind=True)
    def hop(self: Any, n: int) -> int:
        if self.request.retries < 1:
            raise self.retry(countdown=0)  # a send from the child, on the embedded broker
        return n

    worker = start(app, OneTaskPerChild())
    try:
        results = [hop.delay(n) for n in range(40)]
        assert [r.get(timeout=30) for r in results] == list(range(40))
    finally:
        worker.stop()
