"""Plugins and helpers that note where a pool runs tasks and hooks, for the pool contract."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl

_slot = threading.local()


def slot_id() -> str:
    """Names the slot running the caller: its process and its thread (or green thread).

    A new thread gets a new name even where the OS reuses thread ids, so a replaced slot
    never passes for the one it replaced."""
    mine = getattr(_slot, "id", None)
    if mine is None:
        mine = _slot.id = uuid.uuid4().hex[:12]
    return f"{os.getpid()}:{mine}"


class NamedPlugin:
    """`plugin`'s hooks in an object a worker registers under `name` (the worker names the
    objects it is given by their `plugin_name`): a pool not installed, as pool.NAME."""

    def __init__(self, plugin: Any, name: str) -> None:
        self.plugin_name = name
        for attr in dir(plugin):
            if attr.startswith("kernel_"):
                setattr(self, attr, getattr(plugin, attr))  # as found: functions stay unbound


def pid_of(slot: str) -> int:
    return int(slot.split(":", 1)[0])


class Notebook:
    """Lines `WHAT SLOT DETAIL` appended to one file, from any process or thread (each line
    is one short write to a file opened for appending, so lines never interleave)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, what: str, detail: Any = "") -> None:
        line = f"{what} {slot_id()} {detail}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self) -> list[tuple[str, str, str]]:
        """Every line so far, in the order written, as (what, slot, detail)."""
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [(what, slot, detail) for what, slot, detail in (ln.split(" ", 2) for ln in lines)]

    def slots(self, what: str) -> list[str]:
        """The slots of the lines noting `what`, in order."""
        return [slot for noted, slot, _ in self.read() if noted == what]


class ChildInitRecorder:
    """Notes `init` in the slot where `kernel_child_init` runs."""

    plugin_name = "contract-child-init"

    def __init__(self, notebook: Notebook) -> None:
        self.notebook = notebook

    @hookimpl
    def kernel_child_init(self) -> None:
        self.notebook.note("init")


class RecycleEvery:
    """A recycling policy: notes `ask` (with the slot's task count) where it is asked, and says
    to replace a slot once it has run `every` tasks."""

    plugin_name = "contract-recycle-policy"

    def __init__(self, notebook: Notebook, every: int) -> None:
        self.notebook, self.every = notebook, every

    @hookimpl
    def kernel_recycle_child(self, tasks: int) -> bool:
        self.notebook.note("ask", tasks)
        return tasks >= self.every
