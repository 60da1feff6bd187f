"""Autoscale grows the pool to MAX under a burst and returns it to MIN when idle."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from kernel import App, ConfigError, Worker
from kernel.plugin import POOL
from kernel.testing.helpers import wait_until

POOLS = ["threads", "prefork"]


@pytest.mark.parametrize("pool_name", POOLS)
def test_burst_grows_to_max_and_idle_returns_to_min(
    tmp_path: Path, pool_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kernel.autoscale")
    app = App(
        "scale", broker=f"embedded:///{tmp_path}/b.db", backend=f"embedded:///{tmp_path}/r.db"
    )

    @app.task
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    worker = Worker(
        app=app,
        plugins=["autoscale"],
        settings={
            "worker_pool": pool_name,
            "worker_concurrency": 2,
            "worker_autoscale": "6,1",
            "worker_autoscale_keepalive": 1,
            "worker_autoscale_interval": 0.2,
        },
    )
    worker.start()
    pool = worker.services[POOL]
    try:
        assert pool.concurrency == 1  # started at MIN
        sizes: list[int] = []
        results = [nap.delay(0.4) for _ in range(36)]
        assert wait_until(
            lambda: (sizes.append(pool.concurrency), pool.concurrency == 6)[1], timeout=15
        )
        began = time.monotonic()
        for result in results:
            result.get(timeout=30)
        assert time.monotonic() - began < 6  # six slots, not one: 36 x 0.4 s would take 14 s
        assert wait_until(lambda: pool.concurrency == 1, timeout=15)
    finally:
        worker.stop()
    assert "autoscale: pool grows" in caplog.text and "autoscale: pool shrinks" in caplog.text


def test_bad_bounds_are_refused_naming_the_setting() -> None:
    app = App("scale", broker="memory://", backend="memory://")
    with pytest.raises(ConfigError, match="setting 'worker_autoscale': expected MAX,MIN"):
        Worker(
            app=app,
            plugins=["autoscale"],
            settings={"worker_pool": "threads", "worker_autoscale": "2,5"},
        ).build()
