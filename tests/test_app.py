"""The task API: registering, sending (what goes on the wire), routing, eager runs, settings."""

from __future__ import annotations

import base64
import json
import types
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kernel import App, ConfigError, Worker
from kernel.client.results import EagerResult
from kernel.wire.exceptions import MaxRetriesExceededError


class Recorder:
    """A broker that keeps what is published (for checking messages without any transport)."""

    url = "recording://"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def publish(self, messages: Any) -> None:
        for message in messages:
            fields = message._asdict()
            self.sent.append({**fields, "body": json.loads(fields["body"])})

    def close(self) -> None:
        pass


@pytest.fixture
def app() -> App:
    app = App("proj", broker="memory://", backend=f"memory://{uuid.uuid4().hex}")
    app._broker = Recorder()  # type: ignore[assignment]
    return app


def sent(app: App) -> dict[str, Any]:
    return app._broker.sent[-1]  # type: ignore[union-attr]


def test_task_names_follow_the_module_and_can_be_given(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="custom.name")
    def other() -> None: ...

    assert add.name == f"{__name__}.add" and "custom.name" in app.tasks
    assert add(2, 3) == 5  # calling a task runs it here


def test_unknown_task_option_is_refused_listing_the_accepted(app: App) -> None:
    with pytest.raises(
        TypeError, match=r"unknown task option.*retries_max.*accepted: .*max_retries"
    ):
        app.task(retries_max=3)(lambda: None)


def test_malformed_rate_limit_is_refused_at_definition(app: App) -> None:
    with pytest.raises(ValueError, match=r"invalid rate limit '10/sec'.*10/s, 100/m, 1000/h"):
        app.task(rate_limit="10/sec")(lambda: None)
    app.task(rate_limit="100/m")(lambda: None)  # fine


def test_time_limits_no_pool_could_honour_are_refused_at_definition(app: App) -> None:
    allowed = "expected a number of seconds above 0, or None for no limit"
    with pytest.raises(ValueError, match=rf"^task option time_limit=-1: {allowed}$"):
        app.task(time_limit=-1)(lambda: None)
    with pytest.raises(ValueError, match=rf"^task option soft_time_limit=0: {allowed}$"):
        app.task(soft_time_limit=0)(lambda: None)
    with pytest.raises(TypeError, match=rf"^task option time_limit='30': {allowed}$"):
        app.task(time_limit="30")(lambda: None)
    assert not any(task.time_limit for task in app.tasks.values())  # none was registered
    limited = app.task(time_limit=30, soft_time_limit=2.5)(lambda: None)
    assert (limited.time_limit, limited.soft_time_limit) == (30, 2.5)
    app.task(time_limit=None)(lambda: None)  # None: no limit


def test_time_limits_are_checked_when_sent(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    allowed = r"expected a number of seconds above 0, 0 for no limit, or None for the task's own"
    with pytest.raises(ValueError, match=rf"^send option time_limit=-1: {allowed}$"):
        add.apply_async((1, 2), time_limit=-1)
    with pytest.raises(ValueError, match=r"^send option soft_time_limit=-0\.5: "):
        app.send_task("proj.add", (1, 2), soft_time_limit=-0.5)
    with pytest.raises(TypeError, match=r"^send option time_limit=True: "):
        add.delay_many([(1, 2)], time_limit=True)
    assert app._broker.sent == []  # type: ignore[union-attr]  # nothing was sent
    add.apply_async((1, 2), time_limit=0, soft_time_limit=None)  # 0 lifts the task's limit
    assert sent(app)["headers"]["timelimit"] == [0, None]


def test_a_malformed_broker_url_is_a_bad_url_naming_the_setting() -> None:
    for url, hint in [
        ("rediss//bad", "did you mean 'rediss://bad'?"),
        ("foo//bar", "did you mean 'foo://bar'?"),
        ("//nowhere", "e.g. redis://host"),
    ]:
        with pytest.raises(ConfigError) as info:
            App(broker=url).pm  # noqa: B018
        assert str(info.value) == (
            f"setting 'broker_url': bad URL {url!r}: expected SCHEME://...; {hint}"
            if "mean" in hint
            else f"setting 'broker_url': bad URL {url!r}: expected SCHEME://..., {hint}"
        )
    with pytest.raises(ConfigError, match=r"bad URL 'redis:/u:\*\*\*\*@host'"):
        App(broker="redis:/u:secret@host").pm  # noqa: B018  # the password is not shown


def test_delay_sends_a_celery_message(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 3)
    message = sent(app)
    headers = message["headers"]
    assert headers["task"] == add.name and headers["id"] == result.id
    assert headers["root_id"] == result.id and headers["ignore_result"] is False
    assert headers["argsrepr"] == "(2, 3)" and headers["origin"].startswith("gen")
    assert message["body"] == [
        [2, 3],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    assert (message["exchange"], message["routing_key"], message["declare"]) == (
        "",
        "celery",
        ["celery"],
    )
    assert message["properties"]["correlation_id"] == result.id
    assert message["content_type"] == "application/json"


def test_apply_async_options(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    before = datetime.now(timezone.utc)
    add.apply_async(
        (1, 2),
        countdown=10,
        expires=60,
        priority=5,
        queue="math",
        time_limit=30,
        soft_time_limit=20,
        headers={"custom_hdr": "x"},
        link=add.s(10),
        link_error=add.si(0, 0),
        task_id="fixed-id",
    )
    message = sent(app)
    headers = message["headers"]
    eta = datetime.fromisoformat(headers["eta"])
    assert before + timedelta(seconds=9) < eta < before + timedelta(seconds=12)
    assert datetime.fromisoformat(headers["expires"]) > eta
    assert headers["timelimit"] == [30, 20] and headers["custom_hdr"] == "x"
    assert headers["id"] == "fixed-id"
    assert message["properties"]["priority"] == 5
    assert 59_000 <= int(message["properties"]["expiration"]) <= 60_000
    assert message["routing_key"] == "math"
    embed = message["body"][2]
    assert embed["callbacks"] == [
        {
            "task": add.name,
            "args": [10],
            "kwargs": {},
            "options": {},
            "subtask_type": None,
            "immutable": False,
        }
    ]
    assert embed["errbacks"][0]["immutable"] is True


def test_unknown_send_option_is_refused(app: App) -> None:
    @app.task
    def noop() -> None: ...

    with pytest.raises(TypeError, match=r"unknown option.*coundown.*accepted: .*countdown"):
        noop.apply_async(coundown=5)


def test_wrong_arguments_fail_when_sending_not_on_the_worker(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match="add\\(\\) missing a required argument: 'y'"):
        add.delay(1)

    @app.task(bind=True)
    def bound(self: Any, x: int) -> int:
        return x

    bound.delay(1)  # the task itself is not an argument the caller gives


def test_send_task_sends_by_name_with_ignore_result_null(app: App) -> None:
    result = app.send_task("elsewhere.defined", [1], {"a": 2})
    headers = sent(app)["headers"]
    assert headers["task"] == "elsewhere.defined" and headers["ignore_result"] is None
    assert result.state == "PENDING"


def test_task_routes_by_name_and_glob_and_function(app: App) -> None:
    app.conf.task_routes = [
        {"proj.reports.*": {"queue": "reports"}, "proj.exact": "exactq"},
        lambda name, args, kwargs: {"queue": "fn"} if name == "proj.viafn" else None,
    ]
    for name, queue in [
        ("proj.reports.daily", "reports"),
        ("proj.exact", "exactq"),
        ("proj.viafn", "fn"),
        ("proj.other", "celery"),
    ]:
        app.send_task(name)
        assert sent(app)["routing_key"] == queue, name
    app.send_task("proj.exact", queue="override")
    assert sent(app)["routing_key"] == "override"


def test_messages_sent_from_a_running_task_name_their_parent(app: App) -> None:
    @app.task
    def child() -> None: ...

    @app.task(bind=True)
    def parent(self: Any) -> str:
        child.delay()
        return str(self.request.id)

    parent_id = parent.apply(task_id="p1", kwargs={}).get()
    headers = sent(app)["headers"]
    assert parent_id == "p1" and headers["parent_id"] == "p1" and headers["root_id"] == "p1"


def test_apply_runs_here_and_get_reraises(app: App) -> None:
    @app.task
    def div(x: int, y: int) -> float:
        return x / y

    assert div.apply((6, 3)).get() == 2
    failed = div.apply((1, 0))
    assert isinstance(failed, EagerResult) and failed.state == "FAILURE"
    with pytest.raises(ZeroDivisionError):
        failed.get()
    assert "ZeroDivisionError" in (failed.traceback or "")


def test_eager_retries_run_at_once_until_max_retries(app: App) -> None:
    attempts: list[int] = []

    @app.task(bind=True, max_retries=3, default_retry_delay=60)
    def flaky(self: Any) -> int:
        attempts.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry()
        return self.request.retries

    assert flaky.apply().get() == 2 and attempts == [0, 1, 2]

    @app.task(bind=True, max_retries=1)
    def hopeless(self: Any) -> None:
        raise self.retry(countdown=0)

    with pytest.raises(MaxRetriesExceededError):
        hopeless.apply().get()


def test_autoretry_with_backoff(app: App) -> None:
    seen: list[int] = []

    @app.task(
        bind=True, autoretry_for=(KeyError,), retry_backoff=2, retry_jitter=False, max_retries=2
    )
    def lookup(self: Any) -> None:
        seen.append(self.request.retries)
        raise KeyError("k")

    with pytest.raises(KeyError):
        lookup.apply().get()
    assert seen == [0, 1, 2]
    assert [lookup.backoff_countdown(n) for n in range(4)] == [2, 4, 8, 16]


def test_always_eager_runs_delay_in_process(app: App) -> None:
    app.conf.task_always_eager = True

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert add.delay(2, 2).get() == 4
    assert app._broker.sent == []  # type: ignore[union-attr]


def test_config_from_a_module_an_object_and_a_mapping() -> None:
    module = types.ModuleType("fake_config")
    module.task_acks_late = True  # type: ignore[attr-defined]
    module.json = json  # an imported module is not a setting  # type: ignore[attr-defined]
    module.Helper = datetime  # an imported class is not a setting either  # type: ignore[attr-defined]
    app = App(config_source=module)
    assert app.conf.task_acks_late is True and "json" not in app.conf.explicit()

    class Config:
        task_default_queue = "jobs"

    app.config_from_object(Config)  # a new source replaces the last one's values, as in Celery
    assert (app.conf.task_default_queue, app.conf.task_acks_late) == ("jobs", False)
    app.config_from_object({"result_expires": 60})
    assert (app.conf.task_default_queue, app.conf.result_expires) == ("celery", 60)


def test_a_worker_refuses_unknown_and_bad_settings_in_the_apps_config() -> None:
    app = App("proj", broker="memory://", backend="memory://", task_acks_lat=True)
    with pytest.raises(
        ConfigError, match="setting 'task_acks_lat': unknown setting; did you mean 'task_acks_late'"
    ):
        Worker(app=app, settings={"worker_pool": "solo"}).build()
    app = App("proj", broker="memory://", backend="memory://", task_serializer="xml")
    with pytest.raises(
        ConfigError, match="setting 'task_serializer': expected one of json, msgpack, yaml, pickle"
    ):
        Worker(app=app, settings={"worker_pool": "solo"}).build()


def test_results_are_disabled_without_a_backend_for_a_server_broker() -> None:
    from kernel.wire.exceptions import BackendError

    app = App(broker="memory://")
    with pytest.raises(BackendError, match="no result backend is configured; set result_backend"):
        app.AsyncResult("x").state  # noqa: B018
    assert App().backend_url == "embedded://"


def test_captured_celery_body_is_what_delay_encodes(app: App) -> None:
    @app.task(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(2, 3)
    from pathlib import Path

    celery = json.loads(
        (Path(__file__).parent / "data" / "celery_captures" / "redis_task_simple.json").read_text()
    )
    assert sent(app)["body"] == json.loads(base64.b64decode(celery["body"]))


def test_delay_many_sends_one_message_per_call(app: App) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    results = add.delay_many([(1, 2), ((3,), {"y": 4}), [5, 6]])
    sent_messages = app._broker.sent[-3:]  # type: ignore[union-attr]
    assert [m["body"][0] for m in sent_messages] == [[1, 2], [3], [5, 6]]
    assert sent_messages[1]["body"][1] == {"y": 4}
    assert [m["headers"]["id"] for m in sent_messages] == [r.id for r in results]
    with pytest.raises(TypeError, match="missing a required argument"):
        add.delay_many([(1,)])
