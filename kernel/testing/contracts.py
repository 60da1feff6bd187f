"""Contract tests every pool, broker and result backend plugin subclasses (ours and third-party).

Subclass in your plugin's tests and provide the fixture named in the class docstring::

    class TestMyBroker(BrokerContract):
        @pytest.fixture
        def broker_url(self, tmp_path):
            return "mything://..."
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..client.app import App
from ..engine.contracts import POOL, Pool
from ..engine.worker import Worker
from ..wire.meta import FAILURE, STARTED, SUCCESS, result_meta
from ..wire.transport import Broker, Outgoing, QueueSpec, ResultBackend, Stored
from .helpers import Gate, peak_concurrency
from .helpers import wait_until as _wait
from .pool_probes import ChildInitRecorder, NamedPlugin, Notebook, RecycleEvery, pid_of, slot_id

RunWorker = Callable[..., contextlib.AbstractContextManager[Worker]]


def _double(x: int) -> int:
    return x * 2


def _nap(n: int) -> int:
    time.sleep(0.05)
    return n


class _PoolUnderTest:
    """The fixtures naming the pool both pool contracts test."""

    @pytest.fixture
    def pool_name(self) -> str:
        raise NotImplementedError("subclasses provide the pool_name fixture")

    @pytest.fixture
    def pool_plugin(self) -> Any:
        """The pool's plugin object, for a pool not installed (yet): it is registered as
        pool.NAME. None, the default, uses the installed entry point pool.NAME."""
        return None

    @pytest.fixture
    def pool_plugins(self, pool_name: str, pool_plugin: Any) -> list[Any]:
        """What a worker on the pool registers besides what it finds installed."""
        return [] if pool_plugin is None else [NamedPlugin(pool_plugin, f"pool.{pool_name}")]


class PoolContract(_PoolUnderTest):
    """Provide `pool_name` (the NAME of pool.NAME) and `concurrency` (slots to test with);
    before the pool is installed, also `pool_plugin` (its plugin object).

    Checks the Pool role object directly, then a real worker using the pool end to end on the
    embedded broker: that the core's child hooks reach where tasks run, recycling, resizing,
    a draining stop and a prompt terminate. A pool that honours time limits also subclasses
    `TimeLimitContract`.

    What does not apply to a pool is said by a class attribute, and then tested the other way:
    `resizable = False` (a pool of a fixed size, as solo) checks that grow and shrink refuse
    (BasePool's NotImplementedError) instead of pretending. Whether a pool recycles is its
    step's `recycles`: one that does not must say so at start-up when a policy asks.
    """

    concurrency = 2
    resizable = True

    @pytest.fixture
    def run_worker(self, pool_name: str, pool_plugins: list[Any]) -> RunWorker:
        """`with run_worker(*plugins, app=None) as worker:` a started worker on this pool
        (for an app, register its tasks first: a pool may fork), stopped after."""
        settings = {"worker_pool": pool_name, "worker_concurrency": self.concurrency}

        @contextlib.contextmanager
        def run(*plugins: Any, app: App | None = None) -> Iterator[Worker]:
            worker = Worker(app=app, plugins=[*pool_plugins, *plugins], settings=settings)
            worker.start()
            try:
                yield worker
            finally:
                worker.stop()

        return run

    @pytest.fixture
    def pool(self, run_worker: RunWorker) -> Iterator[Pool]:
        with run_worker() as worker:
            yield worker.services[POOL]

    @pytest.fixture
    def app(self, tmp_path: Any) -> Iterator[App]:
        app = App(
            "contract",
            broker=f"embedded:///{tmp_path}/broker.db",
            backend=f"embedded:///{tmp_path}/results.db",
        )
        yield app
        app.close()

    @staticmethod
    def _run(pool: Pool, fn: Any, arg: Any) -> Any:
        """Apply through the pool and wait for its callback (or error callback)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def ok(result: Any) -> None:
            box["result"] = result
            done.set()

        def failed(exc: BaseException) -> None:
            box["error"] = exc
            done.set()

        pool.apply(fn, arg, ok, failed)
        assert done.wait(10), "the pool never called back"
        return box

    def test_runs_a_function_and_reports_its_result(self, pool: Pool) -> None:
        assert self._run(pool, lambda x: x * 2, 21) == {"result": 42}

    def test_reports_a_function_that_raises_through_the_error_callback(self, pool: Pool) -> None:
        def explode(_: Any) -> None:
            raise RuntimeError("boom")

        box = self._run(pool, explode, None)
        assert isinstance(box.get("error"), RuntimeError)

    def test_runs_up_to_concurrency_at_once(self, pool: Pool) -> None:
        assert peak_concurrency(pool, pool.concurrency + 1) == pool.concurrency

    def test_info_names_the_implementation(self, pool: Pool, pool_name: str) -> None:
        info = pool.info()
        assert info["implementation"] == pool_name
        assert info["max-concurrency"] == pool.concurrency

    def test_ahead_is_none_or_a_count_of_jobs(self, pool: Pool) -> None:
        # the consumer hands the pool its slots' worth plus `ahead`: before any job has been
        # measured, and after a run of fast ones (a batching pool then asks for more)
        for _ in range(2):
            ahead = pool.ahead
            assert ahead is None or (type(ahead) is int and ahead >= 0), ahead
            for n in range(50):
                assert self._run(pool, _double, n) == {"result": n * 2}

    def test_grow_adds_slots_that_run_at_once(self, pool: Pool) -> None:
        size = pool.concurrency
        if not self.resizable:
            with pytest.raises(NotImplementedError):
                pool.grow(2)
            assert pool.concurrency == size
            return
        pool.grow(2)
        assert pool.concurrency == size + 2
        assert peak_concurrency(pool, size + 3) == size + 2

    def test_shrink_lets_running_work_finish_then_runs_fewer(self, pool: Pool) -> None:
        size = pool.concurrency
        if not self.resizable:
            with pytest.raises(NotImplementedError):
                pool.shrink(1)
            assert pool.concurrency == size
            return
        pool.grow(1)
        gate = Gate()
        gate.submit(pool, size + 1)
        try:
            assert gate.wait_running(size + 1), f"{gate.running} of {size + 1} jobs started"
            pool.shrink(1)
            assert pool.concurrency == size
        finally:
            gate.open()
        assert gate.wait_finished(size + 1)
        assert gate.finished == ["held"] * (size + 1)  # none lost or failed by the shrink
        assert peak_concurrency(pool, size + 1) == size

    def test_stop_lets_every_submitted_job_call_back_first(self, run_worker: RunWorker) -> None:
        called: list[Any] = []
        with run_worker() as worker:
            pool = worker.services[POOL]
            jobs = 3 * pool.concurrency
            for n in range(jobs):
                pool.apply(_nap, n, called.append, called.append)
            worker.stop()  # the pool's step stops the pool: it drains
            assert sorted(called) == list(range(jobs))

    def test_terminate_returns_promptly_while_a_job_blocks(self, pool: Pool) -> None:
        gate = Gate(timeout=30)
        gate.submit(pool, 1)
        try:
            assert gate.wait_running(1), "the job never started"
            began = time.monotonic()
            pool.terminate()  # must not raise
            assert time.monotonic() - began < 5
        finally:
            gate.open()  # a pool that cannot kill its slots (threads) lets the job end

    def test_calls_child_init_where_its_tasks_run(
        self, app: App, run_worker: RunWorker, tmp_path: Any
    ) -> None:
        notes = Notebook(tmp_path / "notes")

        @app.task
        def where() -> int:
            notes.note("task")
            return os.getpid()

        with run_worker(ChildInitRecorder(notes), app=app):
            ran = {r.get(timeout=20) for r in [where.delay() for _ in range(20)]}
        processes = {pid_of(slot) for slot in notes.slots("init")}
        assert ran <= processes, "tasks ran in a process where kernel_child_init never ran"
        assert len(processes) == len(notes.slots("init")), "kernel_child_init ran twice"
        first: dict[int, str] = {}
        for what, slot, _ in notes.read():
            first.setdefault(pid_of(slot), what)
        assert {first[pid] for pid in ran} == {"init"}, "a task ran before kernel_child_init"

    def test_a_recycling_policy_is_asked_after_every_task_and_loses_none(
        self, app: App, run_worker: RunWorker, tmp_path: Any, caplog: Any
    ) -> None:
        notes = Notebook(tmp_path / "notes")
        tasks = 8 * self.concurrency

        @app.task
        def where(n: int) -> str:
            return slot_id()

        with run_worker(RecycleEvery(notes, every=3), app=app) as worker:
            (step,) = [step for step in worker.steps if "pool" in step.provides]
            slots = [r.get(timeout=30) for r in [where.delay(n) for n in range(tasks)]]
        assert len(slots) == tasks  # every result arrived
        asked = notes.read()
        if not getattr(step, "recycles", False):
            assert asked == [], "a pool whose step says it cannot recycle asked anyway"
            warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any(step.name in m and "kernel_recycle_child" in m for m in warned), warned
            return
        # asked once after each task, in the slot that ran it, with that slot's count
        assert collections.Counter(slot for _, slot, _ in asked) == collections.Counter(slots)
        per_slot = collections.Counter(slots)
        assert max(per_slot.values()) <= 3, f"a slot told to go ran on: {per_slot}"
        assert len(per_slot) >= tasks // 3
        for slot, count in per_slot.items():
            counts = [int(detail) for _, noted, detail in asked if noted == slot]
            assert counts == list(range(1, count + 1)), (slot, counts)

    def test_runs_tasks_for_a_real_worker(self, app: App, run_worker: RunWorker) -> None:
        @app.task
        def mul(x: int, y: int) -> int:
            return x * y

        @app.task
        def fails() -> None:
            raise KeyError("missing")

        with run_worker(app=app):
            results = [mul.delay(i, 3) for i in range(50)]
            assert [r.get(timeout=20) for r in results] == [i * 3 for i in range(50)]
            with pytest.raises(KeyError, match="missing"):
                fails.delay().get(timeout=20)


class BrokerContract:
    """Provide `broker_url`: a URL of a reachable broker with empty queues for each test."""

    @pytest.fixture
    def broker_url(self) -> str:
        raise NotImplementedError("subclasses provide the broker_url fixture")

    @pytest.fixture
    def app(self, broker_url: str) -> Iterator[App]:
        app = App("contract", broker=broker_url, backend="memory://")
        yield app
        app.close()

    @pytest.fixture
    def queue(self) -> str:
        return f"contract-{uuid.uuid4().hex[:8]}"

    def open(self, app: App) -> Broker:
        broker = app.open_broker(app.pm)
        broker.connect()
        return broker

    @staticmethod
    def message(queue: str, i: int, **headers: Any) -> Outgoing:
        return Outgoing(
            f'{{"n": {i}}}'.encode(),
            queue,
            "",
            {"task": "t", "id": str(i), "custom": [i], **headers},
            {"correlation_id": str(i), "priority": 0},
            "application/json",
            "utf-8",
            [queue],
        )

    def send(self, broker: Broker, queue: str, n: int) -> None:
        for i in range(n):  # one by one: a single send is a batch of one
            broker.publish([self.message(queue, i)])

    @staticmethod
    def drain(
        broker: Broker,
        queue: str,
        want: int,
        *,
        ack: bool = True,
        prefetch: int = 100,
        timeout: float = 10,
    ) -> list[Any]:
        got: list[Any] = []

        def on_message(message: Any) -> None:
            got.append(message)
            if ack:
                message.ack()

        broker.consume([queue], on_message, prefetch)
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            broker.poll(0.1)
        return got

    def test_delivers_body_headers_and_properties_intact(self, app: App, queue: str) -> None:
        sender, receiver = self.open(app), self.open(app)
        self.send(sender, queue, 1)
        (message,) = self.drain(receiver, queue, 1)
        assert message.body == b'{"n": 0}'
        assert message.headers["custom"] == [0] and message.headers["id"] == "0"
        assert message.properties["correlation_id"] == "0"
        assert message.content_type == "application/json"
        receiver.close()
        sender.close()

    def test_a_compressed_body_is_decompressed_once(self, app: App, queue: str) -> None:
        # the consumer decompresses a body whose headers name a compression: a broker may
        # deliver it as sent, or plain without that header, but not plain with it
        sender, receiver = self.open(app), self.open(app)
        compressed = self.message(queue, 0, compression="application/x-gzip")
        sender.publish([compressed._replace(body=zlib.compress(b'{"n": 0}'))])
        (message,) = self.drain(receiver, queue, 1)
        compressed = message.headers.get("compression") == "application/x-gzip"
        payload = zlib.decompress(message.body) if compressed else bytes(message.body)
        assert payload == b'{"n": 0}'
        receiver.close()
        sender.close()

    def test_delivers_in_order_and_only_once(self, app: App, queue: str) -> None:
        sender, receiver = self.open(app), self.open(app)
        self.send(sender, queue, 50)
        got = self.drain(receiver, queue, 50)
        assert [m.headers["id"] for m in got] == [str(i) for i in range(50)]
        receiver.poll(0.3)
        assert len(got) == 50
        receiver.close()
        sender.close()

    def test_unacknowledged_messages_come_back_after_close(self, app: App, queue: str) -> None:
        sender, first = self.open(app), self.open(app)
        self.send(sender, queue, 3)
        assert len(self.drain(first, queue, 3, ack=False)) == 3
        first.close()  # no ack: at-least-once means another consumer gets them
        second = self.open(app)
        again = self.drain(second, queue, 3)
        assert sorted(m.headers["id"] for m in again) == ["0", "1", "2"]
        second.close()
        sender.close()

    def test_reject_with_requeue_delivers_again(self, app: App, queue: str) -> None:
        sender, receiver = self.open(app), self.open(app)
        self.send(sender, queue, 1)
        seen: list[Any] = []

        def on_message(message: Any) -> None:
            seen.append(message)
            if len(seen) == 1:
                message.reject(requeue=True)
            else:
                message.ack()

        receiver.consume([queue], on_message, 10)

        def delivered_twice() -> bool:
            receiver.poll(0.05)
            return len(seen) >= 2

        assert _wait(delivered_twice, timeout=10)
        assert seen[0].headers["id"] == seen[1].headers["id"] == "0"
        receiver.close()
        sender.close()

    def test_prefetch_bounds_unacknowledged_deliveries(self, app: App, queue: str) -> None:
        sender, receiver = self.open(app), self.open(app)
        self.send(sender, queue, 10)
        got = self.drain(receiver, queue, 10, ack=False, prefetch=3, timeout=1.5)
        assert len(got) == 3
        got[0].ack()
        deadline = time.monotonic() + 5
        while len(got) < 4 and time.monotonic() < deadline:
            receiver.poll(0.1)
        assert len(got) == 4
        receiver.close()
        sender.close()

    def test_purge_deletes_waiting_messages(self, app: App, queue: str) -> None:
        broker = self.open(app)
        self.send(broker, queue, 7)
        assert broker.purge([queue]) == 7
        assert self.drain(broker, queue, 1, timeout=0.5) == []
        broker.close()

    def test_wakeup_interrupts_a_blocked_poll(self, app: App, queue: str) -> None:
        broker = self.open(app)
        broker.consume([queue], lambda m: m.ack(), 10)
        if not broker.wakes_up:
            broker.close()
            pytest.skip("this broker cannot be woken; the worker polls it briefly instead")
        threading.Timer(0.2, broker.wakeup).start()
        began = time.monotonic()
        broker.poll(10)
        assert time.monotonic() - began < 3
        broker.close()

    def test_a_batch_is_delivered_in_order(self, app: App, queue: str) -> None:
        broker = self.open(app)
        broker.publish([self.message(queue, i) for i in range(30)])
        receiver = self.open(app)
        got = self.drain(receiver, queue, 30)
        assert [m.headers["id"] for m in got] == [str(i) for i in range(30)]
        receiver.close()
        broker.close()

    def test_declares_its_abilities(self, app: App, queue: str) -> None:
        # the worker reads these without probing: a broker must have them (BaseBroker does)
        broker = self.open(app)
        assert isinstance(broker.wakes_up, bool)
        self.send(broker, queue, 1)
        (message,) = self.drain(broker, queue, 1, ack=False)
        assert message.valid is True  # delivered on a live connection
        message.ack()
        broker.close()

    def test_publishing_from_many_threads(self, app: App, queue: str) -> None:
        broker = self.open(app)
        threads = [threading.Thread(target=self.send, args=(broker, queue, 20)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        receiver = self.open(app)
        assert len(self.drain(receiver, queue, 80)) == 80
        receiver.close()
        broker.close()


class BackendContract:
    """Provide `backend_url`: a URL of a reachable result backend, empty for each test.

    A backend that delivers results as messages (rpc://) also needs a broker: override
    `broker_url` (default: the in-memory one)."""

    @pytest.fixture
    def backend_url(self) -> str:
        raise NotImplementedError("subclasses provide the backend_url fixture")

    @pytest.fixture
    def broker_url(self) -> str:
        return "memory://"

    @pytest.fixture
    def backend_app(self, backend_url: str, broker_url: str) -> Iterator[App]:
        app = App("contract", broker=broker_url, backend=backend_url)
        yield app
        app.close()

    @pytest.fixture
    def backend(self, backend_app: App) -> Iterator[ResultBackend]:
        backend = backend_app.open_backend(backend_app.pm)
        self.reply_to = backend_app.oid  # where a worker would send this client's results
        yield backend
        backend.close()

    def stored(self, backend: ResultBackend, task_id: str, state: str, result: Any) -> Stored:
        meta = result_meta(task_id, state, result)
        return Stored(task_id, state, backend.encode(meta), self.reply_to)

    def put(self, backend: ResultBackend, task_id: str, state: str, result: Any) -> None:
        backend.store([self.stored(backend, task_id, state, result)])

    def test_declares_its_abilities(self, backend: ResultBackend) -> None:
        # clients and workers read these without probing: a backend must have them
        assert isinstance(backend.stores_in_pool, bool)
        queue = backend.reply_queue(self.reply_to)
        assert queue is None or (isinstance(queue, QueueSpec) and queue.name == self.reply_to)
        channel = backend.notify_channel(self.reply_to)
        assert channel is None or (isinstance(channel, str) and channel)

    def test_unknown_task_reads_as_nothing_stored(self, backend: ResultBackend) -> None:
        assert backend.get(str(uuid.uuid4())) is None

    def test_stores_and_reads_celerys_meta(self, backend: ResultBackend) -> None:
        from datetime import datetime, timezone

        task_id = str(uuid.uuid4())
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        self.put(backend, task_id, SUCCESS, {"sum": 5, "at": when})
        meta = backend.get(task_id)
        assert meta is not None
        assert meta["status"] == SUCCESS and meta["task_id"] == task_id
        assert meta["result"] == {"sum": 5, "at": when}  # kombu's type tags survive
        assert list(meta) == ["status", "result", "traceback", "children", "date_done", "task_id"]

    def test_success_is_never_replaced(self, backend: ResultBackend) -> None:
        task_id = str(uuid.uuid4())
        self.put(backend, task_id, STARTED, None)
        self.put(backend, task_id, SUCCESS, 1)
        self.put(backend, task_id, FAILURE, ValueError("late duplicate"))
        meta = backend.get(task_id)
        assert meta is not None and (meta["status"], meta["result"]) == (SUCCESS, 1)

    def test_stores_a_batch(self, backend: ResultBackend) -> None:
        ids = [str(uuid.uuid4()) for _ in range(100)]
        backend.store([self.stored(backend, i, SUCCESS, n) for n, i in enumerate(ids)])
        assert [backend.get(i)["result"] for i in ids] == list(range(100))  # type: ignore[index]

    def test_forget_deletes(self, backend: ResultBackend) -> None:
        task_id = str(uuid.uuid4())
        self.put(backend, task_id, SUCCESS, 1)
        backend.forget(task_id)
        assert backend.get(task_id) is None

    def test_wait_for_returns_when_another_thread_stores(self, backend: ResultBackend) -> None:
        task_id = str(uuid.uuid4())
        storer = threading.Timer(0.3, self.put, (backend, task_id, SUCCESS, "late"))
        storer.start()
        meta = backend.wait_for(task_id, deadline=time.monotonic() + 10, interval=0.05)
        storer.join(10)  # it may still be reading its reply; let it finish before teardown
        assert meta is not None and meta["result"] == "late"

    def test_wait_for_gives_up_at_the_deadline(self, backend: ResultBackend) -> None:
        began = time.monotonic()
        assert backend.wait_for(str(uuid.uuid4()), deadline=began + 0.3, interval=0.05) is None
        assert 0.25 < time.monotonic() - began < 3


class TimeLimitContract(_PoolUnderTest):
    """For pools that honour time limits (and say so with `kernel_task_options`): provide
    `pool_name` and, before the pool is installed, `pool_plugin`, as for PoolContract. A real
    worker, embedded broker."""

    @pytest.fixture(autouse=True)
    def _given(self, pool_plugins: list[Any]) -> None:
        self._plugins = pool_plugins  # for start(), which the tests call without fixtures

    @pytest.fixture
    def app(self, tmp_path: Any, pool_name: str) -> Iterator[App]:
        app = App(
            "limits",
            broker=f"embedded:///{tmp_path}/broker.db",
            backend=f"embedded:///{tmp_path}/results.db",
        )
        yield app
        app.close()

    def start(self, app: App, pool_name: str, concurrency: int = 2) -> Worker:
        worker = Worker(
            app=app,
            plugins=list(self._plugins),
            settings={"worker_pool": pool_name, "worker_concurrency": concurrency},
        )
        worker.start()
        return worker

    def test_soft_limit_raises_inside_the_task_which_may_catch_it(
        self, app: App, pool_name: str
    ) -> None:
        from ..wire.exceptions import SoftTimeLimitExceeded

        @app.task(soft_time_limit=0.5)
        def patient() -> str:
            try:
                for _ in range(100):  # Python-level work, so every pool can interrupt it
                    time.sleep(0.05)
            except SoftTimeLimitExceeded:
                return "caught the soft limit"
            return "finished"

        worker = self.start(app, pool_name)
        try:
            began = time.monotonic()
            assert patient.delay().get(timeout=20) == "caught the soft limit"
            assert time.monotonic() - began < 4
        finally:
            worker.stop()

    def test_hard_limit_fails_the_task_and_frees_its_slot(self, app: App, pool_name: str) -> None:
        from ..wire.exceptions import TimeLimitExceeded

        @app.task(time_limit=0.5)
        def endless() -> None:
            while True:
                time.sleep(0.05)

        @app.task
        def quick(x: int) -> int:
            return x

        worker = self.start(app, pool_name, concurrency=1)
        try:
            began = time.monotonic()
            with pytest.raises(TimeLimitExceeded):
                endless.delay().get(timeout=20)
            assert time.monotonic() - began < 5
            assert quick.delay(7).get(timeout=20) == 7  # the one slot is free again
        finally:
            worker.stop()

    def test_limits_from_the_message_and_changed_at_run_time(
        self, app: App, pool_name: str
    ) -> None:
        from ..engine.contracts import CONSUMER
        from ..wire.exceptions import TimeLimitExceeded

        @app.task
        def nap(seconds: float) -> str:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.05)
            return "rested"

        worker = self.start(app, pool_name)
        try:
            with pytest.raises(TimeLimitExceeded):
                nap.apply_async((5,), time_limit=0.5).get(timeout=20)
            worker.services[CONSUMER].set_time_limit(nap.name, None, 0.5)
            with pytest.raises(TimeLimitExceeded):
                nap.delay(5).get(timeout=20)
            worker.services[CONSUMER].set_time_limit(nap.name, None, None)
            assert nap.delay(0.2).get(timeout=20) == "rested"
        finally:
            worker.stop()
