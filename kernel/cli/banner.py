"""The start-up banner and the `kernel graph` listing: what this worker is made of."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine.worker import Worker


def core_version() -> str:
    try:
        return version("taskkernel")
    except PackageNotFoundError:
        return "unknown"


def plugin_label(worker: Worker, name: str) -> str:
    origin = worker.pm.origin(name)
    return f"{name} {origin.version}" if origin and origin.version else name


def step_lines(worker: Worker) -> list[str]:
    """One line per step in start order: name, plugin, roles, requirements, note."""
    assert worker.boot is not None
    rows = []
    for index, step in enumerate(worker.steps, 1):
        spec = worker.boot.specs[step.name]
        parts = [f"plugin {spec.plugin}"]
        if spec.provides:
            parts.append("provides " + ", ".join(spec.provides))
        if spec.requires:
            parts.append("requires " + ", ".join(spec.requires))
        note = step.describe()
        if note:
            parts.append(note)
        rows.append((f"{index:>2}. {step.name}", "; ".join(parts)))
    width = max((len(left) for left, _ in rows), default=0)
    return [f"{left:<{width}}  {right}" for left, right in rows]


def render(worker: Worker) -> str:
    plugins = [plugin_label(worker, name) for name, _ in worker.pm.enabled()]
    rows: list[tuple[str, str]] = [
        ("node", f"{worker.hostname} (pid {os.getpid()})"),
        ("plugins", ", ".join(plugins) or "(none)"),
        ("steps", " -> ".join(step.name for step in worker.steps) or "(none)"),
    ]
    notes = [f"{step.name}: {step.describe()}" for step in worker.steps if step.describe()]
    if notes:
        rows.append(("config", "\n".join(notes)))
    rows.extend(worker.banner_rows())
    width = max(len(key) for key, _ in rows)
    indent = "\n" + " " * (width + 5)  # continuation lines line up under the first value
    lines = [f"taskkernel {core_version()}"]
    lines += [f"  {key:<{width}} : {indent.join(value.splitlines())}" for key, value in rows]
    return "\n".join(lines)
