"""Celery settings we know without honouring them: declared, warned about once, or refused."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..settings import Converter, Setting, Settings, identity
from .celery_settings import CELERY_SETTINGS, IGNORED, PLUGIN, REFUSED, Known

# the owner of a setting declared from Celery's list rather than by code that honours it; a
# declaration by a plugin or the core takes its place (see Conf.declare)
CELERY_OWNER = "celery"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def placeholders(honoured: set[str]) -> list[Setting]:
    """Declarations for Celery's names outside `honoured` (the keys the core declares), each
    with Celery's default (a fresh copy: an app may change a default dict in place)."""
    return [
        Setting(name, copy.deepcopy(known.default), _converter(known), known.note, CELERY_OWNER)
        for name, known in CELERY_SETTINGS.items()
        if name not in honoured
    ]


def _converter(known: Known) -> Converter:
    if known.what != REFUSED:
        return identity  # a value we do not use is not ours to judge

    def refuse(value: Any) -> Any:
        if at_default(value, known.default):
            return value
        raise ValueError(f"not supported; {known.note}")

    return refuse


def at_default(value: Any, default: Any) -> bool:
    """Whether `value` asks for nothing beyond Celery's `default`: None, empty, the default
    itself, or the default as typed on a command line ('false', '10', 'none')."""
    if value is None or value == default:
        return True
    if isinstance(value, (str, dict, list, tuple, set)) and not value and not default:
        return True
    if not isinstance(value, str):
        return False
    text = value.strip().lower()
    if text in ("", "none"):
        return True
    if isinstance(default, bool):
        return text in (_TRUE if default else _FALSE)
    if isinstance(default, (int, float)):
        try:
            return float(text) == default
        except ValueError:
            return False
    return False


def unhonoured(conf: Settings, enabled: Callable[[str], bool]) -> list[tuple[str, str]]:
    """The Celery settings `conf` was given (other than at Celery's default) that nothing
    enabled honours, each with what to do instead; `enabled(name)` says if a plugin is."""
    declared = conf.declared()
    found = []
    for key, value in sorted(conf.explicit().items()):
        known = CELERY_SETTINGS.get(key)
        if known is None or at_default(value, known.default):
            continue
        held = declared.get(key)
        if known.what == IGNORED and (held is None or held.owner == CELERY_OWNER):
            found.append((key, known.note))
        elif known.what == PLUGIN and not enabled(known.plugin):
            found.append((key, _enable(known)))
    return found


def _enable(known: Known) -> str:
    role, _, name = known.plugin.partition(".")
    if role == "pool":
        how = f"--pool {name}"
    elif role in ("broker", "backend"):
        how = "a URL of its scheme"
    else:
        how = f"--plugin {known.plugin}"
    text = f"honoured by plugin {known.plugin}, which is not enabled ({how})"
    return f"{text}; {known.note}" if known.note else text


def check_refused(values: Mapping[str, Any]) -> None:
    """ConfigError for the first refused Celery setting among `values` not at its default:
    what a client sends must not depend on a setting it would ignore."""
    for key, value in values.items():
        known = CELERY_SETTINGS.get(key)
        if known is not None and known.what == REFUSED and not at_default(value, known.default):
            raise ConfigError(key, f"not supported; {known.note}")
