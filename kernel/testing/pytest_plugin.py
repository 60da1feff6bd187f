"""pytest plugin (entry point `pytest11`): fixtures for testing kernel plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..engine.worker import Worker
from .recorder import HookRecorder


@pytest.fixture
def _kernel_recorders() -> Iterator[dict[int, HookRecorder]]:
    """The recorders of this test, by the id of the manager they listen to."""
    recorders: dict[int, HookRecorder] = {}
    yield recorders
    for recorder in recorders.values():
        recorder.detach()


@pytest.fixture
def make_worker(_kernel_recorders: dict[int, HookRecorder]) -> Iterator[Callable[..., Worker]]:
    """Build workers with a fresh plugin manager each; whatever they started is terminated after.

    ``make_worker(plugin_obj, "entry.point.name", settings={...}, app=None, build=True)``:
    objects are registered directly; names, and the pool a `worker_pool` setting picks, are
    loaded from the installed entry points, as a real worker loads them. ``discover=False``
    leaves installed plugins out (only the objects given are registered).
    """
    made: list[Worker] = []

    def factory(
        *plugins: Any,
        settings: dict[str, Any] | None = None,
        app: Any = None,
        discover: bool = True,
        build: bool = True,
    ) -> Worker:
        worker = Worker(app=app, settings=settings, plugins=list(plugins), discover=discover)
        # recorded from the start, so hook_recorder(worker) sees the calls building it made
        _kernel_recorders[id(worker.pm)] = HookRecorder(worker)
        made.append(worker)
        return worker.build() if build else worker

    yield factory
    for worker in made:
        worker.terminate()


@pytest.fixture
def hook_recorder(
    _kernel_recorders: dict[int, HookRecorder],
) -> Callable[[Any], HookRecorder]:
    """``hook_recorder(worker_or_manager)``: every hook call it makes until the test ends; for
    a worker from `make_worker`, from its creation on (`kernel_steps`, `kernel_configure`...)."""

    def attach(target: Any) -> HookRecorder:
        pm = getattr(target, "pm", target)
        found = _kernel_recorders.get(id(pm))
        if found is None:
            found = _kernel_recorders[id(pm)] = HookRecorder(pm)
        return found

    return attach
