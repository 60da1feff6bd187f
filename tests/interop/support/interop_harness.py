"""Running workers of either kind as subprocesses, and waiting on what they do."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celery.exceptions
import redis
from interop_apps import Deployment, results_db
from kombu.connection import Connection

import kernel.wire.exceptions
from kernel.testing.processes import WorkerProcess

SUPPORT = Path(__file__).parent
HOST = "127.0.0.1"
REDIS_PORT, AMQP_PORT = 6379, 5672
RESULT_TIMEOUT = 10.0

WORKER_ONLY_ERRORS = '''"""An exception only the worker can import: clients build a stand-in."""


class WorkerOnlyError(Exception):
    pass
'''


@dataclass(frozen=True)
class Broker:
    """A broker both sides use, and which priority it serves first."""

    name: str
    url: str
    urgent: int
    lazy: int


BROKERS = {
    # kombu's Redis transport serves priority 0 first (its lists are taken 0, 3, 6, 9)
    "redis": Broker("redis", f"redis://{HOST}:{REDIS_PORT}/12", urgent=0, lazy=9),
    # RabbitMQ serves the highest priority first (the queue needs x-max-priority)
    "amqp": Broker("amqp", f"amqp://guest:guest@{HOST}:{AMQP_PORT}//", urgent=9, lazy=0),
}


def new_queue() -> str:
    return f"interop-{uuid.uuid4().hex[:12]}"


def new_key(what: str) -> str:
    return f"interop:{what}:{uuid.uuid4().hex}"


def forget_queue(broker: Broker, queue: str) -> None:
    """Delete what declaring and using the queue left on the broker."""
    if broker.name == "redis":
        client = redis.Redis.from_url(broker.url)
        # the queue's priority lists and its kombu binding sets all contain its (unique) name
        keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        return
    with Connection(broker.url, connect_timeout=5) as conn:
        channel = conn.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)
        channel.close()


class InteropWorker(WorkerProcess):
    """A worker (ours or Celery's, by `argv`) with the interop support modules importable."""

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        node: str,
        crash_marker: str | None = None,
    ) -> None:
        path = os.pathsep.join([str(cwd), str(SUPPORT)])
        super().__init__(cwd=cwd, env={"PYTHONPATH": path}, command=argv)
        self.node = node
        # a line that means the worker itself broke (not a task): fail at once, not on timeout
        self.crash_marker = crash_marker
        self.wait_for(" ready", timeout=30)

    def tail(self, lines: int = 60) -> str:
        return "".join(self.lines[-lines:])

    def get(self, result: Any, timeout: float = RESULT_TIMEOUT, propagate: bool = True) -> Any:
        """`result.get()`, failing with the worker's log when the worker breaks or is silent."""
        start = len(self.lines)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return result.get(timeout=0.5, propagate=propagate)
            except (celery.exceptions.TimeoutError, kernel.wire.exceptions.TimeoutError):
                pass
            broke = self.crash_marker is not None and any(
                self.crash_marker in line for line in self.lines[start:]
            )
            if broke or self.proc.poll() is not None or time.monotonic() > deadline:
                why = "worker failed" if broke or self.proc.poll() is not None else "timed out"
                raise AssertionError(
                    f"no result for task {result.id} ({why}); worker log:\n{self.tail()}"
                )


def _write_app(directory: Path, line: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "worker_only_errors.py").write_text(WORKER_ONLY_ERRORS)
    (directory / "worker_app.py").write_text(f"from interop_apps import *\n\n{line}\n")


def node_name() -> str:
    # unique per worker: tests check the `worker` field of stored results against it
    return f"interop-{uuid.uuid4().hex[:8]}@{os.uname().nodename}"


def start_kernel_worker(deployment: Deployment, directory: Path) -> InteropWorker:
    """`kernel start` with the solo pool: one task at a time, in the order the broker gives."""
    _write_app(directory, f"app = kernel_app({deployment!r})")
    node = node_name()
    argv = [sys.executable, "-m", "kernel", "start", "-A", "worker_app:app", "-P", "solo"]
    argv += ["-n", node, "-l", "info"]
    # our worker logs a traceback only for its own errors; task failures take one line
    return InteropWorker(argv, directory, node, crash_marker="Traceback (most recent call last)")


def start_celery_worker(deployment: Deployment, directory: Path) -> InteropWorker:
    """`celery worker` with one thread, prefetching one message, without mingle and gossip.

    Not `-P solo`: a solo worker prefetching one message on RabbitMQ leaves the next message
    waiting for its event loop's next timer (seconds), whoever sent it."""
    _write_app(directory, f"app = celery_app({deployment!r})")
    argv = [sys.executable, "-m", "celery", "-A", "worker_app", "worker", "-P", "threads"]
    argv += ["-c", "1", "--prefetch-multiplier", "1", "-Q", deployment.queue]
    # Heartbeats stay on: without them a warm shutdown on RabbitMQ takes about 10 s.
    node = node_name()
    argv += ["--without-mingle", "--without-gossip", "-n", node, "-l", "info"]
    return InteropWorker(argv, directory, node)


def wait_for_trace(key: str, timeout: float = RESULT_TIMEOUT) -> Any:
    """The JSON value a task stored under `key` (see `remember`)."""
    deadline = time.monotonic() + timeout
    while (raw := results_db().get(key)) is None:
        assert time.monotonic() < deadline, f"nothing stored under {key} in {timeout}s"
        time.sleep(0.02)
    return json.loads(raw)


def wait_for_records(key: str, count: int, timeout: float = RESULT_TIMEOUT) -> list[str]:
    """The tags `record` tasks appended to `key`, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while (found := results_db().llen(key)) < count:
        assert time.monotonic() < deadline, f"only {found} of {count} records in {timeout}s"
        time.sleep(0.02)
    return [
        tag.decode() if isinstance(tag, bytes) else str(tag)
        for tag in results_db().lrange(key, 0, -1)
    ]


def raw_meta(task_id: str) -> dict[str, Any]:
    """The meta document as stored in the results db, keys in their stored order."""
    raw = results_db().get(f"celery-task-meta-{task_id}")
    assert raw is not None, f"no meta stored for {task_id}"
    meta: dict[str, Any] = json.loads(raw)
    return meta


def wait_for_state(result: Any, state: str, timeout: float = RESULT_TIMEOUT) -> None:
    """Poll `result.state` (Celery's AsyncResult or ours) until it is `state`."""
    deadline = time.monotonic() + timeout
    while (seen := result.state) != state:
        assert time.monotonic() < deadline, f"task {result.id} still {seen}, not {state}"
        time.sleep(0.02)
