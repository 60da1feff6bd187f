"""Identify this process and host, and tell whether another local process still lives."""

from __future__ import annotations

import functools
import os
import socket


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


@functools.cache
def host_id() -> str:
    """A name for "processes whose pids we can check": host, boot and pid namespace.

    Two containers sharing a volume may share a hostname but not a pid namespace, and
    a reboot restarts pid numbering, so all three are part of the identity.
    """
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return "|".join(part for part in (socket.gethostname(), boot, pidns) if part)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from ``/proc/<pid>/stat``."""
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started (opaque ticks), or None where ``/proc`` is unavailable."""
    st = _stat(pid)
    return None if st is None else st[1]


_HAVE_PROC = os.path.exists("/proc/self/stat")


def is_alive(pid: int, started: int | None) -> bool:
    """True if ``pid`` is a running (not zombie) process that started at ``started``.

    Comparing start times means a recycled pid is not mistaken for the original owner.
    """
    if _HAVE_PROC:
        st = _stat(pid)
        if st is None:
            return False
        state, ticks = st
        if state in ("Z", "X"):
            # Killed but not yet reaped by its parent: it will never ack anything.
            return False
        return started is None or ticks == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
