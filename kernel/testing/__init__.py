"""The test kit: a worker factory, a hook recorder and contract tests for plugin authors."""

from __future__ import annotations

from .recorder import HookCall, HookRecorder

__all__ = ["HookCall", "HookRecorder"]
