"""The worker: a node that runs an app's tasks, with the core's steps and the plugins it picks."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .. import catalog
from ..client.accepted import unhonoured
from ..client.conf import app_conf
from ..client.config import CORE_SETTINGS
from ..client.discovery import import_task_module
from ..errors import PluginError
from ..lifecycle import Node
from ..settings import Settings
from ..wire.urls import safe_url

log = logging.getLogger("kernel.worker")

DEFAULT_POOL = "threads"
# the core's own steps, enabled by name like any plugin (`--plugin no:core.consumer` replaces one)
CORE_PLUGINS = ("core.broker", "core.backend", "core.consumer")


class Worker(Node):
    """One worker node. With an `app`, it enables the core's steps (broker, backend, consumer)
    and the plugins its settings pick: the pool by name, broker and backend by URL scheme.
    Its settings are the app's, so tasks see what the command line set."""

    role_settings: ClassVar[Mapping[str, str]] = {
        "pool": "worker_pool",
        "broker": "broker_url",
        "backend": "result_backend",
    }

    def __init__(
        self,
        *,
        app: Any = None,
        settings: Mapping[str, Any] | None = None,
        plugins: Sequence[Any] = (),
        discover: bool = True,
    ) -> None:
        self.app = app
        if app is not None:
            conf: Settings = app.conf
            for key, value in (settings or {}).items():
                conf[key] = value
        else:
            conf = app_conf()
            conf.update(settings or {})
        conf.declare(CORE_SETTINGS)
        super().__init__(settings=conf, plugins=plugins, discover=discover)

    def default_plugins(self) -> list[str]:
        return list(CORE_PLUGINS) if self.app is not None else []

    def picked_plugins(self) -> list[str]:
        """The pool by name; the broker and backend by the scheme of the app's URLs."""
        picks = []
        pool = self.settings.worker_pool or (DEFAULT_POOL if self.app is not None else None)
        if pool:
            name = f"pool.{pool}"
            if name not in self.pm.installed and self.pm.get_plugin(name) is None:
                if not self.pm.discovers:
                    raise PluginError(self.pm.missing_message(name))
                raise PluginError(self._bad_pick("pool", "worker_pool", str(pool)))
            picks.append(name)
        if self.app is not None:
            picks.append(self.pm.plugin_for_url("broker", self.app.broker_url, "broker_url"))
            backend_url = self.app.backend_url
            if backend_url:
                picks.append(self.pm.plugin_for_url("backend", backend_url, "result_backend"))
        return picks

    def _bad_pick(self, role: str, key: str, value: str) -> str:
        prefix = role + "."
        dist = catalog.distribution_for(prefix + value)
        if dist:
            return f"{role} {value!r} is not installed; install it with: pip install {dist}"
        installed = sorted(n[len(prefix) :] for n in self.pm.installed if n.startswith(prefix))
        choices = ", ".join(installed) or "none installed"
        return f"unknown {role} {value!r} ({key}); choose one of: {choices}"

    def prepare(self) -> None:
        self._warn_unhonoured_settings()
        if self.app is not None:
            self._import_task_modules()
            self._warn_unhonoured_options()

    def _warn_unhonoured_settings(self) -> None:
        """One warning for the Celery settings given that nothing enabled here honours."""
        found = unhonoured(self.settings, lambda name: self.pm.get_plugin(name) is not None)
        if found:
            log.warning(
                "these Celery settings are accepted but not honoured here:%s",
                "".join(f"\n  {key}: {note}" for key, note in found),
            )

    def _import_task_modules(self) -> None:
        for module in [*self.settings.imports, *self.settings.include]:
            import_task_module(module)
        self.app.finalize()  # what autodiscover_tasks asked for

    def _warn_unhonoured_options(self) -> None:
        honoured = {opt for found in self.pm.hook.kernel_task_options() for opt in found or ()}
        for task in sorted(self.app.tasks.values(), key=lambda t: t.name):
            for option in catalog.options():
                value = getattr(task, option, None)
                if value is None or option in honoured:
                    continue
                how = ", ".join(_how_to_enable(name) for name in catalog.honouring(option))
                log.warning(
                    "task %s sets %s=%r, but no enabled plugin honours it; enable one that "
                    "does (%s)",
                    task.name,
                    option,
                    value,
                    how,
                )

    def banner_rows(self) -> list[tuple[str, str]]:
        """Banner rows about the app: its broker, backend, queues and tasks."""
        if self.app is None:
            return []
        app = self.app
        queues = self.settings.worker_queues or [app.conf.task_default_queue]
        tasks = sorted(app.tasks)
        return [
            ("app", app.main or "__main__"),
            # where the URL alone does not say (embedded:// is a file in the current directory),
            # the broker does: a client elsewhere can then be pointed at the same place
            ("broker", app.broker.location),
            ("results", safe_url(app.backend_url) if app.backend_url else "disabled"),
            ("queues", ", ".join(queues)),
            ("tasks", "\n".join(tasks) if tasks else "(none)"),
        ]


def _how_to_enable(name: str) -> str:
    role, _, value = name.partition(".")
    return f"--pool {value}" if role == "pool" else f"--plugin {name}"
