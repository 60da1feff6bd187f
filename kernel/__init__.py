"""taskkernel: a distributed task queue built as a microkernel of pluggable bootsteps."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names, imported on first use: `import kernel` stays cheap and side-effect free, so a
# green-thread pool can monkey-patch the standard library before anything else is loaded.
_EXPORTS = {
    "App": ".app",
    "AsyncResult": ".results",
    "ConfigError": ".errors",
    "CycleError": ".errors",
    "DuplicateProviderError": ".errors",
    "EagerResult": ".results",
    "GraphError": ".errors",
    "KernelError": ".errors",
    "MissingRoleError": ".errors",
    "PluginError": ".errors",
    "PluginManager": ".plugins",
    "Request": ".protocol",
    "ServiceKey": ".bootsteps",
    "Services": ".bootsteps",
    "Setting": ".settings",
    "Settings": ".settings",
    "Signature": ".canvas",
    "Step": ".bootsteps",
    "StepStartError": ".errors",
    "Task": ".task",
    "UsageError": ".errors",
    "Worker": ".worker",
    "hookimpl": ".hookspecs",
    "setting": ".settings",
}

__all__ = [
    "App",
    "AsyncResult",
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
    "hookimpl",
    "setting",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kernel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .app import App
    from .bootsteps import ServiceKey, Services, Step
    from .canvas import Signature
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
    from .plugins import PluginManager
    from .protocol import Request
    from .results import AsyncResult, EagerResult
    from .settings import Setting, Settings, setting
    from .task import Task
    from .worker import Worker
