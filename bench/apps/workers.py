"""Starting and stopping the workers under test, and never leaving one behind."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

APPS_DIR = pathlib.Path(__file__).resolve().parent
READY = re.compile(r"\bready\.?\s*$", re.MULTILINE)  # both systems log "<node> ready" at info
STOP_TIMEOUT = 60.0

# Celery's best setting on RabbitMQ here: solo, a deep prefetch, no gossip/mingle/heartbeat
TUNED_PREFETCH = 1000
TUNED_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")


class WorkerFailed(RuntimeError):
    """A worker exited or did not get its work done; the message carries its log's tail."""


@dataclass(frozen=True)
class WorkerSpec:
    system: str  # "ours" or "celery"
    pool: str
    concurrency: int
    tuned: bool = False

    @property
    def label(self) -> str:
        return "celery tuned" if self.tuned else self.system

    def argv(self, queue: str, node: str, loglevel: str) -> list[str]:
        common = ["-P", self.pool, "-c", str(self.concurrency), "-l", loglevel, "-Q", queue]
        common += ["-n", f"{node}@%h"]
        if self.system == "ours":
            return [sys.executable, "-m", "kernel", "start", "-A", "kernel_app:app", *common]
        argv = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", *common]
        if self.tuned:
            argv += ["--prefetch-multiplier", str(TUNED_PREFETCH), *TUNED_FLAGS]
        return argv


def bench_env(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment, minus what would change a worker's plugins or tracing,
    plus the apps directory on the path and the BENCH_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERNEL_", "BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS_DIR), env.get("PYTHONPATH")]))
    env["BENCH_HARNESS_PID"] = str(os.getpid())
    env.update(settings)
    return env


class Processes:
    """Every worker this harness started; `kill_all` ends those still alive (on any error)."""

    def __init__(self) -> None:
        self._live: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, argv: list[str], env: Mapping[str, str], log: pathlib.Path) -> Worker:
        with log.open("wb") as out:
            # a session of its own: the whole tree (pool children too) can be killed by group
            proc = subprocess.Popen(
                argv,
                cwd=APPS_DIR,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._live[proc.pid] = proc
        return Worker(proc, log, self)

    def forget(self, pid: int) -> None:
        self._live.pop(pid, None)

    def kill_all(self) -> None:
        for pid in list(self._live):
            _kill_group(pid)
            self._live[pid].wait()
            self.forget(pid)


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: pathlib.Path, owner: Processes):
        self.proc = proc
        self.started_at = time.time()  # wall clock, as the markers record it
        self.log = log
        self._owner = owner

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            raise WorkerFailed(f"worker exited with status {self.proc.returncode}:\n{self.tail()}")

    def wait_ready(self, timeout: float) -> None:
        """Wait for the worker's "ready" log line (needs -l info)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if READY.search(self.log.read_text(errors="replace")):
                return
            time.sleep(0.05)
        raise WorkerFailed(f"no ready line after {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> tuple[int | None, float]:
        """Warm shutdown (SIGTERM), then kill the group if it hangs. (exit status, seconds)."""
        start = time.monotonic()
        code: int | None
        try:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None  # hung in warm shutdown: reported as such
        finally:
            _kill_group(self.pid)  # pool children left behind, if any
            self.proc.wait()
            self._owner.forget(self.pid)
        return code, time.monotonic() - start


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
