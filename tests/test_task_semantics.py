"""Task semantics as Celery has them, on a real worker: the request's fields (solo,
threads and prefork pools)."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel import App, Task, Worker
from kernel.testing.helpers import require_server
from kernel.wire.protocol import decode_request, task_message

POOLS = ["solo", "threads", "prefork"]


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
