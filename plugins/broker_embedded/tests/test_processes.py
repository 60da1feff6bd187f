"""Several real processes sharing one broker file: claims, crashes, leases, wake-ups, routing."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_broker_embedded import Transport
from kombu import Connection, Exchange, Queue

PLUGIN_ROOT = pathlib.Path(__file__).resolve().parents[1]

# One script plays every child role; its configuration arrives as JSON in argv[1]
# and it reports events as JSON lines on stdout.
CHILD = r"""
import json, socket, sys, time
from kombu import Connection, Exchange, Queue
from kernel_broker_embedded import Transport

cfg = json.loads(sys.argv[1])

def out(**event):
    event.setdefault("t", time.time())
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()

conn = Connection(cfg["url"], transport=Transport, transport_options=cfg.get("options", {}))
role = cfg["role"]

if role == "publish":
    with conn:
        producer = conn.Producer(serializer="json")
        for body in cfg["bodies"]:
            producer.publish(body, exchange=cfg.get("exchange", ""), routing_key=cfg["routing_key"],
                             declare=[Queue(cfg["routing_key"], routing_key=cfg["routing_key"])]
                             if not cfg.get("exchange") else None)
    out(event="done")
    sys.exit(0)

hold = cfg.get("hold", 0)  # seconds before acking; negative: never ack

def on_message(body, message):
    out(event="msg", body=body, redelivered=bool(message.delivery_info.get("redelivered")))
    if hold < 0:
        return
    if hold:
        time.sleep(hold)
    message.ack()
    out(event="acked", body=body)

with conn:
    queues = [Queue(name, routing_key=name) for name in cfg["queues"]]
    with conn.Consumer(queues, callbacks=[on_message], accept=["json"]) as consumer:
        consumer.qos(prefetch_count=cfg.get("prefetch", 0))
        out(event="ready")
        if role == "idle":
            try:
                conn.drain_events(timeout=0.3)  # settle: the first call binds the doorbell
            except socket.timeout:
                pass
        cpu0, wall0 = time.process_time(), time.time()
        idle_exit = cfg.get("idle_exit")
        deadline = time.time() + cfg.get("max_time", 30)
        last = time.time()
        while time.time() < deadline:
            if role == "idle" and time.time() - wall0 >= cfg["idle_for"]:
                out(event="cpu", cpu=time.process_time() - cpu0, wall=time.time() - wall0)
                break
            try:
                conn.drain_events(timeout=0.5)
                last = time.time()
            except socket.timeout:
                if idle_exit is not None and time.time() - last >= idle_exit:
                    break
out(event="exit")
"""


class Child:
    """A child process running CHILD, with its events collected by a reader thread."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(cfg)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def expect(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event!r} within {timeout}s; saw {self.seen}")
            try:
                got = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(got)
            if got["event"] == event:
                return got

    def collect(self, event: str, timeout: float) -> list[dict[str, Any]]:
        """All ``event`` events until the process exits (or ``timeout``)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(timeout=1)
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                break
        return [e for e in self.seen if e["event"] == event]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except OSError:
                pass
            self.proc.kill()
        self.proc.wait(timeout=5)


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    return f"embedded:///{tmp_path / 'broker.db'}"


@pytest.fixture
def spawn(url: str) -> Iterator[Any]:
    children: list[Child] = []

    def start(role: str = "consume", **cfg: Any) -> Child:
        cfg.setdefault("queues", ["q"])
        child = Child({"url": url, "role": role, **cfg})
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop()


def publish(url: str, queue_name: str, bodies: list[Any]) -> None:
    with Connection(url, transport=Transport) as conn:
        producer = conn.Producer(serializer="json")
        for body in bodies:
            producer.publish(
                body, routing_key=queue_name, declare=[Queue(queue_name, routing_key=queue_name)]
            )


def test_messages_survive_the_publishing_process(spawn: Any) -> None:
    publisher = spawn("publish", bodies=["a", "b", "c"], routing_key="q")
    publisher.expect("done")
    assert publisher.proc.wait(timeout=10) == 0
    consumer = spawn(idle_exit=0.5)
    got = consumer.collect("msg", timeout=15)
    assert [e["body"] for e in got] == ["a", "b", "c"]


def test_two_consumer_processes_share_without_duplicates(url: str, spawn: Any) -> None:
    consumers = [spawn(prefetch=10, idle_exit=1.0) for _ in range(2)]
    for c in consumers:
        c.expect("ready")
    publish(url, "q", list(range(2000)))
    per_consumer = [[e["body"] for e in c.collect("msg", timeout=30)] for c in consumers]
    everything = per_consumer[0] + per_consumer[1]
    assert len(everything) == len(set(everything)) == 2000
    assert set(everything) == set(range(2000))
    assert all(per_consumer), "both consumers should have taken part"


def test_killed_consumer_messages_return_at_once(url: str, spawn: Any) -> None:
    publish(url, "q", ["a", "b", "c"])
    holder = spawn(prefetch=10, hold=-1)
    for _ in range(3):
        holder.expect("msg")
    rescuer = spawn()
    rescuer.expect("ready")
    time.sleep(0.3)
    assert not [e for e in rescuer.seen if e["event"] == "msg"]  # still reserved by the holder
    killed_at = time.time()
    os.kill(holder.proc.pid, signal.SIGKILL)
    got = [rescuer.expect("msg", timeout=5) for _ in range(3)]
    assert sorted(e["body"] for e in got) == ["a", "b", "c"]
    assert all(e["redelivered"] for e in got)
    # Far sooner than the one-hour visibility timeout: the dead owner was detected.
    assert max(e["t"] for e in got) - killed_at < 3.5


def test_frozen_consumer_loses_its_lease(url: str, spawn: Any) -> None:
    opts = {"visibility_timeout": 1}
    holder = spawn(prefetch=1, hold=-1, options=opts)
    holder.expect("ready")
    publish(url, "q", ["slow"])
    holder.expect("msg")
    os.kill(holder.proc.pid, signal.SIGSTOP)  # alive, so not "dead": only the lease can expire
    stopped_at = time.time()
    try:
        rescuer = spawn(options=opts)
        got = rescuer.expect("msg", timeout=5)
        assert got["body"] == "slow" and got["redelivered"]
        assert got["t"] - stopped_at < 2.5
    finally:
        os.kill(holder.proc.pid, signal.SIGCONT)
        holder.stop()


def test_live_consumer_keeps_renewing_its_lease(url: str, spawn: Any) -> None:
    opts = {"visibility_timeout": 1}
    worker = spawn(prefetch=1, hold=3, options=opts)  # busy in the callback for 3 s
    worker.expect("ready")
    publish(url, "q", ["long"])
    worker.expect("msg")
    other = spawn(options=opts)
    other.expect("ready")
    worker.expect("acked", timeout=6)
    time.sleep(0.3)
    assert not [e for e in other.seen if e["event"] == "msg"]
    other.stop()
    assert not [e for e in other.collect("msg", timeout=1)]


def test_idle_consumer_in_another_process_wakes_fast(url: str, spawn: Any) -> None:
    consumer = spawn()
    consumer.expect("ready")
    time.sleep(0.5)  # let it go to sleep in drain_events
    latencies = []
    with Connection(url, transport=Transport) as conn:
        producer = conn.Producer(serializer="json")
        for _ in range(3):
            sent = time.time()
            producer.publish(sent, routing_key="q")
            got = consumer.expect("msg", timeout=5)
            latencies.append(got["t"] - sent)
            time.sleep(0.3)
    assert max(latencies) < 0.1, latencies


def test_idle_consumer_uses_little_cpu(spawn: Any) -> None:
    consumer = spawn("idle", idle_for=2.0)
    report = consumer.expect("cpu", timeout=15)
    assert report["wall"] >= 2.0
    assert report["cpu"] < 0.1, report


def test_bindings_declared_in_one_process_route_publishes_from_another(
    url: str, spawn: Any
) -> None:
    with Connection(url, transport=Transport) as conn:
        ch = conn.default_channel
        topic = Exchange("events", type="topic")
        fanout = Exchange("broadcast", type="fanout")
        for q in (
            Queue("uk", topic, routing_key="news.uk.#"),
            Queue("sport", topic, routing_key="*.*.sport"),
            Queue("all_a", fanout),
            Queue("all_b", fanout),
        ):
            q(ch).declare()
    spawn("publish", exchange="events", routing_key="news.uk.sport", bodies=["uk-sport"]).expect(
        "done"
    )
    spawn("publish", exchange="events", routing_key="news.fr.sport", bodies=["fr-sport"]).expect(
        "done"
    )
    spawn("publish", exchange="broadcast", routing_key="", bodies=["hello"]).expect("done")
    with Connection(url, transport=Transport) as conn:
        ch = conn.default_channel

        def contents(name: str) -> list[Any]:
            out = []
            while (m := ch.basic_get(name, no_ack=True)) is not None:
                out.append(json.loads(m.body))
            return out

        assert contents("uk") == ["uk-sport"]
        assert contents("sport") == ["uk-sport", "fr-sport"]
        assert contents("all_a") == ["hello"]
        assert contents("all_b") == ["hello"]


def test_drain_timeout_is_honoured_when_idle(url: str) -> None:
    with Connection(url, transport=Transport) as conn:
        with conn.Consumer([Queue("q", routing_key="q")], accept=["json"], callbacks=[]):
            start = time.monotonic()
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=0.4)
            assert 0.35 < time.monotonic() - start < 0.8
