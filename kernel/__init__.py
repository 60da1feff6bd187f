"""taskkernel: a distributed task queue built as a microkernel of pluggable bootsteps."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names, imported on first use: `import kernel` stays cheap and side-effect free, so a
# green-thread pool can monkey-patch the standard library before anything else is loaded.
_EXPORTS = {
    "App": ".client.app",
    "Celery": ".client.app",
    "current_app": ".client.shared",
    "current_task": ".client.shared",
    "shared_task": ".client.shared",
    "signature": ".client.shared",
    "AsyncResult": ".client.results",
    "ConfigError": ".errors",
    "CycleError": ".errors",
    "DuplicateProviderError": ".errors",
    "EagerResult": ".client.results",
    "GraphError": ".errors",
    "KernelError": ".errors",
    "MissingRoleError": ".errors",
    "PluginError": ".errors",
    "PluginManager": ".manager",
    "Request": ".wire.protocol",
    "ServiceKey": ".bootsteps",
    "Services": ".bootsteps",
    "Setting": ".settings",
    "Settings": ".settings",
    "Signature": ".client.canvas",
    "Step": ".bootsteps",
    "StepStartError": ".errors",
    "Task": ".client.task",
    "UsageError": ".errors",
    "Worker": ".engine.worker",
    "hookimpl": ".hookspecs",
    "setting": ".settings",
}

__all__ = [
    "App",
    "AsyncResult",
    "Celery",
    "ConfigError",
    "CycleError",
    "DuplicateProviderError",
    "EagerResult",
    "GraphError",
    "KernelError",
    "MissingRoleError",
    "PluginError",
    "PluginManager",
    "Request",
    "ServiceKey",
    "Services",
    "Setting",
    "Settings",
    "Signature",
    "Step",
    "StepStartError",
    "Task",
    "UsageError",
    "Worker",
    "current_app",
    "current_task",
    "hookimpl",
    "setting",
    "shared_task",
    "signature",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kernel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .bootsteps import ServiceKey, Services, Step
    from .client.app import App, Celery
    from .client.canvas import Signature
    from .client.results import AsyncResult, EagerResult
    from .client.shared import current_app, current_task, shared_task, signature
    from .client.task import Task
    from .engine.worker import Worker
    from .errors import (
        ConfigError,
        CycleError,
        DuplicateProviderError,
        GraphError,
        KernelError,
        MissingRoleError,
        PluginError,
        StepStartError,
        UsageError,
    )
    from .hookspecs import hookimpl
    from .manager import PluginManager
    from .settings import Setting, Settings, setting
    from .wire.protocol import Request
