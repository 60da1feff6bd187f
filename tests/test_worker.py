"""Worker lifecycle: ordered start, reverse stop, rollback, shutdown modes, settings, services."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from typing import Any, ClassVar

import attrs
import pytest

from kernel import (
    ConfigError,
    PluginError,
    ServiceKey,
    Setting,
    Step,
    StepStartError,
    Worker,
    hookimpl,
    setting,
)
from kernel.plugin import at_least, to_int

JOURNAL: list[str] = []


@pytest.fixture(autouse=True)
def _clean_journal() -> None:
    JOURNAL.clear()


class Recorded(Step):
    """Writes start/stop/terminate to JOURNAL; `fail` makes start raise."""

    fail: ClassVar[bool] = False

    def start(self, worker: Worker) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        JOURNAL.append(f"start {self.name}")

    def stop(self, worker: Worker) -> None:
        JOURNAL.append(f"stop {self.name}")

    def terminate(self, worker: Worker) -> None:
        JOURNAL.append(f"terminate {self.name}")


def make_step(name: str, base: type[Step] = Recorded, **attrs_: Any) -> type[Step]:
    return attrs.define(type(name.title(), (base,), {"name": name, **attrs_}))


class Contributes:
    """A plugin object contributing the given step classes."""

    def __init__(self, *steps: type[Step], name: str = "test") -> None:
        self.steps, self.plugin_name = steps, name

    @hookimpl
    def kernel_steps(self) -> list[type[Step]]:
        return list(self.steps)


CHAIN = [
    make_step("db", provides=("storage",)),
    make_step("cache", requires=("storage",)),
    make_step("api", requires=("cache",)),
    make_step("metrics", requires=("api",)),
]


def test_steps_start_in_graph_order_and_stop_in_reverse(make_worker: Any) -> None:
    worker = make_worker(Contributes(*reversed(CHAIN)))
    worker.start()
    assert worker.started_steps == ["db", "cache", "api", "metrics"]
    worker.stop()
    assert JOURNAL == [
        "start db",
        "start cache",
        "start api",
        "start metrics",
        "stop metrics",
        "stop api",
        "stop cache",
        "stop db",
    ]
    assert worker.started_steps == []


def test_failed_start_stops_exactly_the_started_steps_in_reverse(make_worker: Any) -> None:
    steps = [*CHAIN[:2], make_step("api", requires=("cache",), fail=True), CHAIN[3]]
    worker = make_worker(Contributes(*steps))
    with pytest.raises(StepStartError) as info:
        worker.start()
    assert info.value.step == "api"
    assert "step 'api' failed to start: RuntimeError: api cannot start" == str(info.value)
    assert JOURNAL == ["start db", "start cache", "stop cache", "stop db"]


def test_terminate_reaches_every_step_even_when_one_raises(make_worker: Any) -> None:
    class Exploding(Recorded):
        def terminate(self, worker: Worker) -> None:
            JOURNAL.append(f"terminate {self.name}")
            raise RuntimeError("boom")

    worker = make_worker(
        Contributes(make_step("a"), make_step("b", base=Exploding), make_step("c"))
    )
    worker.start()
    worker.terminate()  # must not raise
    assert JOURNAL[-3:] == ["terminate c", "terminate b", "terminate a"]


class Watcher:
    """A plugin recording the lifecycle hooks, with the steps started when each fired."""

    plugin_name = "watcher"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    @hookimpl
    def kernel_worker_ready(self, worker: Worker) -> None:
        self.calls.append(("ready", worker.started_steps))

    @hookimpl
    def kernel_worker_shutdown(self, worker: Worker, cold: bool) -> None:
        self.calls.append(("shutdown", cold, worker.started_steps))


ALL = ["db", "cache", "api", "metrics"]


def test_start_and_stop_fire_the_ready_and_shutdown_hooks_once(make_worker: Any) -> None:
    watcher = Watcher()
    worker = make_worker(Contributes(*CHAIN), watcher)
    worker.start()
    assert watcher.calls == [("ready", ALL)]  # after the last step started
    worker.stop()
    worker.stop()
    worker.terminate()  # already stopped: no second shutdown
    assert watcher.calls == [("ready", ALL), ("shutdown", False, ALL)]  # before any step stops
    assert JOURNAL[4:] == ["stop metrics", "stop api", "stop cache", "stop db"]


def test_terminate_fires_a_cold_shutdown(make_worker: Any) -> None:
    watcher = Watcher()
    worker = make_worker(Contributes(*CHAIN), watcher)
    worker.start()
    worker.terminate()
    worker.stop()
    assert watcher.calls == [("ready", ALL), ("shutdown", True, ALL)]


def test_a_worker_that_never_got_ready_fires_neither(make_worker: Any) -> None:
    watcher = Watcher()
    steps = [*CHAIN[:2], make_step("api", requires=("cache",), fail=True), CHAIN[3]]
    worker = make_worker(Contributes(*steps), watcher)
    with pytest.raises(StepStartError):
        worker.start()
    worker.terminate()
    assert watcher.calls == []


def test_services_are_shared_through_typed_keys(make_worker: Any) -> None:
    answer: ServiceKey[int] = ServiceKey("answer")
    seen = []

    class Provider(Step):
        name = "provider"
        provides = ("answer",)

        def start(self, worker: Worker) -> None:
            worker.services[answer] = 42

    class Consumer(Step):
        name = "consumer"
        requires = ("answer",)

        def start(self, worker: Worker) -> None:
            seen.append(worker.services[answer])

    worker = make_worker(Contributes(attrs.define(Consumer), attrs.define(Provider)))
    worker.start()
    assert seen == [42]
    with pytest.raises(KeyError, match="no service 'missing'"):
        worker.services[ServiceKey("missing")]


@attrs.define
class Tunable(Step):
    name = "tunable"
    size: int = setting(4, convert=to_int, help="how big")


def test_step_fields_are_settings_converted_from_text(make_worker: Any) -> None:
    worker = make_worker(Contributes(Tunable), settings={"size": "16"})
    assert worker.steps[0].size == 16
    assert worker.settings.size == 16
    assert make_worker(Contributes(Tunable)).steps[0].size == 4


def test_bad_setting_value_names_the_key(make_worker: Any) -> None:
    with pytest.raises(ConfigError) as info:
        make_worker(Contributes(Tunable), settings={"size": "huge"})
    assert str(info.value) == "setting 'size': expected an integer, got 'huge'"


def test_a_step_with_settings_but_without_attrs_define_is_refused(make_worker: Any) -> None:
    class Loose(Step):  # @attrs.define forgotten: its setting would never be declared
        name = "loose"
        loose_size: int = setting(4, convert=to_int)

    with pytest.raises(
        PluginError,
        match=r"plugin 'test': step class .*Loose declares fields but is not an attrs class; "
        r"decorate it with @attrs\.define",
    ):
        make_worker(Contributes(Loose))


class Greeter:
    """A plugin made of hooks alone that declares a setting."""

    plugin_name = "greeter"

    @hookimpl
    def kernel_settings(self) -> list[Setting]:
        return [Setting("greet_times", 1, at_least(1), "how many times to greet")]


def test_a_hook_only_plugin_declares_settings(make_worker: Any) -> None:
    worker = make_worker(Greeter(), settings={"greet_times": "3"})
    assert worker.settings.greet_times == 3  # converted, as a step's setting is
    assert worker.settings.declared()["greet_times"].owner == "greeter"
    assert make_worker(Greeter()).settings.greet_times == 1
    with pytest.raises(ConfigError) as info:
        make_worker(Greeter(), settings={"greet_times": "0"})
    assert str(info.value) == "setting 'greet_times': expected a number of at least 1, got '0'"
    with pytest.raises(ConfigError, match="setting 'greet_times': unknown setting"):
        make_worker(settings={"greet_times": 2})  # the plugin is not enabled


def test_unknown_setting_is_refused_with_a_suggestion(make_worker: Any) -> None:
    with pytest.raises(ConfigError, match="setting 'sise': unknown setting; did you mean 'size'"):
        make_worker(Contributes(Tunable), settings={"sise": 3})


def test_configure_hook_sees_settings_and_may_refuse(make_worker: Any) -> None:
    class Policy:
        plugin_name = "policy"

        @hookimpl
        def kernel_configure(self, settings: Any) -> None:  # a subset of the hook's arguments
            if settings.size > 8:
                raise ConfigError("size", "at most 8 with the policy plugin")

    assert make_worker(Contributes(Tunable), Policy(), settings={"size": 8}).steps[0].size == 8
    with pytest.raises(ConfigError, match="at most 8"):
        make_worker(Contributes(Tunable), Policy(), settings={"size": 9})


def test_config_error_names_the_key_or_says_just_the_message(make_worker: Any) -> None:
    class Policy:
        plugin_name = "policy"

        @hookimpl
        def kernel_configure(self, settings: Any) -> None:
            if settings.size > 8:
                raise ConfigError("size", "at most 8 with the policy plugin")
            if settings.size < 2:
                raise ConfigError("the policy plugin needs a size of 2 or more")  # no key

    with pytest.raises(ConfigError) as keyed:
        make_worker(Contributes(Tunable), Policy(), settings={"size": 9})
    assert str(keyed.value) == "setting 'size': at most 8 with the policy plugin"
    assert keyed.value.key == "size"
    with pytest.raises(ConfigError) as plain:
        make_worker(Contributes(Tunable), Policy(), settings={"size": 1})
    assert str(plain.value) == "the policy plugin needs a size of 2 or more"
    assert plain.value.key is None
    # either form survives pickling (as an error raised in a prefork child must)
    for error in (keyed.value, plain.value):
        assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_core_settings_refuse_numbers_no_worker_could_use(make_worker: Any) -> None:
    for key, value, allowed in [
        ("worker_concurrency", -2, "expected a number of at least 1, got -2"),
        ("worker_concurrency", "0", "expected a number of at least 1, got '0'"),
        ("worker_prefetch_multiplier", "-1", "expected a number of at least 0, got '-1'"),
        ("task_time_limit", -1, "expected a number of seconds above 0, or None for no limit"),
        ("task_soft_time_limit", "0", "expected a number of seconds above 0, or None for no"),
    ]:
        with pytest.raises(ConfigError) as info:
            make_worker(settings={key: value})
        assert str(info.value).startswith(f"setting {key!r}: {allowed}"), info.value
    worker = make_worker(
        settings={
            "worker_concurrency": "2",
            "worker_prefetch_multiplier": "0",  # 0: no limit, as in Celery
            "task_time_limit": "30",
            "task_soft_time_limit": "none",  # None: no limit
        }
    )
    assert worker.settings.worker_concurrency == 2
    assert worker.settings.worker_prefetch_multiplier == 0
    assert (worker.settings.task_time_limit, worker.settings.task_soft_time_limit) == (30.0, None)


def test_role_setting_picks_the_plugin(make_worker: Any) -> None:
    threads = Contributes(make_step("threads", provides=("pool",)), name="pool.threads")
    solo = Contributes(make_step("solo", provides=("pool",)), name="pool.solo")
    consumer = Contributes(make_step("consumer", requires=("pool",)), name="core")
    # objects registered directly are all enabled; a pool pick among installed ones is what
    # --pool does, so here the duplicate role is reported instead
    with pytest.raises(Exception, match="role 'pool' is provided by both"):
        make_worker(threads, solo, consumer)
    worker = make_worker(threads, consumer, settings={"worker_pool": "threads"})
    assert [s.name for s in worker.steps] == ["threads", "consumer"]
    with pytest.raises(Exception, match=r"unknown pool 'gevnt' \(worker_pool\)"):
        make_worker(consumer, settings={"worker_pool": "gevnt"})


def _run_in_background(worker: Worker, actions: list[tuple[float, Any]]) -> int:
    def fire() -> None:
        for delay, action in actions:
            time.sleep(delay)
            action()

    threading.Thread(target=fire, daemon=True).start()
    return worker.run()


def test_run_warm_shutdown_calls_lifecycle_hooks(make_worker: Any, hook_recorder: Any) -> None:
    worker = make_worker(Contributes(*CHAIN), build=False)
    recorder = hook_recorder(worker)
    code = _run_in_background(worker, [(0.3, worker.request_shutdown)])
    assert code == 0
    assert recorder.names() == [
        "kernel_steps",
        "kernel_configure",
        "kernel_worker_init",
        "kernel_worker_ready",
        "kernel_worker_shutdown",
    ]
    assert recorder.getcall("kernel_worker_shutdown").cold is False
    assert JOURNAL[4:] == ["stop metrics", "stop api", "stop cache", "stop db"]


def test_sigquit_is_a_cold_shutdown(make_worker: Any) -> None:
    worker = make_worker(Contributes(*CHAIN))
    code = _run_in_background(worker, [(0.3, lambda: os.kill(os.getpid(), signal.SIGQUIT))])
    assert code == 1
    assert JOURNAL[4:] == ["terminate metrics", "terminate api", "terminate cache", "terminate db"]


def test_second_signal_turns_a_slow_warm_shutdown_cold(make_worker: Any) -> None:
    class Slow(Recorded):
        def stop(self, worker: Worker) -> None:
            JOURNAL.append("draining")
            time.sleep(30)  # interrupted by the second signal
            JOURNAL.append("drained")

    worker = make_worker(
        Contributes(make_step("first"), make_step("slow", base=Slow, requires=("first",)))
    )
    sigterm = lambda: os.kill(os.getpid(), signal.SIGTERM)
    began = time.monotonic()
    code = _run_in_background(worker, [(0.3, sigterm), (0.5, sigterm)])
    assert code == 1
    assert time.monotonic() - began < 10
    assert JOURNAL == ["start first", "start slow", "draining", "terminate slow", "terminate first"]


def test_hook_recorder_sees_the_calls_that_built_the_worker(
    make_worker: Any, hook_recorder: Any
) -> None:
    worker = make_worker(Contributes(*CHAIN))  # built before the recorder is asked for
    recorder = hook_recorder(worker)
    assert recorder.names()[:2] == ["kernel_steps", "kernel_configure"]
    assert hook_recorder(worker) is recorder  # one recorder per worker


def test_the_cores_steps_are_plugins_a_user_can_replace(tmp_path: Any, make_worker: Any) -> None:
    from kernel import App
    from kernel.plugin import BROKER, CONSUMER

    app = App("swap", broker=f"embedded:///{tmp_path}/b.db", backend=f"embedded:///{tmp_path}/r.db")
    seen: list[str] = []

    @attrs.define
    class CountingConsumer(Step):  # a consumer of one's own, in place of core.consumer
        name = "my-consumer"
        requires = ("broker", "backend", "pool")

        def start(self, worker: Any) -> None:
            seen.append(type(worker.services[BROKER]).__name__)

    class Mine:
        plugin_name = "myconsumer"

        @hookimpl
        def kernel_steps(self) -> list[type[Step]]:
            return [CountingConsumer]

    worker = make_worker("no:core.consumer", Mine(), app=app, settings={"worker_pool": "solo"})
    assert [step.name for step in worker.steps] == ["backend", "broker", "pool.solo", "my-consumer"]
    assert {name for name, _ in worker.pm.enabled()} >= {"core.broker", "core.backend"}
    assert worker.pm.get_plugin("core.consumer") is None and worker.pm.is_blocked("core.consumer")
    worker.start()
    assert seen == ["EmbeddedBroker"] and CONSUMER not in worker.services
    worker.stop()


def test_hostname_expands_percent_h_n_and_d(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "box7.example.org")
    worker = Worker(settings={"worker_hostname": "w1@%h|%n|%d"})
    assert worker.hostname == "w1@box7.example.org|box7|example.org"
    assert Worker().hostname == "kernel@box7.example.org"
