"""Tests of the patched worker (`kernel start -P NAME`) on real servers.

Green concurrency, limits, warm shutdown, autoscaling; and the plugin's contract tests again
in a patched pytest."""

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
from kernel.testing.processes import WorkerProcess

from .contracts import contract_tests

REDIS = "redis://127.0.0.1:6379/14"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
TASKS = 1000
StartWorker = Callable[..., WorkerProcess]


def _delete_amqp_queue(name: str) -> None:
    from kombu.connection import Connection

    with Connection(AMQP, connect_timeout=5) as conn:
        channel = conn.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


def _environ(broker: str, queue: str) -> dict[str, str]:
    return {"GREEN_BROKER": broker, "GREEN_BACKEND": REDIS, "GREEN_QUEUE": queue}


class GreenWorkerTests:
    """Give the `green_pool` fixture; the pool's contract tests are in the module
    test_NAME_contract.py beside the subclass's."""

    @pytest.fixture(scope="class")
    @classmethod
    def start_worker(
        cls, green_pool: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[StartWorker]:
        """`start_worker({"GREEN_BROKER": ..., ...}, "-c", "1000")`; stopped after the class."""
        started: list[WorkerProcess] = []

        def start(environ: dict[str, str], *args: str) -> WorkerProcess:
            worker = WorkerProcess(
                *("-A", "kernel_pool_green.testing.tasks", "-P", green_pool, *args),
                cwd=tmp_path_factory.mktemp("worker"),
                env=environ,
            )
            started.append(worker)
            worker.wait_for(" ready", 30)
            return worker

        yield start
        for worker in started:
            worker.stop()

    @pytest.fixture(scope="class", params=["redis", "amqp"])
    @classmethod
    def client(cls, request: Any, green_pool: str, start_worker: StartWorker) -> Iterator[App]:
        """A worker with 1,000 green threads consuming a fresh queue, and an app sending to it."""
        require_server("Redis", "127.0.0.1", 6379)  # the result backend, on either broker
        if request.param == "amqp":
            require_server("RabbitMQ", "127.0.0.1", 5672)
            pytest.importorskip("kernel_broker_amqp", reason="the amqp plugin is not installed")
        broker = REDIS if request.param == "redis" else AMQP
        queue = f"green-{green_pool}-{uuid.uuid4().hex[:10]}"
        worker = start_worker(_environ(broker, queue), "-c", str(TASKS))
        app = App("client", broker=broker, backend=REDIS, task_default_queue=queue)
        yield app
        app.close()
        if request.param == "amqp":
            worker.stop()  # first: a consuming worker would declare the queue again
            _delete_amqp_queue(queue)

    def test_the_worker_runs_patched(self, client: App, green_pool: str) -> None:
        origins = client.send_task("green_tasks.patched").get(timeout=20)
        assert [origin.split(".")[0] for origin in origins] == [green_pool, green_pool], origins

    def test_a_thousand_one_second_sleeps_take_seconds_not_minutes(self, client: App) -> None:
        began = time.monotonic()
        results = [client.send_task("green_tasks.nap", (1,)) for _ in range(TASKS)]
        assert [r.get(timeout=60) for r in results] == [1] * TASKS
        assert time.monotonic() - began < 15

    def test_the_soft_limit_raises_inside_the_task(self, client: App) -> None:
        began = time.monotonic()
        assert client.send_task("green_tasks.patient").get(timeout=20) == "caught the soft limit"
        assert time.monotonic() - began < 5

    def test_the_hard_limit_kills_the_task(self, client: App) -> None:
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

    def test_a_warm_shutdown_lets_running_tasks_finish(
        self, start_worker: StartWorker, green_pool: str
    ) -> None:
        require_server("Redis", "127.0.0.1", 6379)
        queue = f"green-{green_pool}-{uuid.uuid4().hex[:10]}"
        worker = start_worker(_environ(REDIS, queue))
        app = App("client", broker=REDIS, backend=REDIS, task_default_queue=queue)
        try:
            results = [app.send_task("green_tasks.nap", (1,)) for _ in range(20)]
            time.sleep(0.5)  # running by now
            assert worker.stop() == 0, worker.log
            assert [r.get(timeout=5) for r in results] == [1] * 20
        finally:
            app.close()

    def test_the_contracts_pass_in_a_patched_pytest(
        self, green_pool: str, request: pytest.FixtureRequest
    ) -> None:
        """The plugin's contract module again, in a pytest patched as `kernel start` patches."""
        contract = Path(request.path).with_name(f"test_{green_pool}_contract.py")
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from kernel.testing.patching import patch_for; "
                f"assert patch_for(['-P', {green_pool!r}]) == 'pool.{green_pool}'; "
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
            timeout=300,
        )
        report = run.stdout + run.stderr
        assert run.returncode == 0, report
        passed = re.search(r"(\d+) passed", report)
        assert passed is not None and int(passed.group(1)) >= contract_tests(), report
        assert "skipped" not in report, report

    def test_autoscale_grows_to_max_under_a_burst_and_back_to_min(
        self, start_worker: StartWorker, green_pool: str
    ) -> None:
        require_server("Redis", "127.0.0.1", 6379)
        queue = f"green-{green_pool}-scale-{uuid.uuid4().hex[:10]}"
        worker = start_worker(
            _environ(REDIS, queue),
            *("--plugin", "autoscale", "--autoscale", "50,2"),
            *("-s", "worker_autoscale_keepalive=1", "-s", "worker_autoscale_interval=0.2"),
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
