"""Result metas in the Redis backend, both ways: what our worker stores, Celery's AsyncResult
reads; what a Celery worker stores, ours reads; and both store the same document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import celery.exceptions
import pytest
from celery import Celery
from interop_apps import (
    RESULTS_URL,
    RETRY_DELAY,
    Deployment,
    InteropError,
    celery_app,
    kernel_app,
)
from interop_harness import (
    Broker,
    InteropWorker,
    forget_queue,
    new_queue,
    raw_meta,
    start_celery_worker,
    start_kernel_worker,
    wait_for_state,
)

from kernel import App
from kernel.wire.exceptions import TaskRevokedError

# Fields that name the task, its worker and its moment, so differ between two runs.
RUN_FIELDS = ("date_done", "worker", "queue", "traceback")


@pytest.fixture(scope="module")
def backend() -> str:
    # metas are documents in the Redis backend (rpc:// sends the same ones as messages)
    return RESULTS_URL


@pytest.fixture(scope="module")
def celery_queue(broker: Broker) -> Iterator[str]:
    name = new_queue()
    yield name
    forget_queue(broker, name)


@pytest.fixture(scope="module")
def our_worker(
    broker: Broker, queue: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InteropWorker]:
    deployment = Deployment(broker.url, RESULTS_URL, queue, extended=True)
    worker = start_kernel_worker(deployment, tmp_path_factory.mktemp("kernel-worker"))
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def celery_worker(
    broker: Broker, celery_queue: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InteropWorker]:
    deployment = Deployment(broker.url, RESULTS_URL, celery_queue, extended=True)
    worker = start_celery_worker(deployment, tmp_path_factory.mktemp("celery-worker"))
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def celery_client(broker: Broker, queue: str, our_worker: InteropWorker) -> Iterator[Celery]:
    """Sends to our worker and reads what it stores."""
    app = celery_app(Deployment(broker.url, RESULTS_URL, queue, extended=True))
    yield app
    app.close()


@pytest.fixture(scope="module")
def our_client(broker: Broker, celery_queue: str, celery_worker: InteropWorker) -> Iterator[App]:
    """Sends to the Celery worker and reads what it stores."""
    app = kernel_app(Deployment(broker.url, RESULTS_URL, celery_queue, extended=True))
    yield app
    app.close()


def recent(date_done: datetime | str | None) -> bool:
    """A UTC time with an offset, within the last minute (Celery parses it, ours keeps text)."""
    assert date_done is not None
    when = date_done if isinstance(date_done, datetime) else datetime.fromisoformat(date_done)
    assert when.utcoffset() == timedelta(0)
    return timedelta(0) <= datetime.now(timezone.utc) - when < timedelta(minutes=1)


def comparable(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """The meta's fields in order, the task's own id replaced and run-specific values dropped."""
    text = json.dumps(meta).replace(meta["task_id"], "<id>")
    return [(k, None if k in RUN_FIELDS else v) for k, v in json.loads(text).items()]


def test_success(
    celery_client: Celery,
    our_client: App,
    our_worker: InteropWorker,
    celery_worker: InteropWorker,
    queue: str,
) -> None:
    ours = celery_client.send_task("interop.add", (2, 3))
    theirs = our_client.send_task("interop.add", (2, 3))
    assert our_worker.get(ours) == 5 and celery_worker.get(theirs) == 5
    # Celery reads what our worker stored, result_extended fields too
    assert (ours.state, ours.result, ours.traceback) == ("SUCCESS", 5, None)
    assert recent(ours.date_done)
    assert (ours.name, ours.args, ours.kwargs, ours.retries) == ("interop.add", [2, 3], {}, 0)
    assert (ours.worker, ours.queue) == (our_worker.node, queue)
    # ours reads what the Celery worker stored
    assert (theirs.state, theirs.result, theirs.traceback) == ("SUCCESS", 5, None)
    assert recent(theirs.date_done)
    assert comparable(raw_meta(ours.id)) == comparable(raw_meta(theirs.id))


def test_failure(
    celery_client: Celery,
    our_client: App,
    our_worker: InteropWorker,
    celery_worker: InteropWorker,
) -> None:
    ours = celery_client.send_task("interop.fail_custom", ("boom", 7))
    theirs = our_client.send_task("interop.fail_custom", ("boom", 7))
    for result, worker in ((ours, our_worker), (theirs, celery_worker)):
        assert worker.get(result, propagate=False) is not None
        assert result.state == "FAILURE" and result.failed()
        assert type(result.result) is InteropError and result.result.args == ("boom", 7)
        # a formatted traceback ending in the task's own line and the exception
        assert (result.traceback or "").endswith(
            "raise InteropError(message, code)\ninterop_apps.InteropError: ('boom', 7)\n"
        )
        assert recent(result.date_done)
    assert comparable(raw_meta(ours.id)) == comparable(raw_meta(theirs.id))


def test_retry(
    celery_client: Celery,
    our_client: App,
    our_worker: InteropWorker,
    celery_worker: InteropWorker,
) -> None:
    ours = celery_client.send_task("interop.retry_once", (3,))
    theirs = our_client.send_task("interop.retry_once", (3,))
    stored = {}
    # read while the retry waits for its countdown; the task succeeds afterwards
    for result in (ours, theirs):
        wait_for_state(result, "RETRY")
        stored[result.id] = raw_meta(result.id)
        assert type(result.result) is InteropError and result.result.args == ("again", 3)
        assert f"Retry in {RETRY_DELAY}s: InteropError('again', 3)" in (result.traceback or "")
        assert result.date_done is None
    assert stored[ours.id]["children"] == [[[ours.id, None], None]]  # the re-sent message
    assert comparable(stored[ours.id]) == comparable(stored[theirs.id])
    assert our_worker.get(ours) == "retried 1" and celery_worker.get(theirs) == "retried 1"
    assert ours.retries == 1
    assert comparable(raw_meta(ours.id)) == comparable(raw_meta(theirs.id))


@dataclass
class Pair:
    ours: Any  # stored by our worker, read by Celery's AsyncResult
    theirs: Any  # stored by the Celery worker, read by ours


@dataclass
class StartedThenRevoked:
    started: Pair
    # what each reader saw while its task ran: task id -> (state, info, stored meta)
    seen: dict[str, tuple[str, Any, dict[str, Any]]]
    revoked: Pair


@pytest.fixture(scope="module")
def started_then_revoked(
    celery_client: Celery,
    our_client: App,
    our_worker: InteropWorker,
    celery_worker: InteropWorker,
) -> StartedThenRevoked:
    """On each side a task tracked as started, then one that expires before it is due; run
    together, since each waits a second or two."""
    revoked = Pair(
        celery_client.send_task("interop.add", (1, 1), countdown=2, expires=1),
        our_client.send_task("interop.add", (1, 1), countdown=2, expires=1),
    )
    started = Pair(
        celery_client.send_task("interop.slow", (1.0,)),
        our_client.send_task("interop.slow", (1.0,)),
    )
    seen = {}
    for result in (started.ours, started.theirs):
        wait_for_state(result, "STARTED")
        seen[result.id] = (result.state, result.info, raw_meta(result.id))
    assert our_worker.get(started.ours) == 1.0 and celery_worker.get(started.theirs) == 1.0
    our_worker.get(revoked.ours, propagate=False)
    celery_worker.get(revoked.theirs, propagate=False)
    return StartedThenRevoked(started, seen, revoked)


def test_started(started_then_revoked: StartedThenRevoked, our_worker: InteropWorker) -> None:
    run = started_then_revoked
    state, info, _ = run.seen[run.started.ours.id]
    assert state == "STARTED" and info["hostname"] == our_worker.node  # as Celery reads ours
    state, info, _ = run.seen[run.started.theirs.id]
    assert state == "STARTED" and isinstance(info["pid"], int)  # as ours reads Celery's


def test_revoked(started_then_revoked: StartedThenRevoked) -> None:
    ours, theirs = started_then_revoked.revoked.ours, started_then_revoked.revoked.theirs
    assert ours.state == "REVOKED" and theirs.state == "REVOKED"
    assert type(ours.result) is celery.exceptions.TaskRevokedError
    assert type(theirs.result) is TaskRevokedError
    for result in (ours, theirs):
        assert str(result.result) == "expired" and result.traceback is None
        assert recent(result.date_done)


def test_started_and_revoked_metas_match_celerys(started_then_revoked: StartedThenRevoked) -> None:
    run = started_then_revoked
    revoked = run.revoked
    assert comparable(raw_meta(revoked.ours.id)) == comparable(raw_meta(revoked.theirs.id))
    ours, theirs = run.seen[run.started.ours.id][2], run.seen[run.started.theirs.id][2]
    assert list(ours) == list(theirs) and isinstance(ours["result"]["pid"], int)
