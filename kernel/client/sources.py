"""Reading a configuration source as Celery reads it: objects, modules, paths and namespaces."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from ..errors import ConfigError, UsageError
from .celery_settings import CELERY_SETTINGS, OLD_NAMES

_SETTING_NAME = re.compile(r"[a-z][a-z0-9_]*")
# upper-case names with these prefixes are meant as Celery settings: a stray one is a mistake
_CELERY_PREFIXES = ("CELERY_", "CELERYD_", "CELERYBEAT_", "BROKER_")


def source_reader(
    obj: Any, namespace: str | None = None, silent: bool = False
) -> Callable[[], dict[str, Any]]:
    """A function that reads `obj` (a mapping, an object, a module, or a module's name, dotted
    or `module:attribute`) into settings by their new names, when called: an app reads its
    source at first use, as Celery does, so that Django's settings are not read while the
    project's package is still being imported."""

    def read() -> dict[str, Any]:
        found = obj
        if isinstance(obj, str):
            try:
                found = import_object(obj)
            except (ImportError, AttributeError) as exc:
                if silent:
                    return {}
                raise UsageError(
                    f"cannot load configuration {obj!r}: {type(exc).__name__}: {exc}"
                ) from None
        return settings_in(items_of(found), namespace)

    return read


def import_object(path: str) -> Any:
    """`package.module`, `package.module:attribute` or `package.module.attribute`."""
    module_name, colon, attribute = path.partition(":")
    if not colon:
        try:
            return importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if "." not in path or exc.name != path:
                raise  # the module is there but fails to import something else
            module_name, _, attribute = path.rpartition(".")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def items_of(obj: Any) -> dict[str, Any]:
    """The names and values a configuration object holds (a module's imports left out)."""
    if isinstance(obj, Mapping):
        return {key: value for key, value in obj.items() if isinstance(key, str)}
    found = {}
    for name in dir(obj):
        if name.startswith("_"):
            continue
        value = getattr(obj, name)
        # a module it imported, or a method (Django's settings.is_overridden), is no setting
        if isinstance(value, ModuleType) or inspect.ismethod(value) or _imported(obj, value):
            continue
        found[name] = value
    return found


def _imported(obj: Any, value: Any) -> bool:
    """Functions and classes a config module imported are not settings."""
    return (
        isinstance(obj, ModuleType)
        and callable(value)
        and getattr(value, "__module__", obj.__name__) != obj.__name__
    )


def settings_in(items: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
    """The settings among `items`, by their new names.

    With a namespace (``"CELERY"``), `CELERY_BROKER_URL` is broker_url and names without the
    prefix are not settings (Django's own); without one, lower-case names are settings and
    Celery's old upper-case names (`BROKER_URL`, `CELERYD_CONCURRENCY`) are read as the new
    ones, but not both kinds in one source (Celery refuses that too). Django's `TIME_ZONE`
    stands for `timezone` when that is not given, as in Celery."""
    found = _namespaced(items, namespace) if namespace else _unprefixed(items)
    if found.get("timezone") is None and items.get("TIME_ZONE") is not None:
        found["timezone"] = items["TIME_ZONE"]
    return found


def _namespaced(items: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    prefix = namespace.rstrip("_") + "_"
    found: dict[str, Any] = {}
    for key, value in items.items():
        if key in CELERY_SETTINGS:
            found.setdefault(key, value)  # Celery finds new names without the prefix too
        if not key.startswith(prefix) or len(key) == len(prefix):
            continue
        name = key[len(prefix) :].lower()
        if name not in CELERY_SETTINGS and key in OLD_NAMES:
            # Celery looks up CELERY_TASK_ALWAYS_EAGER, so CELERY_ALWAYS_EAGER does nothing there
            raise ConfigError(
                key,
                f"Celery's old name for {OLD_NAMES[key]}, which namespace={namespace!r} reads "
                f"as {prefix}{OLD_NAMES[key].upper()} (Celery ignores {key})",
            )
        found[name] = value
    return found


def _unprefixed(items: Mapping[str, Any]) -> dict[str, Any]:
    old = {key for key in items if key in OLD_NAMES}
    new = {key for key in items if key in CELERY_SETTINGS}
    if old and new:
        _refuse_mixed(items, old, new)
    found: dict[str, Any] = {}
    for key, value in items.items():
        if _SETTING_NAME.fullmatch(key):
            found[key] = value
        elif key in OLD_NAMES:
            if OLD_NAMES[key] not in items:  # given both ways: the new name wins
                found[OLD_NAMES[key]] = value
        elif key.startswith(_CELERY_PREFIXES):
            raise ConfigError(key, _stray_message(key))
    return found


def _refuse_mixed(items: Mapping[str, Any], old: set[str], new: set[str]) -> None:
    # as Celery: the fewer kind must be renamed (old ones on a tie), except a name given both ways
    if len(new) >= len(old):
        stray = [key for key in old if OLD_NAMES[key] not in items]
    else:
        stray = [key for key in new if CELERY_SETTINGS[key].old not in items]
    if stray:
        renames = ", ".join(f"{key} -> {OLD_NAMES[key]}" for key in sorted(old))
        raise ConfigError(
            "Celery's old upper-case setting names and the new lower-case ones are mixed in one "
            f"configuration source (Celery refuses it too); rename the old ones: {renames}"
        )


def _stray_message(key: str) -> str:
    if key.startswith("CELERY_") and key[7:].lower() in CELERY_SETTINGS:
        return f"not a setting without a namespace; with namespace='CELERY' it is {key[7:].lower()}"
    close = difflib.get_close_matches(key, list(OLD_NAMES), n=3)
    if close:
        return "unknown setting; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "unknown setting"
