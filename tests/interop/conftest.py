"""Fixtures shared by the Celery interop tests: which broker and result backend, a fresh queue."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Plain modules: the apps (which worker subprocesses import too) and the harness.
sys.path.insert(0, str(Path(__file__).parent / "support"))

from interop_apps import RESULTS_URL
from interop_harness import (
    AMQP_PORT,
    BROKERS,
    HOST,
    REDIS_PORT,
    Broker,
    forget_queue,
    new_queue,
)

from kernel.testing.helpers import require_server


@pytest.fixture(scope="module", params=["redis", "amqp"], ids=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Broker:
    # Redis is needed whatever the broker: results and the traces tasks leave live there
    require_server("Redis", HOST, REDIS_PORT)
    if request.param == "amqp":
        require_server("RabbitMQ", HOST, AMQP_PORT)
    return BROKERS[request.param]


@pytest.fixture(scope="module", params=["redis", "rpc"], ids=["redis-results", "rpc-results"])
def backend(request: pytest.FixtureRequest) -> str:
    return RESULTS_URL if request.param == "redis" else "rpc://"


@pytest.fixture(scope="module")
def queue(broker: Broker) -> Iterator[str]:
    """A queue of this module's own (both apps' `task_default_queue`), deleted afterwards."""
    name = new_queue()
    yield name
    forget_queue(broker, name)
