"""The Redis result backend passes the contract and keeps Celery's layout."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from kernel import App
from kernel.plugin import SUCCESS, Stored, result_meta
from kernel.testing.contracts import BackendContract
from kernel.testing.helpers import require_server

URL = "redis://127.0.0.1:6379/8"


@pytest.fixture
def redis_up() -> None:
    require_server("Redis", "127.0.0.1", 6379)


@pytest.mark.usefixtures("redis_up")
class TestRedisBackend(BackendContract):
    @pytest.fixture
    def backend_url(self) -> str:
        return URL


@pytest.mark.usefixtures("redis_up")
def test_layout_is_celerys_setex_and_publish() -> None:
    app = App(broker="memory://", backend=URL)
    task_id = str(uuid.uuid4())
    backend = app.backend
    client = redis.Redis.from_url(URL)
    pubsub = client.pubsub()
    pubsub.subscribe(f"celery-task-meta-{task_id}")
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    data = backend.encode(result_meta(task_id, SUCCESS, 5))
    backend.store([Stored(task_id, SUCCESS, data)])
    stored = client.get(f"celery-task-meta-{task_id}")
    assert json.loads(stored)["result"] == 5
    assert 86000 < client.ttl(f"celery-task-meta-{task_id}") <= 86400
    message = pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == stored


@pytest.mark.usefixtures("redis_up")
def test_key_prefix_as_celery_joins_it() -> None:
    app = App(
        broker="memory://",
        backend=URL,
        result_backend_transport_options={"global_keyprefix": "tenant"},
    )
    task_id = str(uuid.uuid4())
    app.backend.store(
        [Stored(task_id, SUCCESS, app.backend.encode(result_meta(task_id, SUCCESS, 1)))]
    )
    assert redis.Redis.from_url(URL).exists(f"tenant_celery-task-meta-{task_id}")


def test_unreachable_server_is_one_line_naming_host_and_port() -> None:
    from kernel.plugin import BackendError

    app = App(
        broker="memory://",
        backend="redis://127.0.0.1:1/0",
        result_backend_transport_options={"retry_policy": {"max_retries": 0}},
    )
    with pytest.raises(BackendError) as info:
        app.AsyncResult("x").state  # noqa: B018
    assert "127.0.0.1:1" in str(info.value) and "\n" not in str(info.value)


def _store(app: App, value: int) -> str:
    task_id = str(uuid.uuid4())
    data = app.backend.encode(result_meta(task_id, SUCCESS, value))
    app.backend.store([Stored(task_id, SUCCESS, data)])
    return task_id


@pytest.mark.usefixtures("redis_up")
def test_results_are_stored_after_the_server_forgets_its_scripts() -> None:
    app = App(broker="memory://", backend=URL)
    first = _store(app, 1)
    redis.Redis.from_url(URL).script_flush()  # as a restart does
    second = _store(app, 2)
    assert [app.backend.get(t)["result"] for t in (first, second)] == [1, 2]


def _store_port(app: App) -> int:
    """The local port of the connection the backend stored with last."""
    return int(app.backend._idle[-1]._sock.getsockname()[1])


@pytest.mark.usefixtures("redis_up")
def test_a_forked_child_and_its_parent_store_at_once() -> None:
    # as a prefork child stores a lone task's result while the worker stores a batch: each
    # process must use connections of its own, or their replies could cross
    import os

    app = App(broker="memory://", backend=URL)
    _store(app, 0)
    parent_port = _store_port(app)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        report = b"0"
        try:
            ids = [_store(app, n) for n in range(300)]
            if [app.backend.get(t)["result"] for t in ids] == list(range(300)):
                report = str(_store_port(app)).encode()
        finally:
            os.write(write_end, report)
            os._exit(0)
    os.close(write_end)
    ids = [_store(app, n) for n in range(300)]
    child_port = int(os.read(read_end, 100))
    os.waitpid(pid, 0)
    assert child_port not in (0, parent_port)
    assert [app.backend.get(t)["result"] for t in ids] == list(range(300))
    assert _store_port(app) == parent_port  # the parent's connection lives on


@pytest.mark.usefixtures("redis_up")
def test_a_child_forked_while_a_parent_thread_stores_can_store() -> None:
    # a pool child forked at the moment one of the worker's threads held the store lock
    import os
    import select
    import signal

    app = App(broker="memory://", backend=URL)
    _store(app, 0)
    read_end, write_end = os.pipe()
    with app.backend._store_lock:  # held by "another thread" across the fork
        pid = os.fork()
        if pid == 0:
            try:
                task_id = _store(app, 7)
                os.write(write_end, b"1" if app.backend.get(task_id)["result"] == 7 else b"0")
            finally:
                os._exit(0)
    os.close(write_end)
    answered = select.select([read_end], [], [], 10)[0]
    if not answered:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert answered and os.read(read_end, 1) == b"1"
