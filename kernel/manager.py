"""Plugin discovery, enabling and blocking: one pluggy manager per worker or app, never global."""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .catalog import PUBLISHED, distribution_for
from .errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "kernel.plugins"
SCHEME_GROUP = "kernel.schemes"  # "<role>.<scheme>" = the object reference of the plugin serving it
ENV_PLUGINS = "KERNEL_PLUGINS"
ENV_TRACE = "KERNEL_TRACE_HOOKS"
BLOCK_PREFIX = "no:"

_HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("kernel_"))


@attrs.frozen
class Installed:
    """One entry point in the `kernel.plugins` group: a plugin that could be enabled."""

    name: str
    value: str
    distribution: str | None
    version: str | None

    def load(self) -> Any:
        ep = importlib.metadata.EntryPoint(self.name, self.value, ENTRY_POINT_GROUP)
        try:
            return ep.load()
        except Exception as exc:  # a broken plugin must not take the CLI down with a traceback
            raise PluginError(
                f"plugin {self.name!r} ({self.distribution or '?'}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def installed_plugins() -> dict[str, Installed]:
    """Every plugin installed in this environment, by entry-point name (first one wins)."""
    found: dict[str, Installed] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(
            ep.name,
            Installed(
                name=ep.name,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            ),
        )
    return dict(sorted(found.items()))


def declared_schemes(installed: Mapping[str, Installed]) -> dict[str, str]:
    """ "<role>.<scheme>" -> the installed plugin that declares it serves that URL scheme.

    A plugin declares the schemes it serves beyond "<role>.<its name>" (``rediss`` for
    ``broker.redis``) in the entry-point group `kernel.schemes`, naming its own object
    reference, so no plugin is imported to learn what it serves."""
    by_reference = {entry.value: name for name, entry in reversed(list(installed.items()))}
    found: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=SCHEME_GROUP):
        name = by_reference.get(ep.value)
        if name is not None:
            found.setdefault(ep.name, name)
    return found


def split_plugin_args(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split `--plugin` style values (comma lists allowed; `no:NAME` blocks) into enable/block."""
    enable: list[str] = []
    block: list[str] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if part.startswith(BLOCK_PREFIX):
                block.append(part[len(BLOCK_PREFIX) :])
            elif part not in enable:
                enable.append(part)
    return enable, block


def plugins_from_env() -> list[str]:
    return [os.environ.get(ENV_PLUGINS, "")]


class PluginManager(pluggy.PluginManager):
    """The kernel's pluggy manager: hook contract loaded, entry points enabled only by name."""

    def __init__(self, *, discover: bool = True) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self._discover = discover
        self._installed: dict[str, Installed] | None = None
        self._schemes: dict[str, str] | None = None
        if os.environ.get(ENV_TRACE):
            self.trace.root.setwriter(sys.stderr.write)
            self.enable_tracing()

    # discovery ----------------------------------------------------------------------------
    @property
    def discovers(self) -> bool:
        """Whether this manager looks at installed entry points (a test's may not)."""
        return self._discover

    @property
    def installed(self) -> dict[str, Installed]:
        if self._installed is None:
            self._installed = installed_plugins() if self._discover else {}
        return self._installed

    def origin(self, name: str) -> Installed | None:
        """The entry point a registered plugin was loaded from (None for objects added directly)."""
        return self.installed.get(name)

    def plugin_for_url(self, role: str, url: str, key: str) -> str:
        """The plugin serving `url`'s scheme for `role`: the one that declares it, else
        "<role>.<scheme>" (a scheme's part before "+" counts too: db+postgresql -> db).

        A bare word ("redis", as kombu allows) goes to the plugin it names, which says best
        what it accepts; anything else without "://" is refused here, naming setting `key`, so
        `rediss//host` is a bad URL rather than a plugin that failed to start."""
        first = url.split(";", 1)[0].strip()  # several URLs fail over; the first picks
        word = re.match(r"[A-Za-z][A-Za-z0-9+.-]*", first)
        scheme = word.group(0).lower() if word else ""
        rest = first[len(scheme) :]
        if not word or (rest and not rest.startswith("://")):
            shown = re.sub(r":[^:/@]*@", ":****@", first)  # no password in the message
            guess = f"; did you mean {scheme + '://' + shown[len(scheme) :].lstrip(':/')!r}?"
            hint = guess if word else ", e.g. redis://host"
            raise ConfigError(key, f"bad URL {shown!r}: expected SCHEME://...{hint}")
        if self._schemes is None:
            self._schemes = declared_schemes(self.installed) if self._discover else {}
        base = scheme.split("+", 1)[0]
        found = self._schemes.get(f"{role}.{scheme}") or self._schemes.get(f"{role}.{base}")
        return found or f"{role}.{base}"

    def missing_message(self, name: str) -> str:
        if not self._discover:
            return (
                f"plugin {name!r} is not registered: this manager does not look at installed "
                "plugins (discover=False); register the plugin object, or pass discover=True"
            )
        dist = distribution_for(name)
        if dist:
            return f"plugin {name!r} is not installed; install it with: pip install {dist}"
        candidates = [*self.installed, *PUBLISHED]
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"plugin {name!r} is not installed{hint} (see `kernel plugins`)"

    # enabling -----------------------------------------------------------------------------
    def enable(self, name: str) -> Any:
        """Load the installed entry point `name` and register it under that name."""
        if self.is_blocked(name):
            raise PluginError(f"plugin {name!r} is blocked (no:{name}) but was asked for")
        existing = self.get_plugin(name)
        if existing is not None:
            return existing
        entry = self.installed.get(name)
        if entry is None:
            raise PluginError(self.missing_message(name))
        plugin = entry.load()
        self.add(plugin, name)
        return plugin

    def add(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object after checking every `kernel_*` attribute names a real hook."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        self._check_hook_names(plugin, name)
        try:
            registered = self.register(plugin, name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r}: {_one_line(str(exc))}") from None
        except ValueError as exc:
            raise PluginError(f"plugin {name!r}: {_one_line(str(exc))}") from None
        return registered or name

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        # Like pytest: an unmarked `kernel_*` function is a hook implementation too, so a
        # misspelled one is reported instead of silently never being called.
        if opts is None and name.startswith("kernel_") and _is_routine(plugin, name):
            return {}
        return opts

    def _check_hook_names(self, plugin: Any, name: str) -> None:
        for attr in dir(plugin):
            if not attr.startswith("kernel_") or not _is_routine(plugin, attr):
                continue
            impl = self.parse_hookimpl_opts(plugin, attr) or {}
            hook = impl.get("specname") or attr
            if hook not in _HOOK_NAMES:
                close = difflib.get_close_matches(hook, sorted(_HOOK_NAMES), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise PluginError(f"plugin {name!r} implements unknown hook {hook!r}{hint}")

    # introspection ------------------------------------------------------------------------
    def enabled(self) -> Iterator[tuple[str, Any]]:
        for name, plugin in self.list_name_plugin():
            if plugin is not None:
                yield name, plugin

    def implements(self, hook: str) -> bool:
        """True if any enabled plugin implements `hook` (so hot paths can skip the call)."""
        caller = getattr(self.hook, hook, None)
        return bool(caller and caller.get_hookimpls())

    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a collecting hook once per implementing plugin, pairing each result with its owner.

        Goes through pluggy (so tracing and recorders see it); for hooks called once per build,
        where knowing which plugin returned what matters more than one call's cost.
        """
        impls = getattr(self.hook, hook).get_hookimpls()
        results = []
        for impl in impls:
            others = [other.plugin for other in impls if other is not impl]
            outcome = self.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
            results.append((impl.plugin_name, outcome[0] if outcome else None))
        return results

    def hooks_of(self, plugin: Any) -> list[str]:
        return sorted(caller.name for caller in self.get_hookcallers(plugin) or [])


def _is_routine(plugin: Any, attr: str) -> bool:
    try:
        value = inspect.getattr_static(plugin, attr)
    except AttributeError:
        return False
    if isinstance(value, (staticmethod, classmethod)):
        return True
    return inspect.isroutine(value)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
