"""What to tell a user who asked for something no enabled plugin offers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .bootsteps import Step
from .errors import PluginError
from .graph import StepSpec
from .known import ROLES, distribution_for, known_providers
from .plugins import PluginManager
from .settings import declared_by


def _dormant(pm: PluginManager) -> Iterator[tuple[str, PluginManager]]:
    """Each installed plugin that is not enabled, loaded into a throwaway manager."""
    for name, entry in pm.installed.items():
        if pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue
        probe = PluginManager(discover=False)
        try:
            probe.add(entry.load(), name)
        except PluginError:
            continue
        yield name, probe


def _steps(pm: PluginManager) -> list[type[Step]]:
    return [cls for _, classes in pm.call_each("kernel_steps") for cls in classes or ()]


def role_hint(pm: PluginManager, role: str, selectors: dict[str, str]) -> str | None:
    """How to get a provider for `role` (a role name or a step name)."""
    if role in ROLES:
        prefix = role + "."
        installed = [n for n in pm.installed if n.startswith(prefix)]
        if installed and role in selectors:
            how = "--pool" if role == "pool" else f"the {selectors[role]} setting"
            return f"pick one with {how} ({', '.join(n[len(prefix) :] for n in installed)})"
        if installed:
            return "enable one of: " + ", ".join(installed)
        known = known_providers(role)
        return f"install one, e.g. pip install {distribution_for(known[0])}" if known else None
    for name, probe in _dormant(pm):
        for cls in _steps(probe):
            spec = StepSpec.of(cls, name)
            if role == spec.name or role in spec.provides:
                return f"enable plugin {name!r} with --plugin {name}"
    dist = distribution_for(role)
    return f"install it with pip install {dist}, then add --plugin {role}" if dist else None


def setting_hint(pm: PluginManager, key: str) -> str | None:
    """Which installed but disabled plugin declares setting `key`."""
    for name, probe in _dormant(pm):
        if any(s.key == key for cls in _steps(probe) for s in declared_by(cls)):
            return f"it belongs to plugin {name!r}; enable it with --plugin {name}"
    return None


def option_owner(pm: PluginManager, option: str) -> str | None:
    """Which installed but disabled plugin adds command-line option `option` (e.g. '--foo')."""
    for name, probe in _dormant(pm):
        params: list[Any] = [
            p for _, found in probe.call_each("kernel_cli_options") for p in found or ()
        ]
        if any(option in getattr(p, "opts", ()) for p in params):
            return name
    return None
