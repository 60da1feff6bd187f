"""taskkernel: a distributed task queue built as a microkernel of pluggable bootsteps."""

from __future__ import annotations

from .bootsteps import ServiceKey, Services, Step
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
from .settings import Setting, Settings, setting
from .worker import Worker

__all__ = [
    "ConfigError",
    "CycleError",
    "DuplicateProviderError",
    "GraphError",
    "KernelError",
    "MissingRoleError",
    "PluginError",
    "PluginManager",
    "ServiceKey",
    "Services",
    "Setting",
    "Settings",
    "Step",
    "StepStartError",
    "UsageError",
    "Worker",
    "hookimpl",
    "setting",
]
