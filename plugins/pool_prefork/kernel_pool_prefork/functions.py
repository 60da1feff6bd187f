"""The table of functions the pool runs, which children inherit when they are forked."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class FunctionTable:
    """Numbers each distinct function in the order it was first applied.

    Functions never cross a pipe (the worker's Executor and lambdas cannot be pickled): a
    child forked when the table held `known` functions has keys 0..known-1 in its copy and is
    sent only keys. Entries are kept for the pool's life, so callers should apply a few
    long-lived callables (the worker applies one Executor), not a new closure per job.
    """

    def __init__(self) -> None:
        self._fns: dict[int, Callable[[Any], Any]] = {}
        self._keys: dict[int, int] = {}  # id(fn) -> key; ids stay unique while we hold fn
        self._lock = threading.Lock()
        self.known = 0

    def key_for(self, fn: Callable[[Any], Any]) -> int:
        key = self._keys.get(id(fn))
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(id(fn))
            if key is None:
                key = self.known
                self._fns[key] = fn
                self._keys[id(fn)] = key
                # published last: a child forked after reading `known` holds every key below it
                self.known = key + 1
        return key

    def __getitem__(self, key: int) -> Callable[[Any], Any]:
        return self._fns[key]
