"""Workers as separate processes, for tests that need a real `kernel start` (or any worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class WorkerProcess:
    """A worker subprocess (by default `python -m kernel start ARGS`) whose output, stdout and
    stderr together, is collected line by line as it comes.

    `env` adds to (or, with None values, removes from) this process's environment;
    `KERNEL_PLUGINS` is removed unless given, so the caller's shell cannot change the worker."""

    def __init__(
        self,
        *args: str,
        cwd: Path | str,
        env: Mapping[str, str | None] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        merged: dict[str, str | None] = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "KERNEL_PLUGINS": None,
            **(env or {}),
        }
        environ = {key: value for key, value in merged.items() if value is not None}
        argv = list(command) if command is not None else [sys.executable, "-m", "kernel", "start"]
        self.proc = subprocess.Popen(
            [*argv, *args],
            cwd=cwd,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 15.0) -> WorkerProcess:
        """Wait until `text` appears in the output; fail (with the output) if the process ends
        or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if self.proc.poll() is not None:
                self._reader.join(2)
                if text in self.log:
                    break
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.log}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.log}")
            time.sleep(0.02)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` (if still running) and return the exit status; kill after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
