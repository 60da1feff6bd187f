"""Per-task hooks in the parent: a per-key concurrency limit written as the README writes it,
on every pool (prefork included), and the worker that the execute wrapper is given."""

from __future__ import annotations

import collections
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from kernel import App, Worker, hookimpl
from kernel.plugin import Setting, at_least


class PerKeyLimit:
    """At most `key_concurrency` tasks with the same `key` keyword argument run at once."""

    def __init__(self) -> None:
        self.running: collections.Counter[str] = collections.Counter()

    @hookimpl
    def kernel_settings(self) -> list[Setting]:
        return [Setting("key_concurrency", 1, at_least(1), "tasks per key at once")]

    @hookimpl
    def kernel_task_defer(self, request: Any, worker: Any) -> float | None:
        key = request.kwargs.get("key")
        if key is not None and self.running[key] >= worker.settings.key_concurrency:
            return 0.05  # asked again in 50 ms, without holding a pool slot meanwhile
        return None

    @hookimpl
    def kernel_task_dispatched(self, request: Any) -> None:
        # counted here, not in kernel_task_defer: a later plugin could still defer the task
        key = request.kwargs.get("key")
        if key is not None:
            self.running[key] += 1

    @hookimpl
    def kernel_task_done(self, request: Any) -> None:
        key = request.kwargs.get("key")
        if key is not None:
            self.running[key] -= 1


def make_app(tmp_path: Path) -> App:
    app = App(
        "hooks",
        broker=f"embedded:///{tmp_path}/broker.db",
        backend=f"embedded:///{tmp_path}/results.db",
    )

    @app.task(name="hooks.work")
    def work(log: str, key: str, seconds: float) -> str:
        began = time.time()
        time.sleep(seconds)
        with open(log, "a") as out:
            out.write(f"{key} {began} {time.time()}\n")
        return key

    return app


def overlaps(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_per_key_limit_holds_on_every_pool(tmp_path: Path, pool: str) -> None:
    app = make_app(tmp_path)
    log = str(tmp_path / "spans.log")
    worker = Worker(
        app=app,
        plugins=[PerKeyLimit()],
        settings={"worker_pool": pool, "worker_concurrency": 3, "key_concurrency": 1},
    )
    worker.start()
    try:
        work = app.tasks["hooks.work"]
        sent = [work.delay(log, key=key, seconds=0.2) for key in ["a", "a", "a", "b", "b", "b"]]
        assert sorted(r.get(timeout=30) for r in sent) == ["a", "a", "a", "b", "b", "b"]
    finally:
        worker.stop()
        app.close()
    spans: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for line in Path(log).read_text().splitlines():
        key, began, ended = line.split()
        spans[key].append((float(began), float(ended)))
    assert not overlaps(spans["a"]) and not overlaps(spans["b"])  # one at a time per key
    assert overlaps(spans["a"] + spans["b"])  # while the two keys ran side by side


def test_a_bad_value_of_a_hook_only_plugins_setting_names_the_key(tmp_path: Path) -> None:
    from kernel import ConfigError

    app = make_app(tmp_path)
    worker = Worker(app=app, plugins=[PerKeyLimit()], settings={"key_concurrency": 0})
    with pytest.raises(ConfigError, match="setting 'key_concurrency': expected a number of"):
        worker.build()


def test_the_execute_wrapper_is_given_the_worker(tmp_path: Path) -> None:
    seen: list[Any] = []

    class Around:
        @hookimpl(wrapper=True)
        def kernel_execute_task(self, task: Any, worker: Any) -> Any:
            seen.append((task.name, worker.hostname))
            return (yield)

    app = make_app(tmp_path)
    worker = Worker(app=app, plugins=[Around()], settings={"worker_pool": "solo"})
    worker.start()
    try:
        assert app.tasks["hooks.work"].delay(str(tmp_path / "x"), "k", 0).get(timeout=10) == "k"
    finally:
        worker.stop()
        app.close()
    assert seen == [("hooks.work", worker.hostname)]
