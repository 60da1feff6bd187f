"""The worker: builds its own plugin manager and bootstep graph, then runs the steps' lifecycle."""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from .bootsteps import Services, Step
from .coresteps import core_plugins
from .defaults import CORE_SETTINGS
from .errors import PluginError, StepStartError, UsageError
from .graph import BootOrder, StepSpec, resolve
from .hints import role_hint, setting_hint
from .known import backend_plugin_for, broker_plugin_for, distribution_for
from .plugins import PluginManager, split_plugin_args
from .settings import Setting, Settings, declared_by, identity

log = logging.getLogger("kernel.worker")

# settings whose value picks the plugin that fills a role
ROLE_SETTINGS = {"pool": "worker_pool", "broker": "broker_url", "backend": "result_backend"}
DEFAULT_POOL = "threads"

# task options honoured only by plugins, and what to tell a user whose task sets one
TASK_OPTION_PLUGINS = {
    "rate_limit": "enable the ratelimit plugin (--plugin ratelimit)",
    "time_limit": "use a pool that enforces time limits (--pool prefork, threads, gevent, "
    "eventlet)",
    "soft_time_limit": "use a pool that enforces time limits (--pool prefork, threads, "
    "gevent, eventlet)",
}


def _safe_url(url: str) -> str:
    """The URL with any password masked, for banners and logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1****@", url)


class ColdShutdown(BaseException):
    """Raised in the main thread by a second shutdown signal to abandon a warm shutdown."""


class Worker:
    """One worker node: a fresh plugin manager, the steps its enabled plugins contribute, in order.

    `plugins` holds entry-point names (``"no:NAME"`` blocks one) or plugin objects to register
    directly; `settings` holds explicit setting values. Nothing is loaded until `build()`.
    """

    def __init__(
        self,
        *,
        app: Any = None,
        settings: Mapping[str, Any] | None = None,
        plugins: Sequence[Any] = (),
        discover: bool = True,
    ) -> None:
        self.app = app
        self.pid = os.getpid()  # pool children are other processes; policies may ask
        self.pm = PluginManager(discover=discover)
        if app is not None:
            # the worker's settings are the app's, so tasks see what the command line set
            self.settings = app.conf
            for key, value in (settings or {}).items():
                app.conf[key] = value
        else:
            self.settings = Settings(settings)
        self.settings.declare(CORE_SETTINGS)
        self.services = Services()
        self.steps: list[Step] = []
        self.boot: BootOrder | None = None
        self._requested = list(plugins)
        self._loaded = False
        self._started: list[Step] = []
        self._mode: str | None = None  # None while running, then "warm" or "cold"
        self._stopping = False
        self._failure: str | None = None
        self._wake = threading.Event()

    # -- building ---------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        name = self.settings.worker_hostname or "kernel@%h"
        return str(name).replace("%h", socket.gethostname())

    @property
    def built(self) -> bool:
        return self.boot is not None

    def build(self) -> Worker:
        """Enable plugins, check settings, build and order the steps (UsageError if impossible)."""
        if self.built:
            return self
        self.load_plugins()
        found = self._collect_steps()
        self._declare_settings(found)
        self.settings.validate(hint=self._setting_hint)
        self.pm.hook.kernel_configure(settings=self.settings, worker=self)
        self.boot = resolve([StepSpec.of(cls, plugin) for cls, plugin in found], self._role_hint)
        by_name = {cls.name: cls for cls, _ in found}
        self.steps = [by_name[name].from_settings(self.settings) for name in self.boot.order]
        if self.app is not None:
            self._import_task_modules()
            self._warn_unhonoured_options()
        return self

    def _import_task_modules(self) -> None:
        for module in [*self.settings.imports, *self.settings.include]:
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise UsageError(
                    f"cannot import {module!r} (from the imports setting): "
                    f"{type(exc).__name__}: {exc}"
                ) from None

    def _warn_unhonoured_options(self) -> None:
        honoured = {opt for found in self.pm.hook.kernel_task_options() for opt in found or ()}
        for task in sorted(self.app.tasks.values(), key=lambda t: t.name):
            for option, plugin in TASK_OPTION_PLUGINS.items():
                value = getattr(task, option, None)
                if value is not None and option not in honoured:
                    log.warning(
                        "task %s sets %s=%r, but no enabled plugin honours it; %s",
                        task.name,
                        option,
                        value,
                        plugin,
                    )

    def load_plugins(self) -> PluginManager:
        """Register the plugins asked for by name, object, setting or role pick (once)."""
        if self._loaded:
            return self.pm
        self._loaded = True
        self.settings.coerce_declared()
        names: list[str] = []
        objects: list[Any] = []
        for item in self._requested:
            (names if isinstance(item, str) else objects).append(item)
        enable, block = split_plugin_args([*self.settings.plugins, *names])
        for name in block:
            self.pm.set_blocked(name)
        if self.app is not None:
            for core in core_plugins():
                if not self.pm.is_blocked(core.plugin_name):
                    self.pm.add(core, core.plugin_name)
        for obj in objects:
            self.pm.add(obj, getattr(obj, "plugin_name", None))
        for name in self._role_picks() + enable:
            self.pm.enable(name)
        return self.pm

    def _role_picks(self) -> list[str]:
        """Plugins that configuration picks: the pool by name, broker and backend by URL scheme."""
        picks = []
        pool = self.settings.worker_pool or (DEFAULT_POOL if self.app is not None else None)
        if pool:
            name = f"pool.{pool}"
            if name not in self.pm.installed and self.pm.get_plugin(name) is None:
                raise PluginError(self._bad_role_value("pool", "worker_pool", str(pool)))
            picks.append(name)
        if self.app is not None:
            picks.append(broker_plugin_for(self.app.broker_url))
            backend_url = self.app.backend_url
            if backend_url:
                picks.append(backend_plugin_for(backend_url))
        return [name for name in picks if self.pm.get_plugin(name) is None]

    def _bad_role_value(self, role: str, key: str, value: str) -> str:
        prefix = role + "."
        installed = sorted(n[len(prefix) :] for n in self.pm.installed if n.startswith(prefix))
        dist = distribution_for(prefix + value)
        if dist:
            return f"{role} {value!r} is not installed; install it with: pip install {dist}"
        choices = ", ".join(installed) or "none installed"
        return f"unknown {role} {value!r} ({key}); choose one of: {choices}"

    def _collect_steps(self) -> list[tuple[type[Step], str]]:
        found: list[tuple[type[Step], str]] = []
        for plugin, classes in self.pm.call_each("kernel_steps"):
            for cls in classes or ():
                if not (isinstance(cls, type) and issubclass(cls, Step)):
                    raise PluginError(
                        f"plugin {plugin!r}: kernel_steps returned {cls!r}, "
                        "which is not a kernel.bootsteps.Step subclass"
                    )
                StepSpec.of(cls, plugin)  # refuse nameless steps early
                found.append((cls, plugin))
        return found

    def _declare_settings(self, found: Sequence[tuple[type[Step], str]]) -> None:
        for cls, plugin in found:
            self.settings.declare(declared_by(cls, owner=plugin))
        for plugin, options in self.pm.call_each("kernel_cli_options"):
            for option in options or ():
                if option.name:
                    self.settings.declare([Setting(option.name, None, identity, "", plugin)])

    def _role_hint(self, role: str) -> str | None:
        return role_hint(self.pm, role, ROLE_SETTINGS)

    def _setting_hint(self, key: str) -> str | None:
        return setting_hint(self.pm, key)

    def banner_rows(self) -> list[tuple[str, str]]:
        """Banner rows about the app: its broker, backend, queues and tasks."""
        if self.app is None:
            return []
        app = self.app
        queues = self.settings.worker_queues or [app.conf.task_default_queue]
        tasks = sorted(app.tasks)
        return [
            ("app", app.main or "__main__"),
            ("broker", _safe_url(app.broker_url)),
            ("results", _safe_url(app.backend_url) if app.backend_url else "disabled"),
            ("queues", ", ".join(queues)),
            ("tasks", "\n".join(tasks) if tasks else "(none)"),
        ]

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start every step in graph order; if one fails, stop the started ones in reverse."""
        self.build()
        self.pm.hook.kernel_worker_init(worker=self)
        for step in self.steps:
            log.debug("starting step %s", step.name)
            try:
                step.start(self)
            except Exception as exc:
                log.debug(
                    "step %s failed to start; stopping the steps started before it",
                    step.name,
                    exc_info=True,
                )
                self.stop()
                raise StepStartError(step.name, exc) from exc
            except BaseException:
                self.terminate()
                raise
            self._started.append(step)

    def stop(self) -> None:
        """Warm stop: each started step drains and stops, in reverse start order."""
        self._stopping = True
        while self._started:
            step = self._started[-1]
            log.debug("stopping step %s", step.name)
            try:
                step.stop(self)
            except Exception:
                log.exception("step %s failed to stop cleanly", step.name)
            self._started.pop()

    def terminate(self) -> None:
        """Cold stop: terminate every started step in reverse order; never raises."""
        self._stopping = True
        while self._started:
            step = self._started.pop()
            log.debug("terminating step %s", step.name)
            try:
                step.terminate(self)
            except BaseException:  # a cold shutdown must get through every step
                log.exception("step %s failed to terminate", step.name)

    @property
    def started_steps(self) -> list[str]:
        return [step.name for step in self._started]

    def fail(self, reason: str) -> None:
        """Shut down because something the worker needs is gone; `run()` then exits with 1."""
        self._failure = reason
        self.request_shutdown()

    def request_shutdown(self, cold: bool = False) -> None:
        """Ask the worker's `run()` loop to shut down (safe from any thread)."""
        if cold or self._mode is None:
            self._mode = "cold" if cold else "warm"
        self._wake.set()

    def run(self) -> int:
        """Start, serve until a shutdown signal, stop; return the process exit status."""
        self.build()
        previous = self._install_signal_handlers()
        try:
            try:
                self.start()
            except StepStartError as exc:
                log.critical("%s", exc)
                return 1
            self.pm.hook.kernel_worker_ready(worker=self)
            log.info("%s ready", self.hostname)
            while self._mode is None:
                self._wake.wait(0.2)  # the signal handler only flips a flag; poll for it
            return self._shutdown()
        except ColdShutdown:
            self.terminate()
            return 1
        finally:
            self._restore_signal_handlers(previous)

    def _shutdown(self) -> int:
        cold = self._mode == "cold"
        log.info(
            "%s shutdown: %s",
            "cold" if cold else "warm",
            "terminating" if cold else "waiting for running work to finish",
        )
        self.pm.hook.kernel_worker_shutdown(worker=self, cold=cold)
        if cold:
            self.terminate()
            return 1
        self.stop()
        return 1 if self._failure else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGQUIT or self._mode is not None:
            already_stopping = self._stopping
            self._mode = "cold"
            log.warning("%s: cold shutdown", name)
            if already_stopping:
                raise ColdShutdown(name)
        else:
            log.warning("%s: warm shutdown (send it again or SIGQUIT for a cold one)", name)
            self._mode = "warm"

    def _install_signal_handlers(self) -> dict[int, Any]:
        # Ask signal.signal rather than threading: under eventlet's patching,
        # threading.main_thread() is not the OS main thread, which is what signals need.
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: whoever runs us handles signals
                self._restore_signal_handlers(previous)
                return {}
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: Mapping[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["ROLE_SETTINGS", "ColdShutdown", "Worker"]
