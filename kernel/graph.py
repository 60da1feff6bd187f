"""Orders bootsteps by their declared requirements; the only module that imports networkx."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs
import networkx as nx

from .errors import CycleError, DuplicateProviderError, MissingRoleError, PluginError


@attrs.frozen
class StepSpec:
    """What the graph needs to know about one step class."""

    name: str
    plugin: str
    provides: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    start_last: bool = False

    @classmethod
    def of(cls, step_cls: type, plugin: str) -> StepSpec:
        name = getattr(step_cls, "name", "")
        if not name:
            raise PluginError(f"plugin {plugin!r}: step class {step_cls.__qualname__} has no name")
        return cls(
            name=name,
            plugin=plugin,
            provides=tuple(getattr(step_cls, "provides", ())),
            requires=tuple(getattr(step_cls, "requires", ())),
            after=tuple(getattr(step_cls, "after", ())),
            before=tuple(getattr(step_cls, "before", ())),
            start_last=bool(getattr(step_cls, "start_last", False)),
        )

    def label(self) -> str:
        return f"{self.name!r} (plugin {self.plugin})"


@attrs.frozen
class BootOrder:
    """The resolved start order, with the edges that produced it."""

    order: tuple[str, ...]
    specs: Mapping[str, StepSpec]
    edges: tuple[tuple[str, str, bool], ...]  # (earlier, later, hard requirement?)

    def to_dot(self) -> str:
        lines = ["digraph kernel {", "  rankdir=LR;", "  node [shape=box];"]
        for name in self.order:
            spec = self.specs[name]
            parts = [name, f"plugin: {spec.plugin}"]
            if spec.provides:
                parts.insert(1, "provides: " + ", ".join(spec.provides))
            label = "\\n".join(_esc(part) for part in parts)  # DOT's own line break
            lines.append(f'  "{_esc(name)}" [label="{label}"];')
        for earlier, later, hard in self.edges:
            style = "" if hard else " [style=dashed]"
            lines.append(f'  "{_esc(earlier)}" -> "{_esc(later)}"{style};')
        lines.append("}")
        return "\n".join(lines)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def resolve(
    specs: Iterable[StepSpec], hint: Callable[[str], str | None] = lambda role: None
) -> BootOrder:
    """Order steps so every requirement starts first; ties break by name, so order never varies.

    Raises DuplicateProviderError, MissingRoleError (with `hint(role)` saying what would provide
    it) or CycleError (naming the loop's members).
    """
    by_name: dict[str, StepSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise DuplicateProviderError(spec.name, [by_name[spec.name].label(), spec.label()])
        by_name[spec.name] = spec

    provider: dict[str, StepSpec] = dict(by_name)
    for spec in by_name.values():
        for role in spec.provides:
            other = provider.get(role)
            if other is not None and other is not spec:
                raise DuplicateProviderError(role, [other.label(), spec.label()])
            provider[role] = spec

    graph = nx.DiGraph()
    graph.add_nodes_from(sorted(by_name))  # node order steers find_cycle; keep it fixed
    hard_edges: dict[tuple[str, str], bool] = {}

    def link(earlier: str, later: str, hard: bool) -> None:
        graph.add_edge(earlier, later)
        hard_edges[(earlier, later)] = hard_edges.get((earlier, later), False) or hard

    for spec in sorted(by_name.values(), key=lambda s: s.name):
        for role in spec.requires:
            if role not in provider:
                raise MissingRoleError(spec.name, role, hint(role))
            link(provider[role].name, spec.name, True)
        for role in spec.after:
            if role in provider:
                link(provider[role].name, spec.name, False)
        for role in spec.before:
            if role in provider:
                link(spec.name, provider[role].name, False)

    # a step that lets work in (the consumer) starts after every step not ordered after it,
    # so policies are in place before the first task arrives, and stops before them
    for last in sorted(name for name, spec in by_name.items() if spec.start_last):
        for name in sorted(by_name):
            if name != last and not nx.has_path(graph, last, name):
                link(name, last, False)

    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        # edges run from what starts first to what needs it; list members in "needs" order
        raise CycleError(_rotate([edge[0] for edge in reversed(cycle)]))

    order = tuple(nx.lexicographical_topological_sort(graph))
    edges = tuple((first, then, hard) for (first, then), hard in hard_edges.items())
    return BootOrder(order=order, specs=dict(by_name), edges=edges)


def _rotate(members: list[str]) -> list[str]:
    """Start a cycle at its smallest member so the message is the same on every run."""
    start = members.index(min(members))
    return members[start:] + members[:start]
