"""The plugin manager: the hook contract is enforced, installed is not enabled, blocking works."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

import kernel.manager
from kernel import ConfigError, PluginError, PluginManager, Step, Worker, hookimpl
from kernel.manager import split_plugin_args


def test_unmarked_misspelled_hook_names_plugin_and_hook() -> None:
    plugin = SimpleNamespace(kernel_step=lambda: [])
    with pytest.raises(PluginError) as info:
        PluginManager(discover=False).add(plugin, "sloppy")
    assert str(info.value) == (
        "plugin 'sloppy' implements unknown hook 'kernel_step'; did you mean 'kernel_steps'?"
    )


def test_marked_misspelled_hook_is_reported_too() -> None:
    class Plugin:
        @hookimpl
        def kernel_worker_redy(self) -> None: ...

    with pytest.raises(
        PluginError,
        match="plugin 'p' implements unknown hook 'kernel_worker_redy'; "
        "did you mean 'kernel_worker_ready'",
    ):
        PluginManager(discover=False).add(Plugin(), "p")


def test_hook_with_an_argument_the_spec_lacks_is_refused() -> None:
    class Plugin:
        @hookimpl
        def kernel_worker_ready(self, worker: Any, colour: str) -> None: ...

    with pytest.raises(PluginError) as info:
        PluginManager(discover=False).add(Plugin(), "p")
    message = str(info.value)
    assert "plugin 'p'" in message and "kernel_worker_ready" in message and "colour" in message
    assert "\n" not in message


def test_unmarked_hook_functions_are_called() -> None:
    calls = []
    pm = PluginManager(discover=False)
    pm.add(SimpleNamespace(kernel_worker_ready=lambda worker: calls.append(worker)), "plain")
    pm.hook.kernel_worker_ready(worker="w")
    assert calls == ["w"]


def test_unknown_plugin_name_suggests_the_known_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel.manager, "installed_plugins", dict)  # nothing installed
    pm = PluginManager()
    with pytest.raises(
        PluginError,
        match="plugin 'ratelimit' is not installed; install it "
        "with: pip install taskkernel-ratelimit",
    ):
        pm.enable("ratelimit")
    with pytest.raises(PluginError, match="did you mean 'autoscale'"):
        pm.enable("autoscal")


def test_a_manager_that_does_not_discover_says_so() -> None:
    # not "is not installed": the plugin may well be installed, this manager just never looked
    with pytest.raises(PluginError, match=r"not registered.*discover=False.*discover=True"):
        PluginManager(discover=False).enable("pool.threads")


def test_make_worker_finds_installed_plugins_as_a_worker_does(make_worker: Any) -> None:
    # the test kit's default: what a setting picks or a name enables comes from the installed
    # entry points, as in `kernel start` (not "pool 'threads' is not installed")
    picked = make_worker(settings={"worker_pool": "threads"})
    assert [step.name for step in picked.steps] == ["pool.threads"]
    named = make_worker("pool.threads")
    origin = named.pm.origin("pool.threads")
    assert origin is not None and origin.distribution == "taskkernel-pool-threads"
    with pytest.raises(PluginError, match=r"not registered.*discover=False"):
        make_worker("pool.threads", discover=False)  # still there for isolated tests


def test_split_plugin_args() -> None:
    assert split_plugin_args(["a,b", "no:c", " a ", "", "d"]) == (["a", "b", "d"], ["c"])


def test_kernel_steps_must_return_step_classes(make_worker: Any) -> None:
    class Plugin:
        plugin_name = "odd"

        @hookimpl
        def kernel_steps(self) -> list[Any]:
            return [object]

    with pytest.raises(
        PluginError, match=r"plugin 'odd': kernel_steps returned .*not a kernel\.bootsteps\.Step"
    ):
        make_worker(Plugin())


def test_step_without_a_name_is_refused(make_worker: Any) -> None:
    @attrs.define
    class Nameless(Step):
        pass

    class Plugin:
        plugin_name = "anon"

        @hookimpl
        def kernel_steps(self) -> list[Any]:
            return [Nameless]

    with pytest.raises(PluginError, match=r"plugin 'anon': step class .*Nameless has no name"):
        make_worker(Plugin())


# -- with a real installed distribution --------------------------------------------------------


@pytest.fixture
def hello_installed(hello_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(hello_site))


@pytest.mark.usefixtures("hello_installed")
def test_installed_is_not_enabled() -> None:
    worker = Worker().build()
    assert "hello" in worker.pm.installed
    assert worker.pm.get_plugin("hello") is None
    assert worker.steps == []


@pytest.mark.usefixtures("hello_installed")
def test_enabled_by_name_from_the_argument_or_the_plugins_setting() -> None:
    by_arg = Worker(plugins=["hello"]).build()
    by_setting = Worker(settings={"plugins": "hello"}).build()
    for worker in (by_arg, by_setting):
        assert [step.name for step in worker.steps] == ["clock", "announcer"]
        origin = worker.pm.origin("hello")
        assert origin is not None
        assert (origin.distribution, origin.version) == ("kernel-hello-step", "1.0.0")


@pytest.mark.usefixtures("hello_installed")
def test_blocked_plugin_cannot_be_enabled() -> None:
    with pytest.raises(PluginError, match="plugin 'hello' is blocked"):
        Worker(plugins=["hello", "no:hello"]).build()


@pytest.mark.usefixtures("hello_installed")
def test_setting_of_a_disabled_plugin_says_which_plugin() -> None:
    with pytest.raises(
        Exception,
        match="setting 'hello_greeting': unknown setting; it belongs to "
        "plugin 'hello'; enable it with --plugin hello",
    ):
        Worker(settings={"hello_greeting": "hi"}).build()


@pytest.mark.usefixtures("hello_installed")
def test_missing_step_names_the_installed_plugin_providing_it() -> None:
    @attrs.define
    class NeedsTime(Step):
        name = "needs-time"
        requires = ("time",)

    class Plugin:
        plugin_name = "mine"

        @hookimpl
        def kernel_steps(self) -> list[Any]:
            return [NeedsTime]

    with pytest.raises(
        Exception,
        match="step 'needs-time' requires 'time', which no enabled plugin "
        "provides; enable plugin 'hello' with --plugin hello",
    ):
        Worker(plugins=[Plugin()]).build()


@pytest.mark.usefixtures("hello_installed")
def test_settings_declared_by_a_hook_only_plugin() -> None:
    worker = Worker(plugins=["hello.tuning"], settings={"hello_repeat": "3"}).build()
    assert worker.settings.hello_repeat == 3
    with pytest.raises(
        ConfigError, match=r"^setting 'hello_repeat': expected a number of at least 1, got '0'$"
    ):
        Worker(plugins=["hello.tuning"], settings={"hello_repeat": "0"}).build()


@pytest.mark.usefixtures("hello_installed")
def test_the_hint_names_the_disabled_plugin_past_broken_ones() -> None:
    # hello.broken, hello.crashing and hello.raising sort before hello.tuning: they are
    # installed, not enabled, and broken (a misspelled hook, an import that raises, hooks
    # that raise), and must not stand in the way of the hint
    with pytest.raises(
        ConfigError,
        match=r"^setting 'hello_repeat': unknown setting; it belongs to plugin 'hello\.tuning'; "
        r"enable it with --plugin hello\.tuning$",
    ):
        Worker(settings={"hello_repeat": 2}).build()
    with pytest.raises(ConfigError, match=r"^setting 'no_such_key': unknown setting$"):
        Worker(settings={"no_such_key": 2}).build()
