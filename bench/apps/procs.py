"""Figures read from /proc: CPU time of a process tree, of the broker servers and of the whole
machine; peak and current resident memory of a process tree.

Used both by the harness (memory of a worker it started) and by the `bench.mark` task inside
a worker (CPU times at the moment it runs), so both systems are measured the same way.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

PROC = pathlib.Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    ppid: int
    comm: str
    cpu: float  # user + system seconds of all its threads and of its reaped children


def snapshot() -> dict[int, Proc]:
    """Every process now: parent, command name, CPU seconds (one pass over /proc)."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14), in
        # clock ticks; the children's share keeps a replaced pool child's CPU in the sum
        cpu = sum(int(x) for x in fields[11:15]) / CLOCK_TICKS
        found[int(entry.name)] = Proc(int(fields[1]), comm, cpu)
    return found


def tree(root: int, procs: dict[int, Proc] | None = None) -> list[int]:
    """`root` and all its descendants (pool children, their children, ...)."""
    procs = snapshot() if procs is None else procs
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int, procs: dict[int, Proc] | None = None) -> float:
    procs = snapshot() if procs is None else procs
    return sum(procs[pid].cpu for pid in tree(root, procs) if pid in procs)


def servers_cpu_seconds(procs: dict[int, Proc], names: tuple[str, ...]) -> float:
    """CPU of the broker servers (by command name): their cost per task is part of the story."""
    return sum(proc.cpu for proc in procs.values() if proc.comm in names)


def system_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def tree_peak_rss_kib(root: int) -> int:
    """Sum of VmHWM (each process's peak resident set) over the tree."""
    return sum(_status_kib(pid, "VmHWM") for pid in tree(root))


def tree_rss_kib(root: int) -> int:
    """Sum of VmRSS (current resident set) over the tree."""
    return sum(_status_kib(pid, "VmRSS") for pid in tree(root))


def worker_root(harness_pid: int, procs: dict[int, Proc]) -> int:
    """The worker's main process: the ancestor of this process whose parent is the harness.

    A prefork task runs in a pool child; its CPU figure must cover the whole worker.
    """
    pid = os.getpid()
    while pid in procs:
        ppid = procs[pid].ppid
        if ppid == harness_pid:
            return pid
        pid = ppid
    return os.getpid()  # not started by the harness: measure this process alone
