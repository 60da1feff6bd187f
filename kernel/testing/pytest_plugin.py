"""pytest plugin (entry point `pytest11`): fixtures for testing kernel plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..engine.worker import Worker
from .recorder import HookRecorder


@pytest.fixture
def make_worker() -> Iterator[Callable[..., Worker]]:
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
        made.append(worker)
        return worker.build() if build else worker

    yield factory
    for worker in made:
        worker.terminate()


@pytest.fixture
def hook_recorder() -> Iterator[Callable[[Any], HookRecorder]]:
    """``hook_recorder(worker_or_manager)`` records every hook call until the test ends."""
    recorders: list[HookRecorder] = []

    def attach(target: Any) -> HookRecorder:
        recorder = HookRecorder(target)
        recorders.append(recorder)
        return recorder

    yield attach
    for recorder in recorders:
        recorder.detach()
