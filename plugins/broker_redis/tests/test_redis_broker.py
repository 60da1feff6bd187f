"""The Redis broker: the contract, Celery's layout, and the failures Celery handles badly."""

from __future__ import annotations

import json
import multiprocessing
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from kernel_broker_redis.scripts import FETCH

from kernel import App, Worker
from kernel.plugin import BrokerUnreachable, Outgoing
from kernel.testing.contracts import BrokerContract
from kernel.testing.helpers import wait_until

DB_URL = "redis://127.0.0.1:6379/10"


@pytest.mark.usefixtures("redis_up")
class TestRedisBroker(BrokerContract):
    @pytest.fixture
    def broker_url(self) -> str:
        return DB_URL


def _app(url: str = DB_URL, **settings: Any) -> App:
    return App(
        "proj",
        broker=url,
        backend=f"memory://{uuid.uuid4().hex}",
        task_default_queue=f"q-{uuid.uuid4().hex[:8]}",
        **settings,
    )


@pytest.mark.usefixtures("redis_up")
def test_messages_sit_where_celery_puts_them() -> None:
    app = _app()
    queue = app.conf.task_default_queue
    client = redis.Redis.from_url(DB_URL)
    app.send_task("proj.add", [2, 3])
    app.send_task("proj.add", [4, 5], priority=5)
    plain = json.loads(client.lindex(queue, 0))
    urgent = json.loads(client.lindex(f"{queue}\x06\x163", 0))
    assert plain["headers"]["task"] == "proj.add"
    assert plain["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}
    assert plain["properties"]["body_encoding"] == "base64"
    assert urgent["properties"]["priority"] == 5
    assert client.sismember(f"_kombu.binding.{queue}", f"{queue}\x06\x16\x06\x16{queue}")


@pytest.mark.usefixtures("redis_up")
def test_held_messages_are_in_kombus_unacked_hash() -> None:
    app = _app()
    queue = app.conf.task_default_queue
    client = redis.Redis.from_url(DB_URL)
    app.send_task("proj.add", [1, 1])
    broker = app.open_broker(app.pm)
    got: list[Any] = []
    broker.consume([queue], got.append, 10)
    assert wait_until(lambda: (broker.poll(0.1), bool(got))[1])
    tag = got[0].delivery_tag
    envelope, exchange, routing_key = json.loads(client.hget("unacked", tag))
    assert (exchange, routing_key) == ("", queue) and envelope["properties"]["delivery_tag"] == tag
    assert client.zscore("unacked_index", tag) is not None
    got[0].ack()
    started = time.monotonic()
    # an idle worker sends its acks once they have lingered, not only with its next fetch
    broker.poll(5.0)  # waits no longer than the linger
    broker.poll(0)
    assert time.monotonic() - started < 0.5
    assert client.hget("unacked", tag) is None
    assert client.zscore("unacked_index", tag) is None
    broker.close()


@pytest.mark.usefixtures("redis_up")
def test_an_idle_consumer_is_woken_by_redis_at_once() -> None:
    app = _app()
    queue = app.conf.task_default_queue
    broker = app.open_broker(app.pm)
    got: list[Any] = []
    broker.consume([queue], got.append, 10)
    for _ in range(3):  # nothing there: the consumer ends up waiting in Redis
        broker.poll(0.1)
    waits = []
    for i in range(5):
        time.sleep(0.2)  # the waiting command is in Redis, blocked
        sent = time.monotonic()
        app.send_task("proj.add", [i, i])
        while len(got) <= i and time.monotonic() - sent < 5:
            broker.poll(5.0)  # returns when woken, not at the timeout
        waits.append(time.monotonic() - sent)
        got[i].ack()
    broker.close()
    assert len(got) == 5
    assert max(waits) < 0.1, waits


def _waiting(app: App) -> tuple[Any, list[Any]]:
    """A consumer of the app's empty queue, polled until it waits in Redis (each wait with a
    take queued behind it), and the list its messages arrive in."""
    broker = app.open_broker(app.pm)
    got: list[Any] = []
    broker.consume([app.conf.task_default_queue], got.append, 10)
    for _ in range(3):
        broker.poll(0.1)
    time.sleep(0.1)  # the waiters' commands are in Redis
    return broker, got


@pytest.mark.usefixtures("redis_up")
def test_a_message_taken_after_a_long_wait_is_recorded_as_taken_now() -> None:
    # the visibility sweeps (ours and Celery's) judge a held message by its recorded delivery
    # time: the time the wait began would make it look abandoned at once
    app = _app(broker_transport_options={"visibility_timeout": 1})
    client = redis.Redis.from_url(DB_URL)
    broker, got = _waiting(app)
    time.sleep(1.5)  # longer than the visibility timeout
    app.send_task("proj.add", [1, 1])
    assert wait_until(lambda: (broker.poll(0.1), bool(got))[1])
    assert client.zscore("unacked_index", got[0].delivery_tag) > time.time() - 0.5
    broker.close()


@pytest.mark.usefixtures("redis_up")
def test_a_closed_consumer_takes_nothing_that_arrives_after() -> None:
    app = _app()
    queue = app.conf.task_default_queue
    client = redis.Redis.from_url(DB_URL)
    broker, got = _waiting(app)
    broker.close()  # its waits may still be blocked in Redis, each with a take behind it
    app.send_task("proj.add", [1, 1])
    time.sleep(0.5)
    assert client.llen(queue) == 1
    assert got == []
    assert not [raw for raw in client.hvals("unacked") if queue.encode() in raw]


@pytest.mark.usefixtures("redis_up")
def test_without_blmove_the_consumer_polls_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a server before 6.2 refuses BLMOVE; the take sent behind it runs all the same
    import kernel_broker_redis.waits

    monkeypatch.setattr(kernel_broker_redis.waits, "WAIT", "NO-SUCH-COMMAND")
    app = _app()
    broker = app.open_broker(app.pm)
    fetch_command = broker.fetch_command
    sent: list[Any] = []

    def sending_first(count: int, registered: bool) -> Any:
        if registered and not sent:  # the message is there when the wait's take runs
            sent.append(app.send_task("proj.add", [1, 1]))
        return fetch_command(count, registered)

    broker.fetch_command = sending_first
    got: list[Any] = []
    broker.consume([app.conf.task_default_queue], got.append, 10)
    assert wait_until(lambda: (broker.poll(0.1), bool(got))[1], timeout=5)
    assert got[0].headers["id"] == sent[0].id
    app.send_task("proj.add", [2, 2])  # and later ones are found by looking every second
    assert wait_until(lambda: (broker.poll(0.5), len(got) == 2)[1], timeout=5)
    broker.close()


@pytest.mark.usefixtures("redis_up")
def test_wakeups_are_not_lost_when_one_comes_while_the_last_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # eventlet's os.read lets other green threads run before it reads: one of them may wake
    # the consumer then, and every later wakeup must still end its wait
    import kernel_broker_redis.waits

    app = _app()
    broker = app.open_broker(app.pm)
    read = kernel_broker_redis.waits.os.read
    woke_while_reading: list[bool] = []

    def read_after_a_wakeup(fd: int, n: int) -> bytes:
        if not woke_while_reading:
            woke_while_reading.append(True)
            broker.wakeup()
        return read(fd, n)

    monkeypatch.setattr(kernel_broker_redis.waits.os, "read", read_after_a_wakeup)
    for _ in range(3):
        broker.wakeup()
        started = time.monotonic()
        broker.poll(5.0)
        assert time.monotonic() - started < 1.0
    assert woke_while_reading
    broker.close()


@pytest.mark.usefixtures("redis_up")
def test_a_wakeup_after_close_writes_into_nothing_else() -> None:
    # a pool thread may still wake the consumer once the broker has closed; the descriptors
    # its wake-up pipe had may belong to something else by then
    import os

    app = _app()
    broker = app.open_broker(app.pm)
    broker.consume([app.conf.task_default_queue], lambda message: None, 10)
    broker.poll(0.1)
    broker.close()
    pipes = [os.pipe() for _ in range(16)]  # the numbers just freed are handed out again
    try:
        broker.wakeup()
        for read_end, _ in pipes:
            os.set_blocking(read_end, False)
            with pytest.raises(BlockingIOError):
                os.read(read_end, 1)
    finally:
        for ends in pipes:
            for fd in ends:
                os.close(fd)


def _drain(url: str, queue: str, seen: Any, stop: Any) -> None:
    app = App(broker=url, backend="memory://")
    broker = app.open_broker(app.pm)
    broker.connect()
    broker.consume([queue], lambda m: (seen.append(m.headers["id"]), m.ack()), 50)
    while not stop.is_set():
        broker.poll(0.1)
    broker.close()


@pytest.mark.usefixtures("redis_up")
def test_two_processes_take_every_message_once() -> None:
    app = _app()
    queue = app.conf.task_default_queue
    for i in range(2000):
        app.send_task("t", task_id=str(i))
    with multiprocessing.Manager() as manager:
        seen, stop = manager.list(), manager.Event()
        procs = [
            multiprocessing.Process(target=_drain, args=(DB_URL, queue, seen, stop))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        assert wait_until(lambda: len(seen) >= 2000, timeout=30)
        time.sleep(0.3)
        stop.set()
        for proc in procs:
            proc.join(10)
        assert sorted(seen, key=int) == [str(i) for i in range(2000)]


PROJ = """
import os, time
from kernel import App

app = App("proj", broker={broker!r}, backend="embedded:///{tmp}/results.db",
          broker_transport_options={options!r})

@app.task(name="proj.job", acks_late=True)
def job(marker, seconds):
    with open(marker, "a") as fh:
        fh.write(f"start {{os.getpid()}} {{time.time()}}\\n")
    time.sleep(seconds)
    with open(marker, "a") as fh:
        fh.write("end\\n")
    return "done"
"""


def _proj(tmp_path: Path, broker: str = DB_URL, **options: Any) -> Any:
    (tmp_path / "proj.py").write_text(PROJ.format(broker=broker, tmp=tmp_path, options=options))
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"proj_{uuid.uuid4().hex}", tmp_path / "proj.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("redis_up")
def test_a_dead_workers_messages_come_back_without_waiting_an_hour(
    tmp_path: Path, start_worker: Any
) -> None:
    proj = _proj(tmp_path, worker_lost_timeout=3)  # the visibility timeout stays at an hour
    queue = f"q-{uuid.uuid4().hex[:8]}"
    first = start_worker("-A", "proj:app", "-Q", queue)
    marker = tmp_path / "marker"
    # long enough that the kill lands mid-task even on a machine too busy to act at once
    result = proj.job.apply_async((str(marker), 4), queue=queue)
    assert wait_until(marker.exists, timeout=20)
    began = time.monotonic()
    first.stop(signal.SIGKILL)
    start_worker("-A", "proj:app", "-Q", queue)
    assert result.get(timeout=30) == "done"
    assert time.monotonic() - began < 20
    starts = [line for line in marker.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 2  # killed mid-task, then run again by the new worker


@pytest.mark.usefixtures("redis_up")
def test_a_far_eta_is_neither_lost_nor_run_twice(tmp_path: Path, start_worker: Any) -> None:
    proj = _proj(tmp_path, visibility_timeout=1)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    first = start_worker("-A", "proj:app", "-Q", queue)
    start_worker("-A", "proj:app", "-Q", queue)  # a second worker sweeps stale unacked entries
    marker = tmp_path / "marker"
    sent = time.time()
    result = proj.job.apply_async((str(marker), 0), queue=queue, countdown=5)
    assert result.get(timeout=30) == "done"
    time.sleep(2)  # room for a duplicate to show up
    starts = [line for line in marker.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 1, starts  # five visibility timeouts passed while it waited
    assert float(starts[0].split()[2]) >= sent + 5
    assert first.proc.poll() is None


@pytest.mark.usefixtures("redis_up")
def test_a_task_longer_than_the_visibility_timeout_runs_once(
    tmp_path: Path, start_worker: Any
) -> None:
    proj = _proj(tmp_path, visibility_timeout=1)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    start_worker("-A", "proj:app", "-Q", queue)
    start_worker("-A", "proj:app", "-Q", queue)
    marker = tmp_path / "marker"
    assert proj.job.apply_async((str(marker), 3), queue=queue).get(timeout=30) == "done"
    time.sleep(1)
    assert sum(line.startswith("start") for line in marker.read_text().splitlines()) == 1


def test_outage_worker_reconnects_and_consumes_again(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.WARNING)
    app = _app(redis_server.url, task_acks_late=True)
    done: list[int] = []

    @app.task
    def work(n: int) -> int:
        time.sleep(0.05)
        done.append(n)
        return n

    worker = Worker(app=app, settings={"worker_pool": "threads", "worker_concurrency": 4})
    worker.start()
    try:
        for n in range(40):
            work.delay(n)
        assert wait_until(lambda: len(done) >= 5)
        redis_server.stop()  # the broker goes away while tasks flow
        time.sleep(2)
        redis_server.start()
        assert wait_until(lambda: set(done) >= set(range(40)), timeout=30), sorted(
            set(range(40)) - set(done)
        )
        after = work.delay(99)  # it consumes again, not merely connected
        assert wait_until(lambda: 99 in done, timeout=20)
        assert after.id
    finally:
        worker.stop()
    text = caplog.text
    assert "lost the broker at redis://127.0.0.1:" in text
    assert "reconnected to the broker" in text and "consuming again" in text


def test_a_take_whose_reply_the_outage_lost_is_given_back_at_once(redis_server: Any) -> None:
    # Redis ran a take, recording the message as this consumer's, and then went away before
    # the reply reached it: the message must come back with the connection, not an hour later
    app = _app(redis_server.url)
    broker = app.open_broker(app.pm)
    got: list[Any] = []
    broker.consume([app.conf.task_default_queue], got.append, 10)
    app.send_task("proj.add", [1, 1])
    client = redis.Redis.from_url(redis_server.url)
    fetch = broker.fetch_command(10, False)
    taken = client.eval(FETCH, fetch[2], *fetch[3:])  # the take whose reply never arrives
    assert len(taken) == 3 and client.hlen("unacked") == 1
    redis_server.stop()
    broker.poll(0.1)  # notices the outage
    redis_server.start()
    assert wait_until(lambda: (broker.poll(0.1), bool(got))[1], timeout=10)
    assert got[0].delivery_info["redelivered"] is True
    got[0].ack()
    broker.close()
    assert client.hlen("unacked") == 0


def test_publishing_retries_while_the_broker_is_briefly_down(redis_server: Any) -> None:
    app = _app(
        redis_server.url,
        task_publish_retry_policy={
            "max_retries": 10,
            "interval_start": 0.2,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
    app.send_task("proj.x")  # connect while it is up
    redis_server.stop()
    threading.Timer(1.0, redis_server.start).start()
    app.send_task("proj.x")  # retried until the server is back
    assert redis.Redis(port=redis_server.port).llen(app.conf.task_default_queue) == 2


def test_publishing_gives_up_with_a_clear_error(redis_server: Any) -> None:
    app = _app(
        redis_server.url, task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1}
    )
    redis_server.stop()
    with pytest.raises(BrokerUnreachable) as info:
        app.send_task("proj.x")
    message = str(info.value)
    assert f"127.0.0.1:{redis_server.port}" in message and "\n" not in message


@pytest.mark.usefixtures("redis_up")
def test_failover_list_uses_the_next_url() -> None:
    app = _app("redis://127.0.0.1:1/0;" + DB_URL)
    broker = app.open_broker(app.pm)
    broker.connect()
    broker.publish([Outgoing(b"{}", "failover-check", "", {}, {}, "application/json", "utf-8")])
    assert redis.Redis.from_url(DB_URL).rpop("failover-check") is not None


def test_unreachable_broker_is_one_line_naming_host_and_port(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "proj.py").write_text(
        "from kernel import App\napp = App('proj', broker='redis://127.0.0.1:1/0', "
        "backend='memory://')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "kernel", "start", "-A", "proj:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "127.0.0.1:1" in line]
    assert len(errors) == 1 and "cannot reach broker" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_sentinel_finds_the_master(redis_server: Any, tmp_path: Path, port: int) -> None:
    import subprocess

    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\n"
        f"sentinel monitor kernelmaster 127.0.0.1 {redis_server.port} 1\n"
    )
    sentinel = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: _answers(port), timeout=10)
        app = App(
            "proj",
            broker=f"sentinel://127.0.0.1:{port}",
            backend="memory://s",
            broker_transport_options={"master_name": "kernelmaster"},
            task_default_queue="sentinel-q",
        )

        @app.task
        def echo(x: int) -> int:
            return x

        worker = Worker(app=app, settings={"worker_pool": "solo"})
        worker.start()
        try:
            assert echo.delay(7).get(timeout=10) == 7
        finally:
            worker.stop()
        assert redis.Redis(port=redis_server.port).exists("_kombu.binding.sentinel-q")
    finally:
        sentinel.terminate()
        sentinel.wait(10)


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port).ping())
    except redis.ConnectionError:
        return False


def test_a_bad_url_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "kernel", "call", "-b", "redis://127.0.0.1:notaport/0", "proj.x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "setting 'broker_url': bad port in" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_rediss_urls_make_tls_connections() -> None:
    from kernel_broker_redis.urls import targets
    from redis.connection import SSLConnection

    (target,) = targets("rediss://:secret@redis.example:6380/0", {}, 4.0)
    client = target.client()
    assert client.connection_pool.connection_class is SSLConnection
    assert (target.host, target.port) == ("redis.example", 6380)
    assert "secret" not in target.where
