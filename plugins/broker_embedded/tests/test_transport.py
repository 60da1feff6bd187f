"""Single-process behaviour of the embedded transport through kombu's public API."""

from __future__ import annotations

import gc
import pathlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from kernel_broker_embedded import Transport
from kombu import Connection, Exchange, Queue
from kombu.message import Message


@pytest.fixture
def url(tmp_path: pathlib.Path) -> str:
    return f"embedded:///{tmp_path / 'broker.db'}"


@pytest.fixture
def conn(url: str) -> Iterator[Connection]:
    c = Connection(url, transport=Transport)
    yield c
    c.release()


def publish(conn: Connection, queue: str, bodies: list[Any], **kwargs: Any) -> None:
    producer = conn.Producer(serializer="json")
    for body in bodies:
        producer.publish(
            body, routing_key=queue, declare=[Queue(queue, routing_key=queue)], **kwargs
        )


def drain(
    conn: Connection,
    queue: str,
    *,
    ack: bool = True,
    prefetch: int = 0,
    idle: float = 0.2,
    no_ack: bool = False,
) -> list[Message]:
    """Consume until ``idle`` seconds pass without a delivery."""
    got: list[Message] = []

    def on_message(body: Any, message: Message) -> None:
        got.append(message)
        if ack and not no_ack:
            message.ack()

    with conn.Consumer(
        [Queue(queue, routing_key=queue)], callbacks=[on_message], accept=["json"], no_ack=no_ack
    ) as consumer:
        if prefetch:
            consumer.qos(prefetch_count=prefetch)
        while True:
            try:
                conn.drain_events(timeout=idle)
            except TimeoutError:
                return got


def bodies(messages: list[Message]) -> list[Any]:
    return [m.decode() for m in messages]


def test_fifo(conn: Connection) -> None:
    publish(conn, "q", list(range(50)))
    assert bodies(drain(conn, "q")) == list(range(50))


def test_priority_higher_first_fifo_within_level(conn: Connection) -> None:
    producer = conn.Producer(serializer="json")
    q = Queue("p", routing_key="p")
    sent = [("a", 0), ("b", 5), ("c", 9), ("d", None), ("e", 5), ("f", 42), ("g", -3), ("h", 9)]
    for body, priority in sent:
        kwargs = {} if priority is None else {"priority": priority}
        producer.publish(body, routing_key="p", declare=[q], **kwargs)
    # 42 clamps to 9 and -3 to 0; a missing priority is 0.
    assert bodies(drain(conn, "p")) == ["c", "f", "h", "b", "e", "a", "d", "g"]


def test_ack_deletes(url: str, conn: Connection) -> None:
    publish(conn, "q", ["x"])
    assert bodies(drain(conn, "q")) == ["x"]
    conn.release()
    with Connection(url, transport=Transport) as other:
        assert drain(other, "q") == []
        assert other.default_channel._size("q") == 0


def test_reject_requeue_goes_to_the_back_flagged_redelivered(conn: Connection) -> None:
    publish(conn, "q", ["a", "b", "c"])
    ch = conn.default_channel
    first = ch.basic_get("q")
    assert first.decode() == "a"
    assert first.delivery_info["redelivered"] is False
    first.reject(requeue=True)
    got = drain(conn, "q")
    assert bodies(got) == ["b", "c", "a"]
    again = got[-1]
    assert again.delivery_info["redelivered"] is True
    assert again.headers["redelivered"] is True


def test_reject_without_requeue_deletes(conn: Connection) -> None:
    publish(conn, "q", ["a", "b"])
    conn.default_channel.basic_get("q").reject(requeue=False)
    assert bodies(drain(conn, "q")) == ["b"]


def test_closing_restores_unacked_immediately(url: str) -> None:
    with Connection(url, transport=Transport) as c1:
        publish(c1, "q", ["a", "b"])
        held = drain(c1, "q", ack=False)
        assert bodies(held) == ["a", "b"]
        with Connection(url, transport=Transport) as c2:
            assert drain(c2, "q") == []  # reserved by c1
    # c1 closed without acking: visible again at once, not after the visibility timeout.
    with Connection(url, transport=Transport) as c3:
        got = drain(c3, "q")
        assert bodies(got) == ["a", "b"]
        assert all(m.delivery_info["redelivered"] for m in got)


def test_channel_close_restores(conn: Connection) -> None:
    publish(conn, "q", ["a"])
    ch = conn.channel()
    assert ch.basic_get("q").decode() == "a"
    assert conn.default_channel.basic_get("q") is None
    ch.close()
    assert conn.default_channel.basic_get("q", no_ack=True).decode() == "a"


def test_no_ack_deletes_on_delivery(url: str, conn: Connection) -> None:
    publish(conn, "q", ["a", "b"])
    assert bodies(drain(conn, "q", no_ack=True)) == ["a", "b"]
    conn.release()
    with Connection(url, transport=Transport) as other:
        assert drain(other, "q") == []


def test_prefetch_limit(conn: Connection) -> None:
    publish(conn, "q", list(range(10)))
    got: list[Message] = []
    with conn.Consumer(
        [Queue("q", routing_key="q")], callbacks=[lambda b, m: got.append(m)], accept=["json"]
    ) as consumer:
        consumer.qos(prefetch_count=3)
        for _ in range(5):
            try:
                conn.drain_events(timeout=0.1)
            except TimeoutError:
                pass
        assert bodies(got) == [0, 1, 2]
        got[0].ack()
        conn.drain_events(timeout=1)
        assert bodies(got) == [0, 1, 2, 3]
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.1)


def test_purge_and_size_count_ready_and_delayed_only(conn: Connection) -> None:
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    publish(conn, "q", ["r1", "r2", "r3", "held"])
    publish(conn, "q", ["d1", "d2"], headers={"eta": later})
    ch = conn.channel()
    held = ch.basic_get("q")
    assert held.decode() == "r1"
    main = conn.default_channel
    assert main._size("q") == 5
    assert main.queue_declare("q", passive=True).message_count == 5
    assert main.queue_purge("q") == 5
    assert main._size("q") == 0
    ch.close()  # the reservation survived the purge
    assert main._size("q") == 1
    assert main.basic_get("q", no_ack=True).decode() == "r1"


def test_eta_holds_message_until_due(conn: Connection) -> None:
    eta = datetime.now(timezone.utc) + timedelta(seconds=1)
    publish(conn, "q", ["later"], headers={"eta": eta.isoformat()})
    publish(conn, "q", ["now"])
    got: list[tuple[str, float]] = []
    with conn.Consumer(
        [Queue("q", routing_key="q")],
        accept=["json"],
        callbacks=[lambda b, m: (got.append((b, time.time())), m.ack())],
    ):
        deadline = time.time() + 3
        while len(got) < 2 and time.time() < deadline:
            try:
                conn.drain_events(timeout=3)
            except TimeoutError:
                pass
    assert [b for b, _ in got] == ["now", "later"]
    delay = got[1][1] - eta.timestamp()
    assert 0 <= delay < 0.3


def test_naive_eta_is_utc_and_garbage_eta_is_due_now(conn: Connection) -> None:
    naive_future = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(tzinfo=None)
    publish(conn, "q", ["naive"], headers={"eta": naive_future.isoformat()})
    publish(conn, "q", ["garbage"], headers={"eta": "not a date"})
    assert bodies(drain(conn, "q")) == ["garbage"]
    assert conn.default_channel._size("q") == 1


def test_wakeup_interrupts_blocked_drain(conn: Connection) -> None:
    outcome: list[Any] = []
    with conn.Consumer(
        [Queue("q", routing_key="q")], callbacks=[lambda b, m: None], accept=["json"]
    ):

        def blocked() -> None:
            start = time.monotonic()
            try:
                conn.drain_events(timeout=10)
                outcome.append("delivered")
            except TimeoutError:
                outcome.append(time.monotonic() - start)

        thread = threading.Thread(target=blocked)
        thread.start()
        time.sleep(0.3)
        conn.transport.wakeup()
        thread.join(timeout=5)
    assert outcome and outcome[0] != "delivered"
    assert outcome[0] < 1.0


def test_publish_from_another_thread_wakes_consumer(url: str, conn: Connection) -> None:
    got: list[float] = []
    with conn.Consumer(
        [Queue("q", routing_key="q")],
        accept=["json"],
        callbacks=[lambda b, m: (got.append(time.time() - b), m.ack())],
    ):

        def later() -> None:
            time.sleep(0.3)
            with Connection(url, transport=Transport) as other:
                publish(other, "q", [time.time()])

        thread = threading.Thread(target=later)
        thread.start()
        conn.drain_events(timeout=5)
        thread.join()
    assert got and got[0] < 0.1


def test_direct_topic_and_fanout_routing(conn: Connection) -> None:
    ch = conn.default_channel
    direct = Exchange("dx", type="direct")
    topic = Exchange("tx", type="topic")
    fanout = Exchange("fx", type="fanout")
    for q in (
        Queue("d1", direct, routing_key="a"),
        Queue("t_all", topic, routing_key="news.#"),
        Queue("t_one", topic, routing_key="news.*.sport"),
        Queue("f1", fanout),
        Queue("f2", fanout),
    ):
        q(ch).declare()
    producer = conn.Producer(serializer="json")
    producer.publish("to-a", exchange=direct, routing_key="a")
    producer.publish("to-b", exchange=direct, routing_key="b")  # unroutable: dropped
    producer.publish("uk-sport", exchange=topic, routing_key="news.uk.sport")
    producer.publish("uk-cars", exchange=topic, routing_key="news.uk.cars")
    producer.publish("all", exchange=fanout, routing_key="ignored")
    assert bodies(drain(conn, "d1")) == ["to-a"]
    assert bodies(drain(conn, "t_all")) == ["uk-sport", "uk-cars"]
    assert bodies(drain(conn, "t_one")) == ["uk-sport"]
    assert bodies(drain(conn, "f1")) == ["all"]
    assert bodies(drain(conn, "f2")) == ["all"]
    assert ("d1", "dx", "a") in set(ch.list_bindings())


def test_unbind_and_queue_delete(conn: Connection) -> None:
    ch = conn.default_channel
    fanout = Exchange("fx", type="fanout")
    q = Queue("f1", fanout)
    q(ch).declare()
    conn.Producer(serializer="json").publish("one", exchange=fanout)
    q(ch).unbind_from(fanout)
    conn.Producer(serializer="json").publish("two", exchange=fanout)
    assert ch._size("f1") == 1
    assert ch.queue_delete("f1") == 1
    assert not ch._has_queue("f1")


def test_consumer_on_several_queues_is_fair(conn: Connection) -> None:
    publish(conn, "q1", ["a1", "a2", "a3"])
    publish(conn, "q2", ["b1", "b2", "b3"])
    got: list[str] = []
    with conn.Consumer(
        [Queue("q1", routing_key="q1"), Queue("q2", routing_key="q2")],
        accept=["json"],
        callbacks=[lambda b, m: (got.append(b), m.ack())],
    ) as c:
        c.qos(prefetch_count=1)
        for _ in range(6):
            conn.drain_events(timeout=1)
    assert sorted(got) == ["a1", "a2", "a3", "b1", "b2", "b3"]
    assert {got[0][0], got[1][0]} == {"a", "b"}


def test_garbage_collected_channel_gives_its_messages_back(url: str) -> None:
    def hold_one() -> None:
        c = Connection(url, transport=Transport)
        publish(c, "q", ["x"])
        assert c.default_channel.basic_get("q").decode() == "x"
        # neither acked nor closed: just dropped

    hold_one()
    gc.collect()
    with Connection(url, transport=Transport) as other:
        again = other.default_channel.basic_get("q")
        assert again is not None and again.delivery_info["redelivered"]


def test_stale_ack_after_lease_loss_leaves_new_holders_copy(url: str) -> None:
    options = {"visibility_timeout": 0.3}
    with Connection(url, transport=Transport, transport_options=options) as first:
        publish(first, "q", ["x"])
        old = first.default_channel.basic_get("q")
        first.transport.leases.stop()  # as if this process froze: no more renewals
        time.sleep(0.5)
        with Connection(url, transport=Transport, transport_options=options) as second:
            new = second.default_channel.basic_get("q")
            assert new is not None and new.delivery_info["redelivered"]
            old.ack()  # too late: must not delete the copy `second` now holds
            second.default_channel.close()  # unacked: back in the queue
            assert second.channel()._size("q") == 1
