"""Records the hook calls a plugin manager makes, for tests to assert on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..manager import PluginManager


@attrs.frozen
class HookCall:
    name: str
    kwargs: Mapping[str, Any]

    def __getattr__(self, key: str) -> Any:
        try:
            return self.kwargs[key]
        except KeyError:
            raise AttributeError(key) from None


class HookRecorder:
    """Attach to a manager (or anything with a `.pm`) and keep every hook call in order."""

    def __init__(self, target: Any) -> None:
        pm: PluginManager = getattr(target, "pm", target)
        self.calls: list[HookCall] = []

        def before(name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
            self.calls.append(HookCall(name, dict(kwargs)))

        def after(*_: Any) -> None:
            pass

        self._undo = pm.add_hookcall_monitoring(before, after)

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    def getcalls(self, name: str) -> list[HookCall]:
        return [call for call in self.calls if call.name == name]

    def getcall(self, name: str) -> HookCall:
        found = self.getcalls(name)
        if len(found) != 1:
            raise AssertionError(f"expected one call of {name}, got {len(found)}: {self.names()}")
        return found[0]

    def detach(self) -> None:
        self._undo()
