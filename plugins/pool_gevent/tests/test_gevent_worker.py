"""The patched worker (`kernel start -P gevent`) on real servers: green concurrency, limits,
warm shutdown; and the pool contracts again in a gevent-patched pytest."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kernel import App
from kernel.plugin import TimeLimitExceeded
from kernel.testing.helpers import require_server

REDIS = "redis://127.0.0.1:6379/14"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
TASKS = 1000


def _delete_amqp_queue(name: str) -> None:
    from kombu.connection import Connection

    with Connection(AMQP, connect_timeout=5) as conn:
        channel = conn.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def client(request: Any, start_worker: Callable[..., Any]) -> Iterator[App]:
    """A worker with 1,000 greenlets consuming a fresh queue, and an app that sends to it."""
    require_server("Redis", "127.0.0.1", 6379)  # the result backend, on either broker
    if request.param == "amqp":
        require_server("RabbitMQ", "127.0.0.1", 5672)
        pytest.importorskip("kernel_broker_amqp", reason="the amqp broker plugin is not installed")
    broker = REDIS if request.param == "redis" else AMQP
    queue = f"green-gevent-{uuid.uuid4().hex[:10]}"
    worker = start_worker(
        {"GREEN_BROKER": broker, "GREEN_BACKEND": REDIS, "GREEN_QUEUE": queue}, "-c", str(TASKS)
    )
    app = App("client", broker=broker, backend=REDIS, task_default_queue=queue)
    yield app
    app.close()
    if request.param == "amqp":
        worker.stop()  # first: a consuming worker would declare the queue again
        _delete_amqp_queue(queue)


def test_the_worker_runs_patched(client: App) -> None:
    assert client.send_task("green_tasks.patched").get(timeout=20) is True


def test_a_thousand_one_second_sleeps_take_seconds_not_minutes(client: App) -> None:
    began = time.monotonic()
    results = [client.send_task("green_tasks.nap", (1,)) for _ in range(TASKS)]
    assert [r.get(timeout=60) for r in results] == [1] * TASKS
    assert time.monotonic() - began < 15


def test_the_soft_limit_raises_inside_the_task(client: App) -> None:
    began = time.monotonic()
    assert client.send_task("green_tasks.patient").get(timeout=20) == "caught the soft limit"
    assert time.monotonic() - began < 5


def test_the_hard_limit_kills_the_task(client: App) -> None:
    key = f"green-laps-{uuid.uuid4().hex}"
    counters = redis.Redis.from_url(REDIS)
    began = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        client.send_task("green_tasks.endless", (key,)).get(timeout=20)
    assert time.monotonic() - began < 5
    laps = int(counters.get(key) or 0)
    time.sleep(0.3)
    assert int(counters.get(key) or 0) == laps > 0  # killed: it counts no more
    counters.delete(key)
    counters.close()


def test_a_warm_shutdown_lets_running_tasks_finish(start_worker: Callable[..., Any]) -> None:
    require_server("Redis", "127.0.0.1", 6379)
    queue = f"green-gevent-{uuid.uuid4().hex[:10]}"
    worker = start_worker({"GREEN_BROKER": REDIS, "GREEN_BACKEND": REDIS, "GREEN_QUEUE": queue})
    app = App("client", broker=REDIS, backend=REDIS, task_default_queue=queue)
    try:
        results = [app.send_task("green_tasks.nap", (1,)) for _ in range(20)]
        time.sleep(0.5)  # running by now
        assert worker.stop() == 0, worker.log
        assert [r.get(timeout=5) for r in results] == [1] * 20
    finally:
        app.close()


def test_the_contracts_pass_in_a_gevent_patched_pytest() -> None:
    """test_gevent_contract.py again, in a pytest patched the way `kernel start` patches."""
    contract = Path(__file__).with_name("test_gevent_contract.py")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from kernel.testing.patching import patch_for; "
            "assert patch_for(['-P', 'gevent']) == 'pool.gevent'; "
            "import pytest; sys.exit(pytest.main(sys.argv[1:]))",
            str(contract),
            "-q",
            "-p",
            "no:cacheprovider",
            # the launcher imported `kernel` before pytest could register it for rewriting
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    passed = re.search(r"(\d+) passed", report)
    assert passed is not None and int(passed.group(1)) == 8, report
    assert "skipped" not in report, report


def test_autoscale_grows_to_max_under_a_burst_and_back_to_min(
    start_worker: Callable[..., Any],
) -> None:
    require_server("Redis", "127.0.0.1", 6379)
    queue = f"green-gevent-scale-{uuid.uuid4().hex[:10]}"
    worker = start_worker(
        {"GREEN_BROKER": REDIS, "GREEN_BACKEND": REDIS, "GREEN_QUEUE": queue},
        "--plugin",
        "autoscale",
        "--autoscale",
        "50,2",
        "-s",
        "worker_autoscale_keepalive=1",
        "-s",
        "worker_autoscale_interval=0.2",
    )
    app = App("client", broker=REDIS, backend=REDIS, task_default_queue=queue)
    try:
        began = time.monotonic()
        results = [app.send_task("green_tasks.nap", (1,)) for _ in range(100)]
        for result in results:
            result.get(timeout=60)
        assert time.monotonic() - began < 10  # two green threads would need 50 s
        worker.wait_for("autoscale: pool grows", 5)
        assert re.search(r"autoscale: pool grows \d+ -> 50 ", worker.log), worker.log
        worker.wait_for("-> 2 (0 tasks held)", 20)  # idle: back to MIN
    finally:
        app.close()
