"""Settings the core itself declares (plugins declare theirs on their bootsteps)."""

from __future__ import annotations

from .settings import Setting, optional, to_str, to_str_list

CORE_SETTINGS: tuple[Setting, ...] = (
    Setting("plugins", [], to_str_list, "plugins to enable by entry-point name; no:NAME blocks"),
    Setting("worker_pool", None, optional(to_str), "the pool to run tasks in: pool.<name>"),
    Setting("worker_hostname", None, optional(to_str), "node name; %h is this host's name"),
)
