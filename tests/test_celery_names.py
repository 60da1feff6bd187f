"""A Celery project's imports, changed from `celery` to `kernel`: the names exist and behave."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel import App, Celery, Task, Worker, current_app, current_task, shared_task, signature
from kernel.client import current
from kernel.errors import UsageError


@pytest.fixture(autouse=True)
def _shared_tasks_stay_in_their_test() -> Iterator[None]:
    # shared tasks go to every app made later in the process, as in Celery: other tests' apps
    # must not get the ones declared here
    declared = list(current._shared)
    yield
    current._shared[:] = declared


def make_app(tmp_path: Path, **options: Any) -> App:
    return Celery(
        f"proj{uuid.uuid4().hex[:6]}",
        broker=f"embedded:///{tmp_path}/b.db",
        backend=f"embedded:///{tmp_path}/r.db",
        **options,
    )


def run(app: App, *results_of: Any) -> list[Any]:
    worker = Worker(app=app, settings={"worker_pool": "solo"})
    worker.start()
    try:
        return [result.get(timeout=20) for result in (send() for send in results_of)]
    finally:
        worker.stop()
        app.close()


def test_the_modules_a_celery_project_imports_exist_under_kernel() -> None:
    from kernel import states
    from kernel.exceptions import (
        CeleryError,
        Ignore,
        ImproperlyConfigured,
        MaxRetriesExceededError,
        Reject,
        Retry,
        SoftTimeLimitExceeded,
        TimeLimitExceeded,
    )
    from kernel.result import AsyncResult, EagerResult
    from kernel.utils.log import get_task_logger

    assert Celery is App
    assert states.SUCCESS == "SUCCESS" and states.FAILURE in states.READY_STATES
    assert states.PENDING in states.UNREADY_STATES and states.RETRY in states.EXCEPTION_STATES
    assert issubclass(MaxRetriesExceededError, CeleryError) and issubclass(Retry, CeleryError)
    assert all(isinstance(cls, type) for cls in (Ignore, Reject, SoftTimeLimitExceeded))
    assert issubclass(ImproperlyConfigured, Exception) and TimeLimitExceeded.__name__
    assert issubclass(EagerResult, AsyncResult)
    logger = get_task_logger("proj.tasks")
    assert logger.parent is logging.getLogger("kernel.task")


def test_a_shared_task_declared_before_any_app_runs_on_the_app_made_later(
    tmp_path: Path,
) -> None:
    @shared_task
    def double(x: int) -> int:
        return x * 2

    @shared_task(bind=True, name="shared.whoami")
    def whoami(self: Task) -> str:
        return self.name

    app = make_app(tmp_path)  # made after the tasks: it gets them, and becomes current
    assert app.tasks[double.name] is double._get_current_object()
    assert current_app._get_current_object() is app
    assert run(app, lambda: double.delay(21), lambda: whoami.delay()) == [42, "shared.whoami"]


def test_a_shared_task_declared_after_the_app_is_registered_on_it(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @shared_task
    def triple(x: int) -> int:
        return x * 3

    assert triple.name in app.tasks
    assert triple(2) == 6  # called directly, as a function
    assert run(app, lambda: triple.apply_async((5,))) == [15]


def test_current_app_follows_set_current_and_current_task_is_the_running_one(
    tmp_path: Path,
) -> None:
    first, second = make_app(tmp_path / "a"), make_app(tmp_path / "b")
    assert current_app.main == second.main
    first.set_current()
    assert current_app.main == first.main
    assert not current_task  # no task runs here

    @first.task
    def who() -> str:
        return current_task.name if current_task else "nobody"

    assert run(first, lambda: who.delay()) == [who.name]


def test_signature_by_name_binds_to_the_current_app(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    by_name = signature(add.name, (1,), {"y": 2})
    again = signature(dict(by_name))
    assert by_name.app is app and again.name == add.name and again.args == [1]
    assert run(app, lambda: by_name.delay(), lambda: signature(add).delay(3, 4)) == [3, 7]
    with pytest.raises(TypeError, match="signature"):
        signature(42)


def _package(root: Path, name: str, tasks: str | None) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    if tasks is not None:
        (root / name / "tasks.py").write_text(textwrap.dedent(tasks))


def test_autodiscovered_task_modules_are_imported_when_the_worker_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:6]
    shop, blog, bare = f"shop{suffix}", f"blog{suffix}", f"bare{suffix}"
    _package(
        tmp_path, shop, "from kernel import shared_task\n@shared_task\ndef buy(): return 'bought'\n"
    )
    _package(
        tmp_path,
        blog,
        "from kernel import shared_task\n@shared_task\ndef post(): return 'posted'\n",
    )
    _package(tmp_path, bare, None)  # no tasks module: passed over
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(tmp_path)
    app.autodiscover_tasks([shop, bare])
    app.autodiscover_tasks(lambda: [blog])  # a callable, asked when the app is finalized
    assert f"{shop}.tasks" not in sys.modules  # lazily: nothing imported yet
    results = run(
        app,
        lambda: app.send_task(f"{shop}.tasks.buy"),
        lambda: app.send_task(f"{blog}.tasks.post"),
    )
    assert results == ["bought", "posted"]


def test_a_task_module_that_fails_to_import_names_itself_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = f"broken{uuid.uuid4().hex[:6]}"
    _package(tmp_path, broken, "import no_such_module_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(tmp_path)
    app.autodiscover_tasks([broken])
    worker = Worker(app=app, settings={"worker_pool": "solo"})
    with pytest.raises(UsageError, match=rf"cannot import '{broken}.tasks'.*no_such_module_here"):
        worker.build()
    with pytest.raises(UsageError, match=rf"{broken}.tasks"):
        app.autodiscover_tasks([broken], force=True)  # force: at once


def test_task_cls_is_the_base_of_every_task_of_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"bases{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{module}.py").write_text(
        "from kernel import Task\n"
        "class Audited(Task):\n"
        "    def audit(self):\n"
        "        return 'audited ' + self.name\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(tmp_path, task_cls=f"{module}:Audited")

    @app.task
    def job() -> None: ...

    assert job.audit() == f"audited {job.name}"
    with pytest.raises(ValueError, match="task_cls 'nowhere:Nothing' cannot be imported"):
        make_app(tmp_path, task_cls="nowhere:Nothing")
    with pytest.raises(ValueError, match=r"task_cls .* is not a subclass of Task"):
        make_app(tmp_path, task_cls=dict)
