"""Celery's settings: every name known, what we do with each, and configuration read as Celery
reads it (namespaces, old names, module paths, lazily); time zones."""

from __future__ import annotations

import csv
import json
import logging
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from kernel import App, ConfigError, UsageError, Worker
from kernel.catalog import PUBLISHED
from kernel.client.accepted import CELERY_OWNER
from kernel.client.celery_settings import (
    CELERY_SETTINGS,
    HONOURED,
    IGNORED,
    OLD_NAMES,
    PLUGIN,
    REFUSED,
)
from kernel.client.config import CORE_SETTINGS
from kernel.engine.storing import Results
from kernel.manager import PluginManager
from kernel.settings import declared_by

TSV = Path(__file__).parent / "data" / "celery-settings.tsv"


def celery_list() -> dict[str, dict[str, str]]:
    lines = [line for line in TSV.read_text().splitlines() if not line.startswith("#")]
    return {row["name"]: row for row in csv.DictReader(lines, delimiter="\t")}


def declared_by_plugin(name: str) -> set[str]:
    """The setting keys installed plugin `name` declares (its steps' fields, kernel_settings)."""
    pm = PluginManager()
    probe = PluginManager(discover=False)
    probe.add(pm.installed[name].load(), name)
    keys = {
        s.key for _, found in probe.call_each("kernel_steps") for c in found for s in declared_by(c)
    }
    keys.update(s.key for _, found in probe.call_each("kernel_settings") for s in found or ())
    return keys


class Recorder:
    """A broker that keeps what is published."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def publish(self, messages: Any) -> None:
        for message in messages:
            fields = message._asdict()
            self.sent.append({**fields, "body": json.loads(fields["body"])})

    def close(self) -> None:
        pass


def recording(app: App) -> Recorder:
    app._broker = recorder = Recorder()  # type: ignore[assignment]
    return recorder


def build(app: App, **settings: Any) -> Worker:
    return Worker(app=app, settings={"worker_pool": "solo", **settings}).build()


# -- the table --------------------------------------------------------------------------------
def test_the_table_holds_every_celery_setting_with_its_old_name_and_default() -> None:
    listed = celery_list()
    assert len(listed) == 207 and set(CELERY_SETTINGS) == set(listed)
    for name, row in listed.items():
        known = CELERY_SETTINGS[name]
        assert known.old == row["old_name"] and OLD_NAMES[row["old_name"]] == name
        default = row["default"]  # Celery's repr, cut short where long
        shown = repr(known.default)
        assert shown.startswith(default[:-3]) if default.endswith("...") else shown == default
        assert known.what in (HONOURED, PLUGIN, IGNORED, REFUSED), name
        assert known.note or known.what in (HONOURED, PLUGIN), f"{name} says nothing to do"


def test_honoured_names_are_the_core_declarations_of_celery_names() -> None:
    core = {item.key for item in CORE_SETTINGS}
    honoured = {name for name, known in CELERY_SETTINGS.items() if known.what == HONOURED}
    assert honoured <= core
    # a Celery name the core declares is honoured by it, or by a plugin it names
    assert {k for k in core & set(CELERY_SETTINGS) if CELERY_SETTINGS[k].what != PLUGIN} == honoured


def test_plugin_names_are_declared_by_their_plugin_and_no_plugin_declares_the_others() -> None:
    core = {item.key for item in CORE_SETTINGS}
    pm = PluginManager()
    # the project's own plugins: another installed distribution may say anything
    plugins = [name for name in pm.installed if name in PUBLISHED]
    declared = {name: declared_by_plugin(name) for name in plugins}
    for name, known in CELERY_SETTINGS.items():
        if known.what == PLUGIN:
            assert known.plugin in declared, f"{name}: plugin {known.plugin} is not installed"
            # the rpc backend reads result_persistent from the app, as transports read theirs
            assert name in declared[known.plugin] | core or name == "result_persistent", name
        elif known.what in (IGNORED, REFUSED):
            # once a plugin honours one of these, the table must say so (what: plugin)
            assert not [p for p, keys in declared.items() if name in keys], name


# -- a worker given Celery's settings ---------------------------------------------------------
def test_ignored_settings_are_accepted_with_one_warning_listing_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(
        "proj",
        broker="memory://",
        backend="memory://",
        beat_schedule={"every-minute": {"task": "proj.add", "schedule": 60}},
        worker_send_task_events=True,
        redis_password="s3cret",
        broker_pool_limit=10,  # Celery's default asks for nothing: not listed
        worker_enable_remote_control="true",  # the default, as typed on a command line
        worker_max_tasks_per_child=100,  # honoured by a plugin that is not enabled
        task_default_rate_limit="10/s",
    )
    with caplog.at_level(logging.WARNING, logger="kernel.worker"):
        build(app)
    warnings = [r.getMessage() for r in caplog.records if "Celery settings" in r.getMessage()]
    assert len(warnings) == 1
    text = warnings[0]
    assert "beat_schedule: read by a beat scheduler: none here yet (issue 21)" in text
    assert "worker_send_task_events: monitoring events are not sent yet" in text
    assert "redis_password: give them in the result_backend URL" in text
    assert "s3cret" not in text  # values are not logged: some are secrets
    assert "broker_pool_limit" not in text and "worker_enable_remote_control" not in text
    assert (
        "worker_max_tasks_per_child: honoured by plugin maxtasks, which is not enabled "
        "(--plugin maxtasks)" in text
    )
    assert "task_default_rate_limit: honoured by plugin ratelimit" in text
    assert app.conf.declared()["beat_schedule"].owner == CELERY_OWNER


def test_no_warning_when_nothing_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kernel.worker"):
        build(App("proj", broker="memory://", backend="memory://", task_acks_late=True))
    assert not [r for r in caplog.records if "Celery settings" in r.getMessage()]


def test_an_enabled_plugin_owns_its_celery_setting(caplog: pytest.LogCaptureFixture) -> None:
    app = App("proj", broker="memory://", backend="memory://", worker_max_tasks_per_child=5)
    with caplog.at_level(logging.WARNING, logger="kernel.worker"):
        worker = Worker(app=app, settings={"worker_pool": "solo"}, plugins=["maxtasks"]).build()
    assert worker.settings.declared()["worker_max_tasks_per_child"].owner == "maxtasks"
    assert not [r for r in caplog.records if "Celery settings" in r.getMessage()]
    app = App("proj", broker="memory://", backend="memory://", worker_max_tasks_per_child=-1)
    with pytest.raises(ConfigError, match="setting 'worker_max_tasks_per_child'"):
        Worker(app=app, settings={"worker_pool": "solo"}, plugins=["maxtasks"]).build()


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("task_annotations", {"proj.add": {"rate_limit": "1/s"}}, "it rewrites task options"),
        ("task_inherit_parent_priority", True, "give priority= when sending"),
        ("task_acks_on_failure", False, "use task_acks_on_failure_or_timeout"),
        ("worker_pool_start_method", "spawn", "prefork children are forked"),
        ("broker_host", "rabbit.example.com", "give one broker_url"),
        ("worker_deduplicate_successful_tasks", "yes", "already succeeded would run again"),
    ],
)
def test_refused_settings_stop_a_worker_naming_the_key_and_what_is_supported(
    key: str, value: Any, why: str
) -> None:
    app = App("proj", broker="memory://", backend="memory://", **{key: value})
    with pytest.raises(ConfigError, match=rf"^setting '{key}': not supported; .*{why}"):
        build(app)


def test_refused_settings_at_celerys_default_ask_for_nothing() -> None:
    app = App(
        "proj",
        broker="memory://",
        backend="memory://",
        task_annotations=None,
        task_inherit_parent_priority="false",
        worker_pool_start_method="fork",
        database_table_names={},
    )
    build(app)


def test_a_client_refuses_to_send_what_a_refused_setting_would_change() -> None:
    app = App("proj", broker="memory://", backend="memory://", task_inherit_parent_priority=True)
    recording(app)
    with pytest.raises(ConfigError, match="setting 'task_inherit_parent_priority'"):
        app.send_task("proj.add", (1, 2))


def test_an_unknown_key_is_still_an_error_with_a_did_you_mean() -> None:
    app = App("proj", broker="memory://", backend="memory://", beat_schedul={})
    with pytest.raises(ConfigError, match="'beat_schedul': unknown setting; did you mean 'beat_sc"):
        build(app)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("task_protocol", 1, "expected 2 (protocol 1 is read but not sent), got 1"),
        ("enable_utc", "maybe", "expected true or false, got 'maybe'"),
        ("task_compression", "rar", "expected one of zlib, bzip2, gzip, lzma, brotli, zstd"),
        ("task_default_delivery_mode", 3, "expected 1, 2, 'transient' or 'persistent', got 3"),
        ("timezone", "Mars/Olympus", "expected a time zone name such as 'Europe/Paris' or 'UTC'"),
    ],
)
def test_a_bad_value_names_the_setting_and_the_allowed_values(
    key: str, value: Any, allowed: str
) -> None:
    app = App("proj", broker="memory://", backend="memory://", **{key: value})
    with pytest.raises(ConfigError) as caught:
        build(app)
    assert str(caught.value).startswith(f"setting {key!r}: {allowed}")


def test_celery_names_read_as_celerys_defaults_each_app_its_own() -> None:
    one, two = App("one"), App("two")
    assert one.conf.beat_schedule == {} and one.conf.worker_send_task_events is False
    one.conf.beat_schedule["tick"] = {"task": "x", "schedule": 1.0}
    assert two.conf.beat_schedule == {}


# -- reading configuration as Celery does -----------------------------------------------------
class DjangoSettings:
    """What `django.conf:settings` looks like to us: upper-case names, and a method."""

    DEBUG = True
    INSTALLED_APPS: ClassVar[list[str]] = ["django.contrib.admin", "proj.orders"]
    TIME_ZONE = "Europe/Paris"
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ROUTES: ClassVar[dict[str, Any]] = {"proj.orders.*": {"queue": "orders"}}
    CELERY_TASK_ACKS_LATE = True
    CELERY_WORKER_PREFETCH_MULTIPLIER = 1

    def is_overridden(self, setting: str) -> bool:
        return False


def test_a_namespace_reads_only_its_prefixed_names() -> None:
    app = App("proj")
    app.config_from_object(DjangoSettings(), namespace="CELERY")
    conf = app.conf
    assert conf.broker_url == "memory://" and conf.task_acks_late is True
    assert conf.task_routes == {"proj.orders.*": {"queue": "orders"}}
    assert conf.worker_prefetch_multiplier == 1
    assert conf.timezone == "Europe/Paris"  # Django's TIME_ZONE, as Celery takes it
    assert not {"DEBUG", "INSTALLED_APPS", "debug", "is_overridden"} & set(conf.explicit())
    build(app)  # nothing stray reached the settings


def test_a_namespace_refuses_an_old_name_celery_would_silently_ignore() -> None:
    app = App("proj")
    app.config_from_object({"CELERY_ALWAYS_EAGER": True}, namespace="CELERY")
    with pytest.raises(ConfigError, match="'CELERY_ALWAYS_EAGER': Celery's old name for task_al"):
        app.conf.task_always_eager  # noqa: B018


@pytest.fixture
def config_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"celeryconfig_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from kombu import Queue  # an imported class is not a setting

            BROKER_URL = "memory://"
            CELERYD_CONCURRENCY = 3
            CELERY_ACCEPT_CONTENT = ["json", "msgpack"]

            class settings:
                CELERY_TASK_DEFAULT_QUEUE = "jobs"
                TIME_ZONE = "Asia/Tokyo"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_module_path_is_imported_when_a_setting_is_first_read(config_module: str) -> None:
    app = App("proj")
    app.config_from_object(config_module)
    assert config_module not in sys.modules  # Django's settings cannot be read this early
    assert app.conf.worker_concurrency == 3  # old upper-case names read as the new ones
    assert (app.conf.broker_url, app.conf.accept_content) == ("memory://", ["json", "msgpack"])
    assert "Queue" not in app.conf.explicit()


def test_force_reads_at_once(config_module: str) -> None:
    App("proj").config_from_object(config_module, force=True)
    assert config_module in sys.modules


@pytest.mark.parametrize("separator", [":", "."])
def test_a_path_may_name_an_attribute_of_a_module(config_module: str, separator: str) -> None:
    app = App("proj")
    app.config_from_object(f"{config_module}{separator}settings", namespace="CELERY")
    assert (app.conf.task_default_queue, app.conf.timezone) == ("jobs", "Asia/Tokyo")


def test_a_missing_module_fails_when_read_naming_it_unless_silent() -> None:
    app = App("proj")
    app.config_from_object("no_such_config_module")
    with pytest.raises(UsageError, match="cannot load configuration 'no_such_config_module'"):
        app.conf.broker_url  # noqa: B018
    app.config_from_object("no_such_config_module", silent=True)
    assert app.conf.broker_url is None


def test_old_and_new_names_mixed_in_one_source_are_refused_as_in_celery() -> None:
    app = App("proj")
    app.config_from_object({"BROKER_URL": "memory://", "task_acks_late": True})
    with pytest.raises(ConfigError, match=r"are mixed .* rename the old ones: BROKER_URL -> brok"):
        app.conf.broker_url  # noqa: B018
    # one setting given both ways is no mix: the new name wins
    app.config_from_object({"result_expires": 10, "CELERY_TASK_RESULT_EXPIRES": 20})
    assert app.conf.result_expires == 10


def test_a_namespaced_name_without_the_namespace_is_a_mistake_named() -> None:
    app = App("proj")
    app.config_from_object({"CELERY_BROKER_URL": "memory://"})
    with pytest.raises(ConfigError, match="with namespace='CELERY' it is broker_url"):
        app.conf.broker_url  # noqa: B018


def test_values_set_on_the_app_win_over_its_source_whatever_the_order() -> None:
    app = App("proj", task_default_queue="mine")
    app.conf.update({"task_acks_late": True}, result_expires=5)
    app.config_from_object({"task_default_queue": "theirs", "task_acks_late": False})
    assert (app.conf.task_default_queue, app.conf.task_acks_late) == ("mine", True)
    assert app.conf.result_expires == 5
    app.conf.update(CELERY_ALWAYS_EAGER=True)  # an old name set directly, as Celery reads it
    assert app.conf.task_always_eager is True


def test_config_from_envvar(monkeypatch: pytest.MonkeyPatch, config_module: str) -> None:
    app = App("proj")
    monkeypatch.delenv("PROJ_CONFIG", raising=False)
    assert app.config_from_envvar("PROJ_CONFIG", silent=True) is False
    with pytest.raises(ConfigError, match="environment variable 'PROJ_CONFIG' is not set"):
        app.config_from_envvar("PROJ_CONFIG")
    monkeypatch.setenv("PROJ_CONFIG", config_module)
    assert app.config_from_envvar("PROJ_CONFIG") is True
    assert app.conf.worker_concurrency == 3


def test_an_app_configured_after_its_tasks_sends_with_its_configuration() -> None:
    app = App("proj")  # an app factory: tasks first, configuration later

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    sent = recording(app)
    app.config_from_object({"task_default_queue": "math", "task_default_priority": 3})
    add.delay(1, 2)
    app.config_from_object({"task_default_queue": "other"}, namespace=None)
    add.delay(1, 2)
    assert [m["routing_key"] for m in sent.sent] == ["math", "other"]
    assert [m["properties"].get("priority") for m in sent.sent] == [3, None]


# -- time zones -------------------------------------------------------------------------------
def test_a_bad_timezone_is_refused_naming_the_setting() -> None:
    app = App("proj", broker="memory://", backend="memory://", timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="setting 'timezone': expected a time zone name"):
        build(app)
    recording(app)
    with pytest.raises(ConfigError, match=r"setting 'timezone'.*'Mars/Olympus'"):
        app.send_task("proj.add", (1, 2))


def test_countdown_and_expires_are_given_in_the_apps_zone() -> None:
    app = App("proj", timezone="Asia/Tokyo")
    sent = recording(app)
    before = datetime.now(timezone.utc)
    app.send_task("proj.add", (1, 2), countdown=10, expires=60)
    headers = sent.sent[-1]["headers"]
    eta, expires = (datetime.fromisoformat(headers[k]) for k in ("eta", "expires"))
    assert headers["eta"].endswith("+09:00") and headers["expires"].endswith("+09:00")
    assert timedelta(seconds=9) < eta - before < timedelta(seconds=11)
    assert timedelta(seconds=59) < expires - before < timedelta(seconds=61)
    assert app.now().utcoffset() == timedelta(hours=9)


def test_a_naive_eta_is_utc_whatever_the_zone_as_celery_workers_read_it() -> None:
    # Celery 5.7 sends a naive eta as it is and its workers take it as UTC
    # (celery/worker/request.py: maybe_make_aware(eta, tz), naive_as_utc by default)
    app = App("proj", timezone="Asia/Tokyo", enable_utc=False)
    sent = recording(app)
    app.send_task("proj.add", (1, 2), eta=datetime(2030, 1, 1, 12, 0))
    assert sent.sent[-1]["headers"]["eta"] == "2030-01-01T12:00:00+00:00"


def test_without_a_timezone_enable_utc_false_means_this_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert App("proj").timezone == timezone.utc
    assert App("proj", enable_utc=False).timezone == ZoneInfo("America/New_York")
    assert App("proj", enable_utc=False, timezone="Asia/Tokyo").timezone == ZoneInfo("Asia/Tokyo")


def test_date_done_is_given_in_the_apps_zone() -> None:
    from kernel.wire.protocol import Request

    class Metas:
        stores_in_pool = False

        def encode(self, meta: dict[str, Any]) -> dict[str, Any]:
            return meta

    request = Request(id="t1", name="proj.add")
    metas: Any = Metas()  # encodes nothing: the meta itself comes back
    tokyo: Any = Results(metas, "w@h", False, ZoneInfo("Asia/Tokyo")).encode(request, "SUCCESS", 3)
    assert tokyo["date_done"].endswith("+09:00")
    utc: Any = Results(metas, "w@h", False, timezone.utc).encode(request, "SUCCESS", 3)
    assert utc["date_done"].endswith("+00:00")
