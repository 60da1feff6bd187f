"""Rate limits: per worker as Celery does them, across the cluster, and bad rates refused."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kernel_ratelimit import RATE_LIMITS
from kernel_ratelimit.limiters import TokenBuckets

from kernel import App, ConfigError, Worker
from kernel.testing.helpers import require_server


def _start(app: App, concurrency: int = 4, **settings: Any) -> Worker:
    worker = Worker(
        app=app,
        plugins=["ratelimit"],
        settings={"worker_pool": "threads", "worker_concurrency": concurrency, **settings},
    )
    worker.start()
    return worker


def test_token_bucket_has_no_burst_and_refills_at_the_rate() -> None:
    buckets = TokenBuckets()
    assert buckets.take("t", 10) == 0.0
    wait = buckets.take("t", 10)
    assert 0.09 < wait <= 0.1
    time.sleep(0.1)
    assert buckets.take("t", 10) == 0.0


def test_sixty_tasks_at_ten_per_second_take_six_seconds_while_others_run(tmp_path: Path) -> None:
    app = App("rl", broker=f"embedded:///{tmp_path}/b.db", backend=f"embedded:///{tmp_path}/r.db")
    ran: list[float] = []

    @app.task(rate_limit="10/s")
    def limited(n: int) -> int:
        ran.append(time.monotonic())
        return n

    @app.task
    def free(n: int) -> int:
        return n

    worker = _start(app)
    try:
        began = time.monotonic()
        slow = [limited.delay(i) for i in range(60)]
        fast = [free.delay(i) for i in range(60)]
        assert [r.get(timeout=20) for r in fast] == list(range(60))
        fast_done = time.monotonic() - began
        assert [r.get(timeout=30) for r in slow] == list(range(60))
        elapsed = time.monotonic() - began
    finally:
        worker.stop()
    assert fast_done < 2.0, fast_done  # other task types were not held up
    assert 5.5 <= elapsed < 8.0, elapsed
    gaps = [b - a for a, b in itertools.pairwise(ran)]
    assert min(gaps) > 0.07  # never two at once: capacity 1, as in Celery


def test_rate_changes_while_the_worker_runs(tmp_path: Path) -> None:
    app = App("rl", broker=f"embedded:///{tmp_path}/b.db", backend=f"embedded:///{tmp_path}/r.db")

    @app.task(rate_limit="1/s")
    def tick(n: int) -> int:
        return n

    worker = _start(app)
    try:
        limits = worker.services[RATE_LIMITS]
        limits.set_rate_limit(tick.name, "100/s")
        began = time.monotonic()
        assert [tick.delay(i).get(timeout=10) for i in range(10)] == list(range(10))
        assert time.monotonic() - began < 2  # at 1/s this would take 9 s
        with pytest.raises(ValueError, match=r"invalid rate limit '5 per second'.*10/s, 100/m"):
            limits.set_rate_limit(tick.name, "5 per second")
    finally:
        worker.stop()


def test_a_malformed_default_rate_is_refused_at_start_up() -> None:
    app = App("rl", broker="memory://", backend="memory://", task_default_rate_limit="10/sec")
    with pytest.raises(ConfigError) as info:
        Worker(app=app, plugins=["ratelimit"], settings={"worker_pool": "threads"}).build()
    message = str(info.value)
    assert "'10/sec'" in message and "10/s, 100/m, 1000/h" in message


def test_default_rate_applies_to_every_task(tmp_path: Path) -> None:
    app = App(
        "rl",
        broker=f"embedded:///{tmp_path}/b.db",
        backend=f"embedded:///{tmp_path}/r.db",
        task_default_rate_limit="20/s",
    )

    @app.task
    def plain(n: int) -> int:
        return n

    worker = _start(app)
    try:
        began = time.monotonic()
        assert [r.get(timeout=10) for r in [plain.delay(i) for i in range(21)]] == list(range(21))
        assert time.monotonic() - began >= 0.9
    finally:
        worker.stop()


def test_three_workers_share_one_cluster_budget() -> None:
    require_server("Redis", "127.0.0.1", 6379)
    queue = f"rl-{uuid.uuid4().hex[:8]}"
    app = App(
        "rl",
        broker="redis://127.0.0.1:6379/11",
        backend="redis://127.0.0.1:6379/12",
        task_default_queue=queue,
        rate_limit_scope="cluster",
    )
    name = f"rl.limited.{uuid.uuid4().hex[:8]}"  # a fresh budget key for this run

    @app.task(name=name, rate_limit="10/s")
    def limited(n: int) -> int:
        return n

    workers = [_start(app, concurrency=2) for _ in range(3)]
    try:
        began = time.monotonic()
        results = [limited.delay(i) for i in range(60)]
        assert sorted(r.get(timeout=30) for r in results) == list(range(60))
        elapsed = time.monotonic() - began
    finally:
        for worker in workers:
            worker.stop()
    assert 5.5 <= elapsed < 9.0, elapsed  # per-worker budgets would have taken about 2 s


def test_cluster_scope_needs_a_redis_url() -> None:
    app = App("rl", broker="memory://", backend="memory://", rate_limit_scope="cluster")
    worker = Worker(app=app, plugins=["ratelimit"], settings={"worker_pool": "threads"})
    with pytest.raises(Exception, match="rate_limit_redis_url"):
        worker.start()
    worker.terminate()
