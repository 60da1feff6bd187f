"""What the parent keeps per job and per child process, and how a child's exit is described."""

from __future__ import annotations

import os
import signal
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

# billiard's framing of a pickled message on a pipe: a signed big-endian length, then the bytes
FRAME = struct.Struct("!i")
READ_SIZE = 1 << 16


class Job:
    """One applied function (by its key in the function table), its callbacks and limits."""

    __slots__ = ("alone", "arg", "callback", "error_callback", "hard", "key", "settled", "soft")

    def __init__(
        self,
        key: int,
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
        timeouts: tuple[float | None, float | None],
    ) -> None:
        self.key, self.arg = key, arg
        self.callback, self.error_callback = callback, error_callback
        self.soft, self.hard = timeouts
        self.settled = False
        # travels in a batch of its own: it has a time limit (the deadlines are per child),
        # or its batch could not be pickled and this finds out which job was to blame
        self.alone = bool(self.soft or self.hard)


class Child:
    """A forked process, the parent's end of its pipe, and the jobs sent to it.

    `jobs` is the batch it was last sent, in order: the first is running (or its reply is
    on the way), the others wait in the child and have not started, since a child replies
    to each job before it starts the next.

    `known` is how many functions the table held when it was forked: it can run keys below
    that. `retiring` means it takes no more jobs and is told to exit once idle. The deadlines
    are `time.monotonic()` values: the running job's limits, and, once the child has been told
    to exit, when to stop waiting and kill it."""

    __slots__ = (
        "conn",
        "eof",
        "hard_at",
        "inbox",
        "jobs",
        "kill_at",
        "known",
        "pid",
        "proc",
        "retiring",
        "soft_at",
    )

    def __init__(self, proc: Any, conn: Any, known: int) -> None:
        self.proc, self.conn, self.known = proc, conn, known
        self.pid: int = proc.pid  # kept: the process object forgets it once closed
        self.jobs: deque[Job] = deque()
        self.retiring = False
        self.eof = False  # its end of the pipe is closed: it is exiting
        self.inbox = bytearray()  # the start of a reply whose rest is still on its way
        self.soft_at: float | None = None
        self.hard_at: float | None = None
        self.kill_at: float | None = None

    @property
    def job(self) -> Job | None:
        """The job running now, if any."""
        return self.jobs[0] if self.jobs else None

    def replies(self) -> list[bytearray]:
        """Every whole reply the pipe holds, by one read (call it once the pipe is readable).

        A child finishing a batch may have written several replies by the time the parent
        looks: reading them together, rather than one per wake-up with billiard's two reads
        apiece, saves the parent (whose one interpreter lock feeds every child) a pass per
        reply. Raises EOFError once the child's end is closed."""
        chunk = os.read(self.conn.fileno(), READ_SIZE)
        if not chunk:
            raise EOFError
        inbox = self.inbox
        inbox += chunk
        found: list[bytearray] = []
        at, end = 0, len(inbox)
        while end - at >= FRAME.size:
            (size,) = FRAME.unpack_from(inbox, at)
            if end - at - FRAME.size < size:
                break
            found.append(inbox[at + FRAME.size : at + FRAME.size + size])  # pickle reads it as is
            at += FRAME.size + size
        del inbox[:at]
        return found

    def knows(self, key: int) -> bool:
        return key < self.known

    def deadlines(self) -> list[float]:
        return [t for t in (self.soft_at, self.hard_at, self.kill_at) if t is not None]


def exit_reason(code: int | None) -> str:
    """How a child ended, in the words of Celery's WorkerLostError: "signal 9 (SIGKILL)"."""
    if code is None:
        return "unknown exit status"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-code} ({name})"
    return f"exitcode {code}"
