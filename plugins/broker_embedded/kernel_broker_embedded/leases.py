"""Background renewal of a transport's reservations while its process is alive."""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading
import time

from .store import Store

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Extends the leases of the watched channels every ``visibility_timeout / 3``.

    It runs in its own thread with its own connection, so a consumer thread that is
    busy executing a long task (and not calling ``drain_events``) keeps its messages.
    A frozen or dead process stops renewing, and its leases run out.
    """

    def __init__(
        self, db_path: pathlib.Path, visibility_timeout: float, busy_timeout: float
    ) -> None:
        self.db_path = db_path
        self.visibility_timeout = visibility_timeout
        self.busy_timeout = busy_timeout
        self.interval = max(visibility_timeout / 3.0, 0.05)
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def watch(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)
            thread = self._thread
            # Threads do not survive fork: a child process starts its own.
            if thread is None or not thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="embedded-broker-leases", daemon=True
                )
                self._thread.start()

    def forget(self, token: str) -> None:
        with self._lock:
            self._tokens.discard(token)

    def stop(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        store: Store | None = None
        try:
            while not stop.wait(self.interval):
                with self._lock:
                    tokens = list(self._tokens)
                if not tokens:
                    continue
                try:
                    if store is None:
                        store = Store(self.db_path, self.busy_timeout)
                    now = time.time()
                    store.renew(tokens, now + self.visibility_timeout, now)
                except sqlite3.Error:
                    # Try again next round; a lease is three intervals long.
                    logger.warning(
                        "could not renew message leases in %s", self.db_path, exc_info=True
                    )
        finally:
            if store is not None:
                store.close()
