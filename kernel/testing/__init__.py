"""The test kit: a worker factory, a hook recorder and contract tests for plugin authors.

Its modules load only when asked for (`kernel.testing.contracts`, `.helpers`, `.patching`, ...),
so a test of a monkey-patching pool can import `kernel.testing.patching` before it patches.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HookCall", "HookRecorder"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'kernel.testing' has no attribute {name!r}")
