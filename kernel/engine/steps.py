"""The core's own plugins, which a worker with an app enables: broker, backend, consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ..bootsteps import Step
from ..client.trace import call_task
from ..hookspecs import hookimpl
from ..settings import at_least, optional, setting, to_bool, to_str_list
from .consumer import Consumer
from .contracts import (
    BACKEND,
    BACKEND_MEMBERS,
    BROKER,
    BROKER_MEMBERS,
    CONSUMER,
    POOL,
    POOL_MEMBERS,
    check_members,
)

if TYPE_CHECKING:
    from ..lifecycle import Node


@attrs.define
class BrokerStep(Step):
    """Opens the broker the app's URL names (through the plugin the scheme picked)."""

    name = "broker"

    def start(self, worker: Node) -> None:
        broker = worker.app.open_broker(worker.pm)
        broker.connect()
        worker.services[BROKER] = broker

    def stop(self, worker: Node) -> None:
        broker = worker.services.pop(BROKER)
        if broker is not None:
            broker.close()


@attrs.define
class BackendStep(Step):
    name = "backend"

    def start(self, worker: Node) -> None:
        worker.services[BACKEND] = worker.app.open_backend(worker.pm)

    def stop(self, worker: Node) -> None:
        backend = worker.services.pop(BACKEND)
        if backend is not None:
            backend.close()


@attrs.define
class ConsumerStep(Step):
    """Consumes the worker's queues and runs their tasks on the pool."""

    name = "consumer"
    requires = ("broker", "backend", "pool")
    start_last = True  # work flows only once every policy step has started

    worker_prefetch_multiplier: int = setting(
        4, convert=at_least(0), help="messages held per slot (0: no limit)"
    )
    worker_prefetch_adaptive: bool = setting(
        True, convert=to_bool, help="also hold what the worker finishes in 0.1 s (fast tasks)"
    )
    worker_queues: list[str] | None = setting(None, convert=optional(to_str_list), help="queues")
    consumer: Consumer | None = attrs.field(default=None, init=False)

    def queues(self, worker: Node) -> list[str]:
        return self.worker_queues or [worker.app.conf.task_default_queue]

    def start(self, worker: Node) -> None:
        broker, backend, pool = (
            worker.services[BROKER],
            worker.services[BACKEND],
            worker.services[POOL],
        )
        check_members(pool, "pool", POOL_MEMBERS, "BasePool")
        check_members(broker, "broker", BROKER_MEMBERS, "BaseBroker")
        check_members(backend, "result backend", BACKEND_MEMBERS, "BaseBackend")
        self.consumer = Consumer(
            worker,
            worker.app,
            broker,
            backend,
            pool,
            self.queues(worker),
            self.worker_prefetch_multiplier,
            self.worker_prefetch_adaptive,
        )
        self.consumer.start()
        worker.services[CONSUMER] = self.consumer

    def stop(self, worker: Node) -> None:
        if self.consumer is not None:
            self.consumer.stop()

    def terminate(self, worker: Node) -> None:
        if self.consumer is not None:
            self.consumer.terminate()


class CorePlugin:
    """One blockable unit of the core (``--plugin no:core.consumer`` to bring your own)."""

    def __init__(self, name: str, *steps: type[Step]) -> None:
        self.plugin_name = name
        self._steps = list(steps)

    @hookimpl
    def kernel_steps(self) -> list[type[Step]]:
        return self._steps


class ConsumerPlugin(CorePlugin):
    @hookimpl(trylast=True)
    def kernel_execute_task(self, task: Any, request: Any) -> Any:
        """The innermost around-task implementation: call the task (wrappers go around it)."""
        return call_task(task, request)

    kernel_execute_task.innermost = True  # type: ignore[attr-defined]


# published as entry points (core.broker, core.backend, core.consumer) in the core's own
# distribution: enabled by name, listed by `kernel plugins`, replaceable like any plugin
broker_plugin = CorePlugin("core.broker", BrokerStep)
backend_plugin = CorePlugin("core.backend", BackendStep)
consumer_plugin = ConsumerPlugin("core.consumer", ConsumerStep)
