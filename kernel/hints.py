"""What to tell a user who asked for something no enabled plugin offers."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from .bootsteps import Step
from .catalog import distribution_for, providers
from .graph import StepSpec
from .manager import PluginManager
from .settings import declared_by

log = logging.getLogger("kernel.plugins")


def _dormant(pm: PluginManager) -> Iterator[tuple[str, PluginManager, list[type[Step]]]]:
    """Each installed plugin that is not enabled, loaded into a throwaway manager, with its
    steps. A plugin that is broken is passed over: installed is not enabled, so it must not
    stand in the way of a hint about something else."""
    for name, entry in pm.installed.items():
        if pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue
        probe = PluginManager(discover=False)
        try:
            probe.add(entry.load(), name)
            steps = [cls for _, found in probe.call_each("kernel_steps") for cls in found or ()]
        except Exception as exc:
            log.debug("installed plugin %s cannot be probed for hints: %s", name, exc)
            continue
        yield name, probe, steps


def role_hint(pm: PluginManager, role: str, selectors: Mapping[str, str]) -> str | None:
    """How to get a provider for `role` (a role name or a step name); `selectors` maps the
    roles a setting picks to that setting."""
    if role in selectors:
        prefix = role + "."
        installed = [n for n in pm.installed if n.startswith(prefix)]
        if installed:
            how = "--pool" if role == "pool" else f"the {selectors[role]} setting"
            return f"pick one with {how} ({', '.join(n[len(prefix) :] for n in installed)})"
        known = providers(role)
        return f"install one, e.g. pip install {distribution_for(known[0])}" if known else None
    for name, _, steps in _dormant(pm):
        for cls in steps:
            try:
                spec = StepSpec.of(cls, name)
            except Exception:
                continue
            if role == spec.name or role in spec.provides:
                return f"enable plugin {name!r} with --plugin {name}"
    dist = distribution_for(role)
    return f"install it with pip install {dist}, then add --plugin {role}" if dist else None


def setting_hint(pm: PluginManager, key: str) -> str | None:
    """Which installed but disabled plugin declares setting `key`."""
    for name, probe, steps in _dormant(pm):
        try:
            keys = {s.key for cls in steps for s in declared_by(cls)}
            for _, found in probe.call_each("kernel_settings"):
                keys.update(item.key for item in found or ())
        except Exception as exc:
            log.debug("installed plugin %s cannot be probed for settings: %s", name, exc)
            continue
        if key in keys:
            return f"it belongs to plugin {name!r}; enable it with --plugin {name}"
    return None


def option_owner(pm: PluginManager, option: str) -> str | None:
    """Which installed but disabled plugin adds command-line option `option` (e.g. '--foo')."""
    for name, probe, _ in _dormant(pm):
        try:
            params: list[Any] = [
                p for _, found in probe.call_each("kernel_cli_options") for p in found or ()
            ]
        except Exception:
            continue
        if any(option in getattr(p, "opts", ()) for p in params):
            return name
    return None
