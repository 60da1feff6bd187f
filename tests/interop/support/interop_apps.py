"""The same tasks, under the same names, as a taskkernel App and as a Celery app.

Workers import this module (from the module a test writes for them) and so do the tests, which
use the apps as clients: a Celery client sends to our worker, our client to a Celery worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from celery import Celery

from kernel import App

# The Redis db the interop tests keep to themselves for results. Tasks also leave traces
# there (a callback's value, the order tasks ran in), under keys unique to each test.
RESULTS_URL = "redis://127.0.0.1:6379/13"
# Both sides must agree: on RabbitMQ the rpc:// reply queue is declared with x-expires from it.
RESULT_EXPIRES = 600
RETRY_DELAY = 1.5


@dataclass(frozen=True)
class Deployment:
    """What a worker and the clients sending to it share."""

    broker: str
    backend: str
    queue: str
    max_priority: int | None = None  # x-max-priority of the queue (RabbitMQ)
    extended: bool = False  # result_extended


class InteropError(Exception):
    """A custom exception both the workers and the tests can import."""


@cache
def results_db() -> redis.Redis:
    return redis.Redis.from_url(RESULTS_URL)


# -- the tasks (bound ones take the task first, as Celery's `bind=True` passes it) ------------


def add(x: int, y: int) -> int:
    return x + y


def combine(a: str, b: str, *, sep: str = "-", upper: bool = False) -> str:
    joined = f"{a}{sep}{b}"
    return joined.upper() if upper else joined


def clock() -> float:
    return time.time()


def seen_priority(task: Any) -> Any:
    """The priority the worker saw on the message (both sides put it in delivery_info)."""
    return task.request.delivery_info.get("priority")


def fail(message: str) -> None:
    raise ValueError(message)


def fail_custom(message: str, code: int) -> None:
    raise InteropError(message, code)


def fail_hidden(message: str) -> None:
    # written next to the worker's app module only: a client cannot import it
    from worker_only_errors import WorkerOnlyError

    raise WorkerOnlyError(message)


def remember(value: Any, key: str) -> Any:
    results_db().set(key, json.dumps(value))
    return value


def record(tag: str, key: str) -> None:
    results_db().rpush(key, tag)


def block(key: str, seconds: float) -> None:
    results_db().set(key, json.dumps("started"))
    time.sleep(seconds)


def retry_once(task: Any, code: int) -> str:
    if task.request.retries == 0:
        raise task.retry(exc=InteropError("again", code), countdown=RETRY_DELAY)
    return f"retried {task.request.retries}"


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


TASKS: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
    ("interop.add", add, {}),
    ("interop.combine", combine, {}),
    ("interop.clock", clock, {}),
    ("interop.seen_priority", seen_priority, {"bind": True}),
    ("interop.fail", fail, {}),
    ("interop.fail_custom", fail_custom, {}),
    ("interop.fail_hidden", fail_hidden, {}),
    ("interop.remember", remember, {}),
    ("interop.record", record, {}),
    ("interop.block", block, {}),
    ("interop.retry_once", retry_once, {"bind": True, "max_retries": 1}),
    ("interop.slow", slow, {"track_started": True}),
]


def kernel_app(deployment: Deployment) -> App:
    settings: dict[str, Any] = {
        "task_default_queue": deployment.queue,
        "result_expires": RESULT_EXPIRES,
        "result_extended": deployment.extended,
        # one message at a time, so a backlog stays in the broker, ordered by priority
        "worker_prefetch_multiplier": 1,
        "task_queue_max_priority": deployment.max_priority,
    }
    app = App("interop", broker=deployment.broker, backend=deployment.backend, **settings)
    for name, function, options in TASKS:
        app.task(name=name, **options)(function)
    return app


def celery_app(deployment: Deployment) -> Celery:
    app = Celery("interop", broker=deployment.broker, backend=deployment.backend)
    app.conf.update(
        task_default_queue=deployment.queue,
        result_expires=RESULT_EXPIRES,
        result_extended=deployment.extended,
        task_queue_max_priority=deployment.max_priority,
        worker_prefetch_multiplier=1,
        # no remote control: no pidbox queue per worker left behind on the broker
        worker_enable_remote_control=False,
        broker_connection_retry_on_startup=True,
    )
    for name, function, options in TASKS:
        app.task(name=name, **options)(function)
    return app
