"""A node: its own plugin manager, the bootsteps its enabled plugins give, and their lifecycle."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .bootsteps import Services, Step
from .errors import PluginError, StepStartError
from .graph import BootOrder, StepSpec, resolve
from .hints import role_hint, setting_hint
from .manager import PluginManager, split_plugin_args
from .settings import Setting, Settings, declared_by, identity, to_str_list

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("kernel.worker")

NODE_SETTINGS = (
    Setting("plugins", [], to_str_list, "plugins to enable by entry-point name; no:NAME blocks"),
)


class ColdShutdown(BaseException):
    """Raised in the main thread by a second shutdown signal to abandon a warm shutdown."""


class Node:
    """A fresh plugin manager, the steps its enabled plugins contribute, in graph order.

    `plugins` holds entry-point names (``"no:NAME"`` blocks one) or plugin objects to register
    directly; `settings` holds explicit setting values. Nothing is loaded until `build()`.
    Subclasses say which plugins they enable by default and which their settings pick.
    """

    # role -> the setting whose value picks the plugin filling it (named by hints)
    role_settings: ClassVar[Mapping[str, str]] = {}
    app: Any = None  # what the node serves (a Worker's App); the microkernel never looks inside

    def __init__(
        self,
        *,
        settings: Settings | Mapping[str, Any] | None = None,
        plugins: Sequence[Any] = (),
        discover: bool = True,
    ) -> None:
        self.pid = os.getpid()  # pool children are other processes; policies may ask
        self.pm = PluginManager(discover=discover)
        self.settings = settings if isinstance(settings, Settings) else Settings(settings)
        self.settings.declare(NODE_SETTINGS)
        self.services = Services()
        self.steps: list[Step] = []
        self.boot: BootOrder | None = None
        self._requested = list(plugins)
        self._loaded = False
        self._started: list[Step] = []
        self._mode: str | None = None  # None while running, then "warm" or "cold"
        self._stopping = False
        self._ready = False  # kernel_worker_ready was called (so shutdown will be too)
        self._failure: str | None = None
        self._wake = threading.Event()

    # -- building ---------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        """The node name; in `worker_hostname`, as in Celery, %h is this host's full name,
        %n its name without the domain, %d the domain."""
        host = socket.gethostname()
        name, _, domain = host.partition(".")
        pattern = str(self.settings.get("worker_hostname") or "kernel@%h")
        return pattern.replace("%h", host).replace("%n", name).replace("%d", domain)

    @property
    def built(self) -> bool:
        return self.boot is not None

    def build(self) -> Self:
        """Enable plugins, check settings, build and order the steps (UsageError if impossible)."""
        if self.built:
            return self
        self.load_plugins()
        found = self._collect_steps()
        self._declare_settings(found)
        self.settings.validate(hint=lambda key: setting_hint(self.pm, key))
        self.pm.hook.kernel_configure(settings=self.settings, worker=self)
        hint = lambda role: role_hint(self.pm, role, self.role_settings)
        self.boot = resolve([StepSpec.of(cls, plugin) for cls, plugin in found], hint)
        by_name = {cls.name: cls for cls, _ in found}
        self.steps = [by_name[name].from_settings(self.settings) for name in self.boot.order]
        self.prepare()
        return self

    def prepare(self) -> None:
        """Called once the steps are built, before anything starts (subclasses check more)."""

    def default_plugins(self) -> list[str]:
        """Entry-point names enabled unless blocked (a subclass's own steps, say)."""
        return []

    def picked_plugins(self) -> list[str]:
        """Entry-point names the settings pick (a pool by name, a broker by URL scheme)."""
        return []

    def load_plugins(self) -> PluginManager:
        """Register the plugins asked for by name, object, setting or pick (once)."""
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
        for name in self.default_plugins():
            if not self.pm.is_blocked(name):
                self.pm.enable(name)
        for obj in objects:
            self.pm.add(obj, getattr(obj, "plugin_name", None))
        for name in self.picked_plugins() + enable:
            if self.pm.get_plugin(name) is None:
                self.pm.enable(name)
        return self.pm

    def _collect_steps(self) -> list[tuple[type[Step], str]]:
        found: list[tuple[type[Step], str]] = []
        for plugin, classes in self.pm.call_each("kernel_steps"):
            for cls in classes or ():
                if not (isinstance(cls, type) and issubclass(cls, Step)):
                    raise PluginError(
                        f"plugin {plugin!r}: kernel_steps returned {cls!r}, "
                        "which is not a kernel.bootsteps.Step subclass"
                    )
                _check_attrs(cls, plugin)
                StepSpec.of(cls, plugin)  # refuse nameless steps early
                found.append((cls, plugin))
        return found

    def _declare_settings(self, found: Sequence[tuple[type[Step], str]]) -> None:
        for cls, plugin in found:
            self.settings.declare(declared_by(cls, owner=plugin))
        for plugin, settings in self.pm.call_each("kernel_settings"):
            self.settings.declare(attrs.evolve(item, owner=plugin) for item in settings or ())
        for plugin, options in self.pm.call_each("kernel_cli_options"):
            for option in options or ():
                if option.name:
                    self.settings.declare([Setting(option.name, None, identity, "", plugin)])

    def banner_rows(self) -> list[tuple[str, str]]:
        """Rows a subclass adds to the start-up banner."""
        return []

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start every step in graph order; if one fails, stop the started ones in reverse.

        Calls `kernel_worker_init` before the first step and `kernel_worker_ready` after the
        last."""
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
        self._ready = True
        self.pm.hook.kernel_worker_ready(worker=self)

    def stop(self) -> None:
        """Warm stop: each started step drains and stops, in reverse start order."""
        self._announce_shutdown(cold=False)
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
        try:
            self._announce_shutdown(cold=True)
        except Exception:  # a cold shutdown must get through every step
            log.exception("a kernel_worker_shutdown hook failed")
        while self._started:
            step = self._started.pop()
            log.debug("terminating step %s", step.name)
            try:
                step.terminate(self)
            except BaseException:
                log.exception("step %s failed to terminate", step.name)

    def _announce_shutdown(self, cold: bool) -> None:
        """`kernel_worker_shutdown`, once, and only for a node that was ready."""
        self._stopping = True
        if self._ready:
            self._ready = False
            self.pm.hook.kernel_worker_shutdown(worker=self, cold=cold)

    @property
    def started_steps(self) -> list[str]:
        return [step.name for step in self._started]

    def fail(self, reason: str) -> None:
        """Shut down because something the node needs is gone; `run()` then exits with 1."""
        self._failure = reason
        self.request_shutdown()

    def request_shutdown(self, cold: bool = False) -> None:
        """Ask the `run()` loop to shut down (safe from any thread)."""
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
            log.info("%s ready", self.hostname)
            while self._mode is None:
                self._wake.wait(0.2)  # the signal handler only flips a flag; poll for it
            cold = self._mode == "cold"
            log.info(
                "%s shutdown: %s",
                "cold" if cold else "warm",
                "terminating" if cold else "waiting for running work to finish",
            )
            if cold:
                self.terminate()
                return 1
            self.stop()
            return 1 if self._failure else 0
        except ColdShutdown:
            self.terminate()
            return 1
        finally:
            self._restore_signal_handlers(previous)

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


def _check_attrs(cls: type[Step], plugin: str) -> None:
    """A Step subclass whose own `setting()` fields attrs never saw would drop them silently."""
    if "__attrs_attrs__" in vars(cls):
        return
    counting = type(attrs.field())
    if any(isinstance(value, counting) for value in vars(cls).values()):
        raise PluginError(
            f"plugin {plugin!r}: step class {cls.__qualname__} declares fields but is not an "
            "attrs class; decorate it with @attrs.define"
        )
