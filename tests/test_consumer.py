"""The consumer in a real worker (in-memory transport): bad input, policies, acks, eta, expiry."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from kernel import App, Worker, hookimpl
from kernel.plugin import BasePool
from kernel.wire.exceptions import Reject
from kernel.wire.protocol import encode_body, task_message
from kernel.wire.transport import Outgoing


def make_app(**settings: Any) -> App:
    return App(
        "proj",
        broker="memory://",
        backend=f"memory://{uuid.uuid4().hex}",
        task_default_queue=f"q-{uuid.uuid4().hex[:8]}",
        **settings,
    )


@pytest.fixture
def app() -> App:
    return make_app()


@pytest.fixture
def run_worker() -> Iterator[Any]:
    workers: list[Worker] = []

    def start(app: App, *plugins: Any, pool: str = "threads", concurrency: int = 2) -> Worker:
        worker = Worker(
            app=app,
            plugins=list(plugins),
            settings={"worker_pool": pool, "worker_concurrency": concurrency},
        )
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def publish_raw(
    app: App, body: bytes, headers: dict[str, Any], content_type: str = "application/json"
) -> None:
    queue = app.conf.task_default_queue
    properties = {"correlation_id": headers.get("id", "")}
    app.broker.publish(
        [Outgoing(body, queue, "", headers, properties, content_type, "utf-8", [queue])]
    )


def test_bad_messages_are_rejected_with_a_reason_and_work_goes_on(
    app: App, run_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    caplog.set_level(logging.ERROR, logger="kernel.worker")
    run_worker(app)
    publish_raw(app, b"[[2, 3], {}]", {"task": add.name, "id": "two-elements"})
    publish_raw(app, b"[[], {}, {}]", {"task": "nobody.knows", "id": "unknown-task"})
    import pickle

    publish_raw(
        app,
        pickle.dumps([[1, 1], {}, {}]),
        {"task": add.name, "id": "pickled"},
        content_type="application/x-python-serialize",
    )
    publish_raw(app, b"[[1, 1], {}, {}]", {"task": add.name, "id": "bad-eta", "eta": "soonish"})
    publish_raw(app, b"\xff\xfe not json", {"task": add.name, "id": "garbage"})
    assert add.delay(20, 22).get(timeout=10) == 42  # the worker kept going
    text = caplog.text
    assert "rejected message two-elements: malformed body: expected [args, kwargs, embed]" in text
    assert "rejected message unknown-task: unknown task 'nobody.knows'" in text
    assert (
        "rejected message pickled: content type 'application/x-python-serialize' is not accepted"
        in text
    )
    assert "rejected message bad-eta: unparseable eta 'soonish'" in text
    assert "rejected message garbage: undecodable" in text
    unknown = app.AsyncResult("unknown-task")
    assert unknown.state == "FAILURE" and type(unknown.result).__name__ == "NotRegistered"


def test_countdown_runs_at_its_time_and_expired_tasks_are_revoked(
    app: App, run_worker: Any
) -> None:
    ran: list[float] = []

    @app.task
    def stamp() -> float:
        ran.append(time.monotonic())
        return ran[-1]

    run_worker(app)
    began = time.monotonic()
    later = stamp.apply_async(countdown=0.6)
    assert stamp.delay().get(timeout=5) - began < 0.5  # not stuck behind the held one
    assert later.get(timeout=5) - began >= 0.6
    expired = stamp.apply_async(expires=-1)
    with pytest.raises(Exception, match="expired"):
        expired.get(timeout=5)
    assert expired.state == "REVOKED" and len(ran) == 2


def test_defer_hook_holds_a_task_without_holding_a_slot(app: App, run_worker: Any) -> None:
    order: list[str] = []

    @app.task
    def slow_lane(tag: str) -> None:
        order.append(tag)

    @app.task
    def fast_lane(tag: str) -> None:
        order.append(tag)

    class OnePerSecondForSlowLane:
        plugin_name = "limiter"
        last = 0.0

        @hookimpl
        def kernel_task_defer(self, request: Any, task: Any) -> float | None:
            if task is not slow_lane:
                return None
            wait = self.last + 0.5 - time.monotonic()
            if wait > 0:
                return wait
            self.last = time.monotonic()
            return None

    run_worker(app, OnePerSecondForSlowLane(), concurrency=1)
    began = time.monotonic()
    slow = [slow_lane.delay(f"s{i}") for i in range(3)]
    fast = [fast_lane.delay(f"f{i}") for i in range(3)]
    for result in fast:
        result.get(timeout=5)
    fast_done = time.monotonic() - began
    for result in slow:
        result.get(timeout=5)
    assert fast_done < 0.4  # the single slot was not held by waiting slow-lane tasks
    assert time.monotonic() - began >= 1.0  # three slow-lane tasks, 0.5 s apart
    assert order[-1] == "s2"


def test_around_task_wrappers_see_every_task(app: App, run_worker: Any) -> None:
    seen: list[tuple[str, Any]] = []

    class Timing:
        plugin_name = "timing"

        @hookimpl(wrapper=True)
        def kernel_execute_task(self, task: Any, request: Any) -> Any:
            result = yield
            seen.append((request.name, result))
            return result * 10

    @app.task
    def seven() -> int:
        return 7

    run_worker(app, Timing())
    assert seven.delay().get(timeout=5) == 70
    assert seen == [(seven.name, 7)]


def test_late_ack_outcomes(app: App, run_worker: Any) -> None:
    calls: list[int] = []

    @app.task(bind=True, acks_late=True)
    def requeue_once(self: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Reject("not yet", requeue=True)
        return "second time"

    run_worker(app)
    assert requeue_once.delay().get(timeout=5) == "second time"
    assert len(calls) == 2


def test_links_chains_and_errbacks_run(app: App, run_worker: Any) -> None:
    got: list[Any] = []

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def record(value: Any) -> None:
        got.append(value)

    @app.task
    def fail() -> None:
        raise ValueError("nope")

    @app.task
    def on_error(request: Any, exc: BaseException, traceback: str) -> None:
        got.append(("errback", request.id, repr(exc)))

    run_worker(app)
    first = add.apply_async((1, 2), link=record.s())
    assert first.get(timeout=5) == 3
    # a chain as Celery clients send it: the rest of the chain, reversed, in the embed
    chained = app.send_task(add.name, [1, 1], chain=[record.s(), add.s(10)])
    assert chained.get(timeout=5) == 2
    failing = fail.apply_async(link_error=on_error.s())
    with pytest.raises(ValueError):
        failing.get(timeout=5)
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert 3 in got and 12 in got
    assert ("errback", failing.id, "ValueError('nope')") in got
    assert app.AsyncResult(first.id)._get_meta()["children"][0][0][0]  # the link's id is recorded


def test_results_ignored_tracked_and_unserializable(app: App, run_worker: Any) -> None:
    app.conf.task_track_started = True

    @app.task(ignore_result=True)
    def quiet() -> int:
        return 1

    @app.task
    def weird() -> object:
        return object()

    @app.task
    def slow() -> int:
        time.sleep(0.5)
        return 1

    run_worker(app)
    quiet_result = quiet.delay()
    weird_result = weird.delay()
    slow_result = slow.delay()
    deadline = time.monotonic() + 5
    while slow_result.state != "STARTED" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow_result.state == "STARTED"
    with pytest.raises(Exception, match="object"):
        weird_result.get(timeout=5)
    assert slow_result.get(timeout=5) == 1
    time.sleep(0.2)
    assert quiet_result.state == "PENDING"  # nothing stored


def test_warm_stop_gives_back_waiting_messages(app: App) -> None:
    @app.task
    def nap() -> None:
        time.sleep(0.3)

    worker = Worker(app=app, settings={"worker_pool": "solo"})
    worker.start()
    results = [nap.delay() for _ in range(6)]
    time.sleep(0.4)
    worker.stop()
    done = [r for r in results if r.ready()]
    assert 1 <= len(done) < 6
    rest = Worker(app=app, settings={"worker_pool": "threads", "worker_concurrency": 6})
    rest.start()
    try:
        for result in results:
            result.get(timeout=10)
    finally:
        rest.stop()


def test_unhonoured_task_options_are_named_at_start(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(rate_limit="10/s", time_limit=5)
    def limited() -> None: ...

    caplog.set_level(logging.WARNING, logger="kernel.worker")
    Worker(app=app, settings={"worker_pool": "solo"}).build()
    assert (
        "sets rate_limit='10/s', but no enabled plugin honours it; enable one that does "
        "(--plugin ratelimit)" in caplog.text
    )
    assert "sets time_limit=5, but no enabled plugin honours it" in caplog.text


def test_worker_banner_lists_queues_and_tasks(app: App) -> None:
    from kernel.cli.banner import render

    @app.task
    def add() -> None: ...

    text = render(Worker(app=app, settings={"worker_pool": "solo"}).build())
    assert f"queues  : {app.conf.task_default_queue}" in text
    assert f"tasks   : {add.name}" in text
    assert "steps   : backend -> broker -> pool.solo -> consumer" in text


def test_json_round_trip_of_encode_body_matches_kombu() -> None:
    _, _, body = task_message(task_id="1", name="t", origin="o")
    raw, *_ = encode_body(body, "json")
    assert json.loads(raw) == body


def test_child_init_runs_once_where_tasks_run(app: App, run_worker: Any) -> None:
    import threading

    inits: list[tuple[Any, str]] = []

    class Setup:
        plugin_name = "setup"

        @hookimpl
        def kernel_child_init(self, worker: Any) -> None:
            inits.append((worker, threading.current_thread().name))

    @app.task
    def ping() -> str:
        return "pong"

    worker = run_worker(app, Setup(), concurrency=3)
    assert ping.delay().get(timeout=5) == "pong"
    assert [w for w, _ in inits] == [worker]  # threads share one process: once


def test_worker_consumes_only_its_queues(app: App) -> None:
    @app.task
    def where(tag: str) -> str:
        return tag

    suffix = uuid.uuid4().hex[:6]
    mine, other = f"mine-{suffix}", f"other-{suffix}"
    worker = Worker(
        app=app,
        settings={"worker_pool": "solo", "worker_queues": f"{mine},{app.conf.task_default_queue}"},
    )
    worker.start()
    try:
        assert where.apply_async(("a",), queue=mine).get(timeout=5) == "a"
        assert where.delay("default").get(timeout=5) == "default"
        elsewhere = where.apply_async(("b",), queue=other)
        time.sleep(0.5)
        assert elsewhere.state == "PENDING"  # nobody consumes that queue
    finally:
        worker.stop()


def test_worker_exits_with_1_when_the_broker_gives_up(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from kernel.engine.contracts import BROKER
    from kernel.wire.exceptions import BrokerUnreachable

    worker = Worker(app=app, settings={"worker_pool": "solo"})

    def lose_the_broker() -> None:
        from kernel.testing.helpers import wait_until

        assert wait_until(lambda: BROKER in worker.services)

        def poll(timeout: float) -> None:
            raise BrokerUnreachable("gave up reconnecting to memory:// after 3 attempt(s)")

        worker.services[BROKER].poll = poll  # type: ignore[method-assign]

    threading.Thread(target=lose_the_broker, daemon=True).start()
    assert worker.run() == 1
    assert "giving up on the broker: gave up reconnecting" in caplog.text


class HoldingPool(BasePool):
    """A pool that keeps what it is handed until released, and may ask for work ahead."""

    concurrency = 1

    def __init__(self, ahead: int | None) -> None:
        self.ahead = ahead
        self.jobs: list[tuple[Any, Any, Any]] = []

    def apply(self, fn: Any, arg: Any, callback: Any, error_callback: Any, timeouts: Any) -> None:
        self.jobs.append((fn, arg, callback))

    def release(self) -> None:
        jobs, self.jobs = self.jobs, []
        for fn, arg, callback in jobs:
            callback(fn(arg))

    def stop(self) -> None:
        self.release()

    def terminate(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"implementation": "holding", "max-concurrency": 1}


@pytest.mark.parametrize(("ahead", "handed"), [(None, 2), (0, 1), (7, 8)])
def test_the_consumer_hands_the_pool_as_many_as_it_asks_for(
    app: App, run_worker: Any, ahead: int | None, handed: int
) -> None:
    from kernel import Step
    from kernel.engine.contracts import POOL
    from kernel.testing.helpers import wait_until

    pool = HoldingPool(ahead)

    class HoldingStep(Step):
        name = "pool.holding"
        provides = ("pool",)

        def start(self, worker: Worker) -> None:
            worker.services[POOL] = pool

    class HoldingPlugin:
        plugin_name = "pool.holding"

        @hookimpl
        def kernel_steps(self) -> list[type[Step]]:
            return [HoldingStep]

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    results = [add.delay(i, i) for i in range(20)]
    run_worker(app, HoldingPlugin(), pool="holding", concurrency=1)
    assert wait_until(lambda: len(pool.jobs) == handed)
    time.sleep(0.3)  # no more arrive while none has finished
    assert len(pool.jobs) == handed
    pool.release()
    assert wait_until(lambda: len(pool.jobs) == handed)
    deadline = time.monotonic() + 10
    while not all(r.ready() for r in results) and time.monotonic() < deadline:
        pool.release()
        time.sleep(0.05)
    assert [r.get(timeout=5) for r in results] == [2 * i for i in range(20)]


def test_the_window_opens_for_fast_tasks_and_stays_celerys_for_slow_ones(
    app: App, run_worker: Any
) -> None:
    from kernel.engine.contracts import CONSUMER

    @app.task
    def quick() -> None: ...

    @app.task
    def slow() -> None:
        time.sleep(0.05)

    worker = run_worker(app, pool="threads", concurrency=2)
    consumer = worker.services[CONSUMER]
    celerys = 2 * 4  # slots x worker_prefetch_multiplier
    assert consumer.prefetch == celerys
    results = [quick.delay() for _ in range(3000)]
    for result in results:
        result.get(timeout=20)
    opened = consumer.prefetch
    assert opened > celerys * 4, opened
    results = [slow.delay() for _ in range(30)]
    for result in results:
        result.get(timeout=20)
    time.sleep(0.3)  # one more measurement, of an idle worker
    slow.delay().get(timeout=5)
    assert consumer.prefetch < opened / 4, (opened, consumer.prefetch)


def test_a_lone_result_is_stored_where_its_task_ran_and_a_burst_in_batches(
    app: App, run_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from kernel.testing.memory import MemoryBackend

    calls: list[tuple[int, list[str]]] = []
    store = MemoryBackend.store

    def recording(self: MemoryBackend, items: Any) -> None:
        calls.append((threading.get_ident(), [item.task_id for item in items]))
        store(self, items)

    monkeypatch.setattr(MemoryBackend, "store", recording)
    monkeypatch.setattr(MemoryBackend, "stores_in_pool", True)

    @app.task
    def where() -> int:
        return threading.get_ident()

    burst = [where.delay() for _ in range(300)]
    run_worker(app, pool="threads", concurrency=2)
    assert all(r.get(timeout=10) for r in burst)
    ids = {r.id for r in burst}
    alone = [found for _, found in calls if ids & set(found) and len(found) == 1]
    # a burst's results go in batches, by the consumer; only a task that finds the worker
    # otherwise idle (the first, the last, one whose neighbours a slow machine delayed) is
    # stored where it ran
    assert len(alone) <= 30, alone
    assert sum(len(found) for _, found in calls if ids & set(found)) == 300

    for _ in range(5):
        calls.clear()
        result = where.delay()
        ran_in = result.get(timeout=5)
        # stored once, by the pool thread that ran it, before the consumer heard of it
        assert [(t, found) for t, found in calls if result.id in found] == [(ran_in, [result.id])]


def test_a_result_the_pool_cannot_store_is_stored_by_the_consumer(
    app: App, run_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from kernel.testing.memory import MemoryBackend

    store = MemoryBackend.store
    consumer_stores: list[list[str]] = []

    def failing_in_the_pool(self: MemoryBackend, items: Any) -> None:
        if threading.current_thread().name.startswith("kernel-consumer"):
            consumer_stores.append([item.task_id for item in items])
            store(self, items)
        else:
            raise ConnectionError("backend unreachable from this thread")

    monkeypatch.setattr(MemoryBackend, "store", failing_in_the_pool)
    monkeypatch.setattr(MemoryBackend, "stores_in_pool", True)

    @app.task(acks_late=True)
    def add(x: int, y: int) -> int:
        return x + y

    run_worker(app, pool="threads", concurrency=2)
    for i in range(3):
        result = add.delay(i, i)
        assert result.get(timeout=5) == 2 * i
        assert [result.id] in consumer_stores


def test_a_pool_without_a_member_its_contract_declares_stops_the_worker_naming_it(
    app: App,
) -> None:
    from kernel import StepStartError
    from kernel.plugin import PoolStep

    class Bare:  # no ahead, no grow/shrink: BasePool would have given them
        concurrency = 1

        def apply(self, *args: Any) -> None: ...
        def stop(self) -> None: ...
        def terminate(self) -> None: ...
        def info(self) -> dict[str, Any]:
            return {}

    @attrs.define
    class BareStep(PoolStep):
        name = "pool.bare"

        def create(self, worker: Any, concurrency: int, children: Any) -> Any:
            return Bare()

    class Plugin:
        plugin_name = "pool.bare"

        @hookimpl
        def kernel_steps(self) -> list[Any]:
            return [BareStep]

    worker = Worker(app=app, plugins=[Plugin()], settings={"worker_pool": "bare"})
    with pytest.raises(StepStartError, match=r"pool Bare lacks ahead, grow, shrink.*BasePool"):
        worker.start()
    assert worker.started_steps == []  # what had started was stopped again
