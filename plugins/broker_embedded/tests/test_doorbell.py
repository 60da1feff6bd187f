"""The doorbell sockets and the liveness checks behind dead-owner detection."""

from __future__ import annotations

import os
import pathlib
import select
import socket
import subprocess
import sys

from kernel_broker_embedded import liveness
from kernel_broker_embedded.doorbell import Doorbell, Ringer, bell_dir


def _readable(bell: Doorbell, timeout: float = 1.0) -> bool:
    return bool(select.select([bell], [], [], timeout)[0])


def test_ring_wakes_listener_and_clear_resets(tmp_path: pathlib.Path) -> None:
    directory = bell_dir(tmp_path / "b.db")
    bell = Doorbell(directory)
    try:
        assert not _readable(bell, 0)
        Ringer(directory).ring()
        assert _readable(bell)
        assert bell.clear()
        assert not _readable(bell, 0)
        assert not bell.clear()
    finally:
        bell.close()
    assert not os.listdir(directory)


def test_ringing_without_listeners_is_harmless(tmp_path: pathlib.Path) -> None:
    Ringer(bell_dir(tmp_path / "never.db")).ring()  # no directory at all


def test_stale_sockets_are_removed(tmp_path: pathlib.Path) -> None:
    directory = bell_dir(tmp_path / "b.db")
    directory.mkdir()
    stale = directory / "999999-dead.sock"
    orphan = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    orphan.bind(str(stale))
    orphan.close()  # the file stays, nobody listens: as after a crash
    Ringer(directory).ring()
    assert not stale.exists()

    orphan = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    orphan.bind(str(stale))
    orphan.close()
    bell = Doorbell(directory)  # a new listener sweeps too
    try:
        assert not stale.exists()
    finally:
        bell.close()


def test_long_database_paths_get_a_short_bell_directory(tmp_path: pathlib.Path) -> None:
    deep = tmp_path.joinpath(*(["x" * 30] * 4)) / "broker.db"
    directory = bell_dir(deep)
    assert directory != deep.with_name("broker.db.bells")
    assert bell_dir(deep) == directory  # every process derives the same one
    bell = Doorbell(directory)
    try:
        Ringer(directory).ring()
        assert _readable(bell)
    finally:
        bell.close()


def test_liveness_of_self_dead_and_recycled_pids() -> None:
    me = os.getpid()
    started = liveness.start_time(me)
    assert liveness.is_alive(me, started)
    if started is not None:
        assert not liveness.is_alive(me, started + 1)  # same pid, another process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not liveness.is_alive(child.pid, None)


def test_unreaped_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Exited but not waited for: still in the process table as a zombie.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert not liveness.is_alive(child.pid, None)
    finally:
        child.wait()
