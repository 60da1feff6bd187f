"""rpc:// results over a real broker (Redis here), through a real worker."""

from __future__ import annotations

import uuid

import pytest

from kernel import App, Worker
from kernel.testing.contracts import BackendContract
from kernel.testing.helpers import require_server


@pytest.fixture
def redis_up() -> None:
    require_server("Redis", "127.0.0.1", 6379)


@pytest.mark.usefixtures("redis_up")
class TestRPCOverRedis(BackendContract):
    @pytest.fixture
    def backend_url(self) -> str:
        return "rpc://"

    @pytest.fixture
    def broker_url(self) -> str:
        return "redis://127.0.0.1:6379/9"


@pytest.mark.usefixtures("redis_up")
def test_results_reach_the_sending_client_through_a_worker() -> None:
    app = App(
        "rpc",
        broker="redis://127.0.0.1:6379/9",
        backend="rpc://",
        task_default_queue=f"rpc-{uuid.uuid4().hex[:8]}",
    )

    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task
    def fails() -> None:
        raise KeyError("missing")

    worker = Worker(app=app, settings={"worker_pool": "threads", "worker_concurrency": 2})
    worker.start()
    try:
        results = [mul.delay(i, 2) for i in range(20)]
        assert [r.get(timeout=10) for r in results] == [2 * i for i in range(20)]
        with pytest.raises(KeyError):
            fails.delay().get(timeout=10)
    finally:
        worker.stop()
        app.close()
