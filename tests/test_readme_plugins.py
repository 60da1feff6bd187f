"""The README's example plugins, run: a step with a setting and an option, and the per-key
concurrency limit on every pool (prefork included); the worker the execute wrapper is given."""

from __future__ import annotations

import collections
import itertools
import re
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kernel import App, Worker, hookimpl


def readme_plugin(first_line: str) -> ModuleType:
    """The README's example plugin whose code block opens with `first_line`, as a module."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (code,) = [block for block in blocks if block.startswith(first_line)]
    module = ModuleType(first_line.split()[1].split("/")[0])
    exec(compile(code, "README.md", "exec"), module.__dict__)
    return module


def per_key_limit() -> ModuleType:
    """At most `key_concurrency` tasks with the same `key` keyword argument run at once."""
    return readme_plugin("# kernel_perkey/__init__.py")


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
        plugins=[per_key_limit()],
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
    worker = Worker(app=app, plugins=[per_key_limit()], settings={"key_concurrency": 0})
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


def test_the_readme_step_plugin_runs_with_its_setting_and_option(
    make_worker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    hello = readme_plugin("# kernel_hello/__init__.py")
    settings = {"worker_pool": "solo", "hello_greeting": "hi there"}
    worker = make_worker(hello, settings=settings, discover=True)
    worker.start()
    worker.stop()
    assert "hi there" in capsys.readouterr().out
    (option,) = hello.kernel_cli_options()
    assert option.opts == ["--greeting"] and option.name == "hello_greeting"
