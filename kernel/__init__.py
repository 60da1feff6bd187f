"""taskkernel: a distributed task queue built as a microkernel of pluggable bootsteps."""

from __future__ import annotations

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
