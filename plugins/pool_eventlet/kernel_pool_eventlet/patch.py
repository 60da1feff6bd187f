"""Monkey-patching for `kernel start -P eventlet`, run by the launcher before anything loads."""

from __future__ import annotations


def patch() -> None:
    """Make the standard library cooperative: sockets, threads, locks, time, select, ..."""
    import eventlet

    eventlet.monkey_patch()


def is_patched() -> bool:
    """Whether this process runs on eventlet's patched standard library."""
    from eventlet import patcher

    return bool(patcher.is_monkey_patched("thread"))
