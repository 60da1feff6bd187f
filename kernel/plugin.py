"""The one door for plugin authors: every name a plugin needs, public and stable.

A plugin imports from `kernel`, this module and `kernel.testing`, never from the layers behind
them (an import-linter contract in the test suite holds our own plugins to that). Names load on
first use, so importing this module loads nothing else: a green-thread pool can still patch the
standard library after its plugin module is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # steps, hooks and settings (the microkernel)
    **dict.fromkeys(("ServiceKey", "Services", "Step"), "kernel.bootsteps"),
    "hookimpl": "kernel.hookspecs",
    "Node": "kernel.lifecycle",
    **dict.fromkeys(
        (
            "Converter",
            "Setting",
            "Settings",
            "at_least",
            "identity",
            "one_of",
            "optional",
            "setting",
            "to_bool",
            "to_dict",
            "to_float",
            "to_int",
            "to_str",
            "to_str_list",
        ),
        "kernel.settings",
    ),
    **dict.fromkeys(("ConfigError", "KernelError", "PluginError", "UsageError"), "kernel.errors"),
    # the worker, its roles and the keys steps share them under (the engine)
    "Worker": "kernel.engine.worker",
    **dict.fromkeys(
        (
            "BACKEND",
            "BROKER",
            "CONSUMER",
            "POOL",
            "BasePool",
            "ChildHooks",
            "ConsumerState",
            "Pool",
            "PoolStep",
        ),
        "kernel.engine.contracts",
    ),
    "Pace": "kernel.engine.pace",
    "rss_kib": "kernel.engine.proc",
    # the app, tasks and results (the client API)
    **dict.fromkeys(("App",), "kernel.client.app"),
    "Task": "kernel.client.task",
    "Signature": "kernel.client.canvas",
    **dict.fromkeys(("AsyncResult", "EagerResult"), "kernel.client.results"),
    "parse_rate": "kernel.client.rates",
    # messages, results and transports (the wire format)
    **dict.fromkeys(
        (
            "NOTIFY_HEADER",
            "Request",
            "format_time",
            "json_dumps",
            "json_loads",
            "new_id",
            "parse_time",
            "utcnow",
        ),
        "kernel.wire.protocol",
    ),
    **dict.fromkeys(
        ("exception_from_meta", "exception_to_meta", "result_meta"), "kernel.wire.meta"
    ),
    **dict.fromkeys(
        ("BaseBroker", "Broker", "Message", "Outgoing", "QueueSpec", "ResultBackend", "Stored"),
        "kernel.wire.transport",
    ),
    **dict.fromkeys(("BaseBackend", "DisabledBackend"), "kernel.wire.backend"),
    "KombuBroker": "kernel.wire.kombu_broker",
    **dict.fromkeys(("ForkGuard", "fork_guard"), "kernel.wire.forking"),
    **dict.fromkeys(("intervals", "retry_call"), "kernel.wire.retry"),
    **dict.fromkeys(
        ("STATE_DIR", "path_from_url", "path_from_url_path", "safe_url"), "kernel.wire.urls"
    ),
}

# the task states and the exceptions come through the door too, by these modules' `__all__`
# (one list of them, kept where Celery's projects import them from)
_GROUPS = ("kernel.states", "kernel.exceptions")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        for group in _GROUPS:
            if name in importlib.import_module(group).__all__:
                module = group
                break
        else:
            raise AttributeError(f"module 'kernel.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what the names are, for type checkers (F401 is off for this file)
    from kernel.bootsteps import (
        ServiceKey,
        Services,
        Step,
    )
    from kernel.client.app import (
        App,
    )
    from kernel.client.canvas import (
        Signature,
    )
    from kernel.client.rates import (
        parse_rate,
    )
    from kernel.client.results import (
        AsyncResult,
        EagerResult,
    )
    from kernel.client.task import (
        Task,
    )
    from kernel.engine.contracts import (
        BACKEND,
        BROKER,
        CONSUMER,
        POOL,
        BasePool,
        ChildHooks,
        ConsumerState,
        Pool,
        PoolStep,
    )
    from kernel.engine.pace import (
        Pace,
    )
    from kernel.engine.proc import (
        rss_kib,
    )
    from kernel.engine.worker import (
        Worker,
    )
    from kernel.errors import (
        ConfigError,
        KernelError,
        PluginError,
        UsageError,
    )
    from kernel.exceptions import *
    from kernel.hookspecs import (
        hookimpl,
    )
    from kernel.lifecycle import (
        Node,
    )
    from kernel.settings import (
        Converter,
        Setting,
        Settings,
        at_least,
        identity,
        one_of,
        optional,
        setting,
        to_bool,
        to_dict,
        to_float,
        to_int,
        to_str,
        to_str_list,
    )
    from kernel.states import *
    from kernel.wire.backend import (
        BaseBackend,
        DisabledBackend,
    )
    from kernel.wire.forking import (
        ForkGuard,
        fork_guard,
    )
    from kernel.wire.kombu_broker import (
        KombuBroker,
    )
    from kernel.wire.meta import exception_from_meta, exception_to_meta, result_meta
    from kernel.wire.protocol import (
        NOTIFY_HEADER,
        Request,
        format_time,
        json_dumps,
        json_loads,
        new_id,
        parse_time,
        utcnow,
    )
    from kernel.wire.retry import (
        intervals,
        retry_call,
    )
    from kernel.wire.transport import (
        BaseBroker,
        Broker,
        Message,
        Outgoing,
        QueueSpec,
        ResultBackend,
        Stored,
    )
    from kernel.wire.urls import (
        STATE_DIR,
        path_from_url,
        path_from_url_path,
        safe_url,
    )
