"""Who consumes a queue of a broker file, so a client never waits on one in silence."""

from __future__ import annotations

import os
import pathlib
import sqlite3

from . import liveness
from .store import Store


def live_consumers(path: pathlib.Path, queue: str) -> int | None:
    """How many live channels consume `queue` in the file at `path` (None: cannot tell)."""
    if not path.exists():
        return 0
    try:
        store = Store(path, busy_timeout=2.0)
        try:
            rows = store.consumers_of(queue)
        finally:
            store.close()
    except sqlite3.Error:
        return None
    here = liveness.host_id()
    # A consumer on another host (a shared volume) cannot be checked: count it, rather than
    # tell a client that nobody consumes when somebody may.
    return sum(1 for host, pid, started in rows if host != here or liveness.is_alive(pid, started))


def where(path: pathlib.Path) -> str:
    """The file as every process using it names it (symbolic links resolved)."""
    return os.path.realpath(path)
