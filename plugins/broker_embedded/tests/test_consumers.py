"""Who consumes which queue of a broker file: what a client is told when nobody does."""

from __future__ import annotations

import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest
from kernel_broker_embedded import Transport, plugin
from kernel_broker_embedded.store import Store
from kombu import Connection, Queue

from kernel import PluginManager

PLUGIN_ROOT = pathlib.Path(__file__).resolve().parents[1]

CONSUMER = r"""
import sys, time
from kombu import Connection, Queue
from kernel_broker_embedded import Transport

with Connection(sys.argv[1], transport=Transport) as conn:
    with conn.Consumer([Queue("jobs", routing_key="jobs")], callbacks=[lambda *_: None]):
        print("ready", flush=True)
        time.sleep(60)
"""


@pytest.fixture
def pm() -> PluginManager:
    manager = PluginManager(discover=False)
    manager.add(plugin, "broker.embedded")
    return manager


@pytest.fixture
def db(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "broker.db"


@pytest.fixture
def url(db: pathlib.Path) -> str:
    return f"embedded:///{db}"


@pytest.fixture
def conn(url: str) -> Iterator[Connection]:
    c = Connection(url, transport=Transport)
    yield c
    c.release()


def consumers(pm: PluginManager, url: str, queue: str = "jobs") -> tuple[str, int | None]:
    found = pm.hook.kernel_queue_consumers(url=url, queue=queue, app=None)
    assert found is not None
    return found  # type: ignore[no-any-return]


def test_a_file_nobody_used_has_no_consumers_and_is_not_created(
    pm: PluginManager, db: pathlib.Path, url: str
) -> None:
    assert consumers(pm, url) == (os.path.realpath(db), 0)
    assert not db.exists()


def test_other_schemes_are_not_answered(pm: PluginManager) -> None:
    assert pm.hook.kernel_queue_consumers(url="redis://x", queue="jobs", app=None) is None


def test_a_consumer_counts_for_its_queues_until_it_cancels_or_closes(
    pm: PluginManager, conn: Connection, db: pathlib.Path, url: str
) -> None:
    consumer = conn.Consumer([Queue("jobs", routing_key="jobs")], callbacks=[lambda *_: None])
    consumer.consume()
    assert consumers(pm, url) == (os.path.realpath(db), 1)
    assert consumers(pm, url, "other")[1] == 0
    consumer.cancel()
    assert consumers(pm, url)[1] == 0
    consumer.consume()
    assert consumers(pm, url)[1] == 1
    conn.release()
    assert consumers(pm, url)[1] == 0


def test_a_consumer_that_was_killed_does_not_count(pm: PluginManager, url: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN_ROOT), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, url], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert consumers(pm, url)[1] == 1
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert consumers(pm, url)[1] == 0  # its row is still there; its process is not
    finally:
        child.kill()
        child.wait(10)


def test_a_file_from_before_consumers_were_recorded_gains_the_table(db: pathlib.Path) -> None:
    Store(db).close()
    old = sqlite3.connect(db)
    old.execute("DROP TABLE consumers")
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    store = Store(db)
    try:
        store.add_consumer("token", "jobs")
        assert store.consumers_of("jobs") == []  # a consumer counts once its owner registers
    finally:
        store.close()
