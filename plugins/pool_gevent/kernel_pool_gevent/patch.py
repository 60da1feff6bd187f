"""Monkey-patching for `kernel start -P gevent`, run by the launcher before anything else loads."""

from __future__ import annotations


def patch() -> None:
    """Make the standard library cooperative: sockets, threads, locks, time, select, ..."""
    from gevent import monkey

    monkey.patch_all()


def is_patched() -> bool:
    """Whether this process runs on gevent's patched standard library."""
    from gevent import monkey

    return bool(monkey.is_module_patched("threading"))
