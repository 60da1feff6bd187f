"""Task semantics as Celery has them, on a real worker: `__call__` overrides, `before_start`,
`update_state`, `replace`, and the request's fields (solo, threads and prefork pools)."""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel import App, Signature, Task, Worker
from kernel.testing.helpers import require_server, wait_until
from kernel.testing.processes import WorkerProcess
from kernel.wire.exceptions import Ignore
from kernel.wire.protocol import decode_request, task_message

POOLS = ["solo", "threads", "prefork"]


# what a Flask app context does for its tasks: something the task body can only see inside it
context = threading.local()


class ContextTask(Task):
    """The Flask pattern: every run inside a context the override opens."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        context.entered = (self.request.id, self.request.called_directly)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            context.entered = None


class StartingTask(Task):
    """Records what `before_start` was given, for the run to report."""

    def before_start(self, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        context.before = (task_id, list(args), dict(kwargs), getattr(context, "entered", None))
        if kwargs.get("refuse"):
            raise PermissionError("not today")


class Both(StartingTask, ContextTask):
    pass


REDIS = ("Redis", "127.0.0.1", 6379)
REDIS_URL = "redis://127.0.0.1:6379/5"  # each test has its own queue and task ids in it


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    """On the embedded broker and backend; for prefork, on Redis: a prefork child that sends a
    task (retry, replace) or stores a state uses SQLite after a fork, which can block when
    the parent was using it at that moment (the embedded transports are not fork-safe)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("pool") == "prefork":
        require_server(*REDIS)
        app = App(
            "semantics",
            broker=REDIS_URL,
            backend=REDIS_URL,
            task_default_queue=f"kt-semantics-{uuid.uuid4().hex[:8]}",
        )
    else:
        app = App(
            "semantics",
            broker=f"embedded:///{tmp_path}/broker.db",
            backend=f"embedded:///{tmp_path}/results.db",
        )
    yield app
    app.close()


@pytest.fixture
def run_worker() -> Iterator[Any]:
    workers: list[Worker] = []

    def start(app: App, pool: str = "threads", concurrency: int = 2) -> Worker:
        worker = Worker(app=app, settings={"worker_pool": pool, "worker_concurrency": concurrency})
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


# -- the worker calls the task through Task.__call__ ----------------------------------------


@pytest.mark.parametrize("pool", POOLS)
def test_an_overridden_call_runs_around_the_task_with_the_real_request(
    app: App, run_worker: Any, pool: str
) -> None:
    @app.task(base=ContextTask, bind=True)
    def inside(self: Task, x: int) -> Any:
        request = self.request
        return [context.entered, request.id, request.called_directly, request.task, x]

    @app.task(bind=True)
    def plain(self: Task) -> Any:
        return [getattr(context, "entered", None), self.request.called_directly]

    run_worker(app, pool)
    result = inside.delay(7)
    assert result.get(timeout=20) == [[result.id, False], result.id, False, inside.name, 7]
    assert plain.delay().get(timeout=20) == [None, False]  # no override: run() alone


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_autoretry_and_errbacks_work_through_an_overridden_call(
    app: App, run_worker: Any, pool: str
) -> None:
    @app.task(
        base=ContextTask,
        bind=True,
        autoretry_for=(KeyError,),
        # at once: the next run may end before this one's outcome reaches the worker; its
        # RETRY, stored before the retry is sent, must not hide the last run's result
        retry_kwargs={"countdown": 0},
        max_retries=3,
    )
    def flaky(self: Task, fail_times: int) -> Any:
        if self.request.retries < fail_times:
            raise KeyError(f"attempt {self.request.retries}")
        return [self.request.retries, context.entered[0] == self.request.id]

    @app.task(base=ContextTask)
    def broken() -> None:
        raise ValueError("broken inside the context")

    @app.task(bind=True)
    def errback(self: Task, failed_id: str) -> str:
        return f"{failed_id} failed"

    run_worker(app, pool)
    assert flaky.delay(2).get(timeout=20) == [2, True]
    spent = flaky.delay(5)
    with pytest.raises(KeyError, match="attempt 3"):
        spent.get(timeout=20)
    handled = str(uuid.uuid4())
    failing = broken.apply_async(link_error=errback.s().set(task_id=handled))
    with pytest.raises(ValueError, match="broken inside the context"):
        failing.get(timeout=20)
    assert app.AsyncResult(handled).get(timeout=20) == f"{failing.id} failed"


def test_a_direct_call_inside_a_run_is_a_direct_call(app: App) -> None:
    @app.task(base=ContextTask, bind=True)
    def countdown(self: Task, n: int) -> Any:
        if n:
            return [*countdown(n - 1), [self.request.called_directly, self.request.id]]
        return [[self.request.called_directly, self.request.id]]

    assert countdown.apply((1,), task_id="outer").get() == [[True, None], [False, "outer"]]
    assert countdown(0) == [[True, None]]  # called directly from outside any run


def test_the_call_path_is_decided_once_per_class() -> None:
    app = App("classes", broker="memory://", backend="memory://classes", set_as_current=False)
    plain = app.task(name="plain")(lambda: None)
    wrapped = app.task(base=ContextTask, name="wrapped")(lambda: None)
    starting = app.task(base=StartingTask, name="starting")(lambda: None)
    assert plain.calls_run and not wrapped.calls_run and not starting.calls_run
    assert Task.calls_run and not Both.calls_run


# -- before_start ----------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_before_start_is_called_before_the_task_and_its_failure_fails_it(
    app: App, run_worker: Any, pool: str
) -> None:
    @app.task(base=Both, bind=True)
    def job(self: Task, x: int, refuse: bool = False) -> Any:
        return context.before

    run_worker(app, pool)
    result = job.delay(3)
    # called with the id and arguments, before the overridden __call__ opened its context
    assert result.get(timeout=20) == [result.id, [3], {}, None]
    refused = job.delay(4, refuse=True)
    with pytest.raises(PermissionError, match="not today"):
        refused.get(timeout=20)


def test_before_start_runs_for_eager_runs_too(app: App) -> None:
    @app.task(base=StartingTask, bind=True)
    def job(self: Task, x: int) -> Any:
        return context.before

    assert job.apply((1,), {}, task_id="eager-id").get() == ("eager-id", [1], {}, None)


# -- update_state ------------------------------------------------------------------------------


def _progress_task(app: App, gate: Path) -> Task:
    @app.task(bind=True)
    def long_job(self: Task, total: int) -> str:
        self.update_state(state="PROGRESS", meta={"current": 3, "total": total})
        assert wait_until(gate.exists, timeout=20)
        return "done"

    return long_job


@pytest.mark.parametrize("pool", POOLS)
def test_update_state_is_read_by_clients_while_the_task_runs(
    app: App, run_worker: Any, pool: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    long_job = _progress_task(app, gate)
    run_worker(app, pool)
    result = long_job.delay(10)
    assert wait_until(lambda: result.state == "PROGRESS", timeout=20), result.state
    assert result.info == {"current": 3, "total": 10}
    assert not result.ready()
    # another client, with its own connection to the backend, reads the same
    other = App("other", broker=app.broker_url, backend=app.backend_url, set_as_current=False)
    try:
        assert other.AsyncResult(result.id).info == {"current": 3, "total": 10}
    finally:
        other.close()
    gate.touch()
    assert result.get(timeout=20) == "done"
    assert result.state == "SUCCESS"  # the same handle: the custom state was not kept


def test_update_state_in_an_eager_run_stores_through_the_app_as_celery_does(app: App) -> None:
    @app.task(bind=True)
    def job(self: Task) -> str:
        self.update_state(state="PROGRESS", meta={"current": 1})
        # another task's state, by id
        self.update_state(task_id="someone-else", state="CHECKED", meta=[1, 2])
        return "ok"

    assert job.apply(task_id="eager-progress").get() == "ok"
    # an eager run stores nothing of its own end: what it reported stays
    assert app.AsyncResult("eager-progress").state == "PROGRESS"
    assert app.AsyncResult("eager-progress").info == {"current": 1}
    assert app.AsyncResult("someone-else").info == [1, 2]
    assert app.backend.get("someone-else")["task_id"] == "someone-else"  # type: ignore[index]


def test_update_state_needs_a_state_and_a_direct_call_stores_nothing(app: App) -> None:
    @app.task(bind=True)
    def job(self: Task, state: str | None) -> str:
        self.update_state(state=state, meta={"x": 1})
        return "ran"

    assert job("PROGRESS") == "ran"  # called directly: no id to store under
    with pytest.raises(ValueError, match="needs a state"):
        job.apply((None,), throw=True)


def test_update_state_keeps_the_worker_fields_of_an_extended_result(
    app: App, run_worker: Any, tmp_path: Path
) -> None:
    app.conf.result_extended = True
    gate = tmp_path / "gate"
    long_job = _progress_task(app, gate)
    worker = run_worker(app, "threads")
    result = long_job.delay(4)
    assert wait_until(lambda: result.state == "PROGRESS", timeout=20)
    meta = app.backend.get(result.id)
    gate.touch()
    assert meta is not None
    assert meta["name"] == long_job.name and meta["args"] == [4]
    assert meta["worker"] == worker.hostname and meta["date_done"] is None
    assert result.get(timeout=20) == "done"


def test_slow_progress_is_seen_step_by_step(app: App, run_worker: Any) -> None:
    """Several updates in a row: each is visible, in order, while the task runs."""

    @app.task(bind=True)
    def steps(self: Task, n: int) -> int:
        for i in range(1, n + 1):
            self.update_state(state="PROGRESS", meta={"current": i, "total": n})
            time.sleep(0.15)
        return n

    run_worker(app)
    result = steps.delay(5)
    seen: list[int] = []
    while not result.ready():
        info = result.info
        if result.state == "PROGRESS" and isinstance(info, dict):
            if not seen or seen[-1] != info["current"]:
                seen.append(info["current"])
        time.sleep(0.01)
    assert result.get(timeout=20) == 5
    assert seen == sorted(seen) and len(seen) >= 3, seen


PROGRESS_PROJECT = """
import time
from kernel import App

app = App("proj", broker={url!r}, backend={url!r}, task_default_queue={queue!r})


@app.task(name="proj.crunch", bind=True)
def crunch(self, total, pause):
    for i in range(1, total + 1):
        time.sleep(pause)
        self.update_state(state="PROGRESS", meta={{"current": i, "total": total}})
    return {{"done": total, "pid": __import__("os").getpid()}}
"""


def test_progress_reported_in_a_prefork_child_is_read_by_another_process(tmp_path: Path) -> None:
    """`kernel start --pool prefork` on Redis in its own process; this process, a client that
    never imported the task, polls the progress of a long task."""
    require_server(*REDIS)
    queue = f"kt-progress-{uuid.uuid4().hex[:8]}"
    (tmp_path / "proj.py").write_text(PROGRESS_PROJECT.format(url=REDIS_URL, queue=queue))
    worker = WorkerProcess("-A", "proj:app", "--pool", "prefork", "-c", "2", cwd=tmp_path)
    client = App("client", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
    try:
        worker.wait_for(" ready", timeout=30)
        result = client.send_task("proj.crunch", [5, 0.2], queue=queue)
        seen: list[dict[str, int]] = []
        deadline = time.monotonic() + 30
        while not result.ready() and time.monotonic() < deadline:
            state, info = result.state, result.info  # each a fresh read: nothing is cached
            if state == "PROGRESS" and isinstance(info, dict) and "current" in info:
                if not seen or seen[-1] != info:
                    seen.append(info)
            time.sleep(0.02)
        final = result.get(timeout=30)
        assert final["done"] == 5 and final["pid"] != worker.pid  # ran in a child
        currents = [info["current"] for info in seen]
        assert currents == sorted(currents) and len(currents) >= 3, seen
        assert all(info["total"] == 5 for info in seen)
        assert result.state == "SUCCESS"
    finally:
        client.close()
        assert worker.stop() == 0, worker.log


# -- replace ------------------------------------------------------------------------------------


def _replacing_tasks(app: App) -> tuple[Task, Task]:
    """`host` replaces itself by `target` (after `times - 1` replacements by itself)."""

    @app.task(bind=True)
    def target(self: Task, x: int) -> Any:
        request = self.request
        return [x * 10, request.id, request.replaced_task_nesting, request.root_id]

    @app.task(bind=True)
    def host(self: Task, x: int, times: int = 1) -> Any:
        if times > 1:
            return self.replace(host.s(x, times - 1))
        return self.replace(target.s(x))

    @app.task
    def record(value: Any) -> Any:
        return ["recorded", value]

    return host, record


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_replaced_task_hands_its_id_to_the_replacement(
    app: App, run_worker: Any, pool: str
) -> None:
    host, _ = _replacing_tasks(app)
    run_worker(app, pool)
    result = host.delay(4)
    assert result.get(timeout=20) == [40, result.id, 1, result.id]
    assert result.state == "SUCCESS"
    twice = host.delay(5, times=2)
    assert twice.get(timeout=20) == [50, twice.id, 2, twice.id]  # nesting counts replacements


def test_a_replacement_takes_over_links_errbacks_and_the_chain(app: App, run_worker: Any) -> None:
    host, record = _replacing_tasks(app)

    @app.task(bind=True)
    def to_failure(self: Task) -> None:
        self.replace(explode.s())

    @app.task
    def explode() -> None:
        raise ValueError("replacement failed")

    @app.task
    def errback(failed_id: str) -> str:
        return f"errback for {failed_id}"

    run_worker(app)
    linked_id, chained_id, errback_id = (str(uuid.uuid4()) for _ in range(3))
    linked = host.apply_async((1,), link=record.s().set(task_id=linked_id))
    assert linked.get(timeout=20)[0] == 10
    assert app.AsyncResult(linked_id).get(timeout=20) == ["recorded", linked.get()]
    app.send_task(host.name, [2], chain=[record.s().set(task_id=chained_id)])
    assert app.AsyncResult(chained_id).get(timeout=20)[1][0] == 20
    failing = to_failure.apply_async(link_error=errback.s().set(task_id=errback_id))
    with pytest.raises(ValueError, match="replacement failed"):
        failing.get(timeout=20)
    assert app.AsyncResult(errback_id).get(timeout=20) == f"errback for {failing.id}"


def test_replace_sends_celerys_message() -> None:
    app = App("wire", broker="memory://", backend="memory://wire", set_as_current=False)
    sent: list[Any] = []
    app.send_task = lambda name, args=None, kwargs=None, **options: sent.append(  # type: ignore[method-assign]
        (name, args, kwargs, options)
    )

    @app.task(bind=True)
    def host(self: Task) -> None:
        self.replace(Signature("other.task", (1,), {"k": 2}, app=app))

    @app.task
    def then(x: Any) -> None: ...

    headers, properties, body = task_message(
        task_id="the-id",
        name=host.name,
        origin="gen1@host",
        root_id="the-root",
        parent_id="the-parent",
        group="the-group",
        group_index=2,
        callbacks=[then.s()],
        errbacks=[then.s()],
        chain=[then.s(), then.s()],
        replaced_task_nesting=1,
    )
    request = decode_request(headers, properties, {"routing_key": "celery"}, body)
    traced = _run_in_worker(host, request)
    assert isinstance(traced, Ignore)
    ((name, args, kwargs, options),) = sent
    assert (name, args, kwargs) == ("other.task", [1], {"k": 2})
    assert options["task_id"] == "the-id" and options["root_id"] == "the-root"
    assert options["group_id"] == "the-group" and options["group_index"] == 2
    assert options["replaced_task_nesting"] == 2 and options["chord"] is None
    assert options["link"] == [then.s()] and options["link_error"] == [then.s()]
    assert [step["options"]["replaced_task_nesting"] for step in options["chain"]] == [2, 2]


def _run_in_worker(task: Task, request: Any) -> Any:
    """Run `task` for `request` as the worker does, returning what it raised."""
    from kernel.client.trace import call_task

    task.push_request(request)
    task.app.push_current(request)
    try:
        call_task(task, request)
    except BaseException as exc:
        return exc
    finally:
        task.app.pop_current()
        task.pop_request()
    return None


def test_replace_refuses_groups_chords_and_chord_members(app: App) -> None:
    @app.task(bind=True)
    def host(self: Task, sig: Any) -> Any:
        return self.replace(sig)

    group = {"task": "celery.group", "args": [], "kwargs": {"tasks": []}, "options": {}}
    with pytest.raises(NotImplementedError, match="replacing a task with a group"):
        host.apply(({**group, "subtask_type": "group"},), throw=True)
    with pytest.raises(NotImplementedError, match="with a chord"):
        host.apply(({**group, "subtask_type": "chord"},), throw=True)
    member = host.s(1).set(chord={"task": "cb"})
    with pytest.raises(ValueError, match="must not be part of a chord"):
        host.apply((member,), throw=True)


def test_replace_in_an_eager_run_returns_the_replacements_result(app: App) -> None:
    host, _ = _replacing_tasks(app)
    result = host.apply((3,), task_id="eager-host")
    assert result.get() == [30, "eager-host", 1, "eager-host"]
    assert host.apply((3,), {"times": 3}).get()[2] == 3  # nesting counts eager replacements


# -- the request's fields ---------------------------------------------------------------------

FIELDS = [
    "task",
    "hostname",
    "origin",
    "reply_to",
    "correlation_id",
    "delivery_info",
    "time_limit",
    "soft_time_limit",
    "timelimit",
    "root_id",
    "parent_id",
    "group",
    "taskset",
    "retries",
    "is_eager",
    "called_directly",
    "args",
    "kwargs",
    "ignore_result",
    "replaced_task_nesting",
]


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_the_request_carries_celerys_fields(app: App, run_worker: Any, pool: str) -> None:
    @app.task(bind=True)
    def fields(self: Task, x: int) -> Any:
        request = self.request
        got = {name: getattr(request, name) for name in FIELDS}
        got["properties"] = sorted(request.properties)
        got["custom"] = request.headers.get("x-custom")
        got["get"] = [request.get("retries", -1), request.get("no_such_field", "default")]
        return got

    worker = run_worker(app, pool)
    result = fields.apply_async(
        (1,), headers={"x-custom": "yes"}, time_limit=60, soft_time_limit=30
    )
    got = result.get(timeout=20)
    assert got["task"] == fields.name and got["hostname"] == worker.hostname
    assert got["origin"] == app.origin and got["reply_to"] == app.oid
    assert got["correlation_id"] == result.id
    assert got["delivery_info"]["routing_key"] == app.conf.task_default_queue
    assert (got["time_limit"], got["soft_time_limit"], got["timelimit"]) == (60, 30, [60, 30])
    assert got["root_id"] == result.id and got["parent_id"] is None
    assert got["group"] is None and got["taskset"] is None and got["retries"] == 0
    assert not got["is_eager"] and not got["called_directly"]
    assert (got["args"], got["kwargs"], got["ignore_result"]) == ([1], {}, False)
    assert got["replaced_task_nesting"] == 0
    assert {"correlation_id", "reply_to", "delivery_mode"} <= set(got["properties"])
    assert got["custom"] == "yes" and got["get"] == [0, "default"]


def test_an_eager_request_is_filled_in_as_celery_fills_it(app: App) -> None:
    @app.task(bind=True, time_limit=9)
    def fields(self: Task) -> Any:
        return self.request

    request = fields.apply(headers={"x": 1}, priority=3, ignore_result=True).get()
    assert request.task == fields.name and request.is_eager and not request.called_directly
    assert request.timelimit == (9, None) and request.time_limit == 9
    assert request.headers == {"x": 1} and request.ignore_result is True
    assert request.delivery_info == {
        "is_eager": True,
        "exchange": None,
        "routing_key": None,
        "priority": 3,
    }


def test_a_request_pickles_with_its_properties() -> None:
    headers, properties, body = task_message(
        task_id="i", name="t", origin="o", reply_to="r", extra_headers={"x": 1}
    )
    request = decode_request(headers, {**properties, "custom": "p"}, {"routing_key": "q"}, body)
    copy = pickle.loads(pickle.dumps(request))
    assert copy.properties == {**properties, "custom": "p"} and copy.headers["x"] == 1
    assert (copy.task, copy.id, copy.reply_to, copy.delivery_info) == (
        "t",
        "i",
        "r",
        request.delivery_info,
    )


def test_after_return_follows_success_and_failure_only_as_in_celery(app: App) -> None:
    returns: list[str] = []

    class Recording(Task):
        def on_success(self, retval: Any, *args: Any) -> None:
            returns.append("on_success")

        def after_return(self, status: str, *args: Any) -> None:
            returns.append(status)

    @app.task(base=Recording, bind=True, max_retries=1)
    def job(self: Task, how: str) -> None:
        if how == "retry" and not self.request.retries:
            raise self.retry(countdown=0)
        if how == "fail":
            raise ValueError(how)
        if how == "ignore":  # as a task replaced in a worker ends
            raise Ignore()

    job.apply(("ok",))
    job.apply(("fail",))
    job.apply(("ignore",))
    job.apply(("retry",))  # eager: the retry runs at once, then succeeds
    assert returns == ["on_success", "SUCCESS", "FAILURE", "on_success", "SUCCESS"]
    assert Recording.has_on_success and Recording.has_after_return
    assert not (Task.has_on_success or ContextTask.has_on_success)


def test_a_retry_at_once_never_hides_the_last_runs_result(app: App, run_worker: Any) -> None:
    # the next run may finish before this run's outcome is stored with the worker's batch; a
    # RETRY stored after it would leave the task in RETRY for ever
    @app.task(bind=True, autoretry_for=(KeyError,), retry_kwargs={"countdown": 0}, max_retries=2)
    def always(self: Task, n: int) -> None:
        raise KeyError(n)

    run_worker(app, "threads")
    for n in range(10):  # one at a time: the last run alone stores where it ran, at once
        result = always.delay(n)
        with pytest.raises(KeyError):
            result.get(timeout=10)
        assert app.AsyncResult(result.id).state == "FAILURE"
