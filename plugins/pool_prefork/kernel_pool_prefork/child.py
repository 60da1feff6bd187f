"""The child's side: signal handlers, start-up hook, then jobs from the pipe until told to stop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from kernel.plugin import SoftTimeLimitExceeded, rss_kib

from .functions import FunctionTable

log = logging.getLogger("kernel.pool.prefork")

STOP = None  # what the parent sends an idle child to end it

# parent -> child: a batch, [(function key, argument), ...], run in order; or STOP
# child -> parent, one per job before the next starts: (ok, result or exception, leaving,
# seconds it ran); `leaving` announces a planned exit, and the rest of the batch is not run
Reply = tuple[bool, Any, bool, float]


class Runner:
    """Runs one function at a time; SIGUSR1 raises SoftTimeLimitExceeded inside it."""

    def __init__(self) -> None:
        self._frame: FrameType | None = None

    def on_soft_limit(self, signum: int, frame: FrameType | None) -> None:
        # Raise only inside the function: a signal landing just after it returned (the parent
        # sent it as the job ended) must not break sending the result, or waiting for the next.
        if self._frame is not None and frame is not self._frame:
            raise SoftTimeLimitExceeded()

    def run(self, fn: Callable[[Any], Any], arg: Any) -> tuple[bool, Any]:
        self._frame = sys._getframe()
        try:
            return True, fn(arg)
        except BaseException as exc:  # reported to the parent, which calls error_callback
            return False, exc
        finally:
            self._frame = None


def serve(
    conn: Any,
    table: FunctionTable,
    init: Callable[[], None] | None,
    recycle: Callable[[int, int], bool] | None,
) -> None:
    """The child's main loop; returning ends the process with exit code 0."""
    runner = Runner()
    signal.signal(signal.SIGUSR1, runner.on_soft_limit)
    # The parent owns shutdown: Ctrl-C reaches the whole process group, and the worker's own
    # handlers, inherited through fork, would start a second shutdown inside the child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    if init is not None:
        try:
            init()
        except Exception:  # exiting would only make the parent fork another that fails alike
            log.exception("child %d: start-up hook failed", os.getpid())
    tasks = 0
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message is STOP:
            return
        for key, arg in message:
            began = time.perf_counter()
            ok, value = runner.run(table[key], arg)
            elapsed = time.perf_counter() - began
            tasks += 1
            leaving = _recycle(recycle, tasks)
            if not _reply(conn, (ok, value, leaving, elapsed)) or leaving:
                return


def _recycle(recycle: Callable[[int, int], bool] | None, tasks: int) -> bool:
    if recycle is None:
        return False
    try:
        return recycle(tasks, rss_kib())
    except Exception:
        log.exception("child %d: recycle hook failed; keeping the child", os.getpid())
        return False


def _reply(conn: Any, reply: Reply) -> bool:
    """Send the reply; False if the parent is gone."""
    ok, value, leaving, elapsed = reply
    try:
        conn.send(reply)  # pickles fully before writing, so a failure leaves the pipe clean
    except OSError:
        return False
    except Exception as exc:
        what = "result" if ok else "exception"
        problem = RuntimeError(
            f"cannot send the job's {what} (a {type(value).__name__}) to the parent: {exc!r}"
        )
        try:
            conn.send((False, problem, leaving, elapsed))
        except OSError:
            return False
    return True
