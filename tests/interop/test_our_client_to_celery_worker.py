"""Our client (`kernel.App`) sends tasks to a real `celery worker` and reads the results."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from interop_apps import Deployment, InteropError, kernel_app, results_db
from interop_harness import (
    Broker,
    InteropWorker,
    new_key,
    start_celery_worker,
    wait_for_records,
    wait_for_trace,
)

from kernel import App
from kernel.wire.exceptions import NotRegistered, TaskRevokedError
from kernel.wire.protocol import new_id


@pytest.fixture(scope="module")
def deployment(broker: Broker, backend: str, queue: str) -> Deployment:
    # On RabbitMQ priorities need x-max-priority on the queue, declared alike by both sides:
    # a queue declared again with other arguments is refused.
    return Deployment(broker.url, backend, queue, max_priority=9 if broker.name == "amqp" else None)


@pytest.fixture(scope="module")
def worker(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InteropWorker]:
    worker = start_celery_worker(deployment, tmp_path_factory.mktemp("celery-worker"))
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def client(deployment: Deployment, worker: InteropWorker) -> Iterator[App]:
    app = kernel_app(deployment)
    yield app
    app.close()


def test_send_task_by_name(client: App, worker: InteropWorker) -> None:
    result = client.send_task("interop.add", (2, 3))
    assert worker.get(result) == 5
    assert result.state == "SUCCESS"


def test_a_result_sent_before_the_client_reads_is_kept(
    deployment: Deployment, worker: InteropWorker
) -> None:
    # A fresh client whose first task is answered before it asks: over rpc:// its reply
    # queue must already exist (a Celery worker does not declare it; the broker would drop
    # the reply), so the client declares it when it sends, as Celery clients do.
    client = kernel_app(deployment)
    try:
        result = client.send_task("interop.add", (20, 22))
        time.sleep(0.5)
        assert worker.get(result) == 42
    finally:
        client.close()


def test_apply_async_with_args_and_kwargs(client: App, worker: InteropWorker) -> None:
    combine = client.tasks["interop.combine"]
    assert worker.get(combine.apply_async(("a", "b"), {"sep": "+", "upper": True})) == "A+B"
    by_name = client.send_task("interop.combine", kwargs={"a": "x", "b": "y"})
    assert worker.get(by_name) == "x-y"


def test_priority_reaches_the_task(client: App, worker: InteropWorker) -> None:
    result = client.tasks["interop.seen_priority"].apply_async(priority=7)
    assert worker.get(result) == 7


def test_urgent_tasks_overtake_a_backlog(
    client: App, worker: InteropWorker, broker: Broker
) -> None:
    order, started = new_key("order"), new_key("started")
    client.send_task("interop.block", (started, 1.0), priority=broker.urgent)
    wait_for_trace(started)
    # The worker may take one more message while the blocker runs; the rest wait in the
    # broker, which must hand them over most urgent first, each priority in order.
    client.send_task("interop.record", ("filler", order), priority=broker.lazy)
    time.sleep(0.2)
    for n in range(3):
        client.send_task("interop.record", (f"lazy{n}", order), priority=broker.lazy)
    for n in range(3):
        client.send_task("interop.record", (f"urgent{n}", order), priority=broker.urgent)
    ran = wait_for_records(order, 7)
    ran.remove("filler")
    assert ran == ["urgent0", "urgent1", "urgent2", "lazy0", "lazy1", "lazy2"]


def test_countdown_is_honoured(client: App, worker: InteropWorker) -> None:
    sent = time.time()
    ran = worker.get(client.tasks["interop.clock"].apply_async(countdown=1.5))
    assert sent + 1.5 - 0.02 <= ran < sent + 4.5


def test_expired_task_is_revoked_not_run(client: App, worker: InteropWorker) -> None:
    key = new_key("expired")
    # due after it expires: the worker takes it at once, holds it, and must revoke it
    result = client.tasks["interop.remember"].apply_async((1, key), countdown=2, expires=1)
    with pytest.raises(TaskRevokedError, match="expired"):
        worker.get(result)
    assert result.state == "REVOKED"
    assert results_db().get(key) is None


def test_link_callback_runs_on_the_celery_worker(client: App, worker: InteropWorker) -> None:
    key, callback_id = new_key("linked"), new_id()
    # an id and a reply_to in the signature's options, as Celery's freeze() sets them, so the
    # callback's result reaches this client over rpc:// too
    link = client.tasks["interop.remember"].s(key).set(task_id=callback_id, reply_to=client.oid)
    result = client.tasks["interop.add"].apply_async((2, 3), link=link)
    assert worker.get(result) == 5
    assert wait_for_trace(key) == 5  # the callback got the parent's return value first
    assert worker.get(client.AsyncResult(callback_id)) == 5


def test_builtin_exception_is_reraised(client: App, worker: InteropWorker) -> None:
    result = client.send_task("interop.fail", ("bad value 7",))
    with pytest.raises(ValueError, match="bad value 7"):
        worker.get(result)
    assert result.state == "FAILURE"
    assert "ValueError: bad value 7" in (result.traceback or "")


def test_custom_exception_is_reraised_as_its_class(client: App, worker: InteropWorker) -> None:
    result = client.tasks["interop.fail_custom"].apply_async(("boom", 7))
    with pytest.raises(InteropError) as raised:
        worker.get(result)
    assert type(raised.value) is InteropError
    assert raised.value.args == ("boom", 7)


def test_unimportable_exception_gets_a_same_named_stand_in(
    client: App, worker: InteropWorker
) -> None:
    result = client.send_task("interop.fail_hidden", ("hidden",))
    with pytest.raises(Exception) as raised:
        worker.get(result)
    stand_in = type(raised.value)
    assert (stand_in.__module__, stand_in.__name__) == ("worker_only_errors", "WorkerOnlyError")
    assert raised.value.args == ("hidden",)


def test_unknown_task_fails_as_not_registered(client: App, worker: InteropWorker) -> None:
    result = client.send_task("interop.no_such_task", (1,))
    with pytest.raises(NotRegistered):
        worker.get(result)
