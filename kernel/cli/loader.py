"""Finding the user's app from `-A module[:attribute]`."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ..client.app import App
from ..errors import UsageError


def load_app(spec: str) -> App:
    """`proj.tasks:app`, or `proj.tasks` holding exactly one App (or one named `app`)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's modules live here
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"cannot import app {spec!r}: {type(exc).__name__}: {exc}") from None
    if attribute:
        found: Any = module
        for part in attribute.split("."):
            found = getattr(found, part, None)
        if not isinstance(found, App):
            raise UsageError(f"{spec!r} is not a kernel.App (found {type(found).__name__})")
        return found
    if isinstance(getattr(module, "app", None), App):
        return module.app  # type: ignore[no-any-return]
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise UsageError(
            f"module {module_name!r} holds {len(apps)} apps; name one as {module_name}:ATTRIBUTE"
        )
    return apps[0]
