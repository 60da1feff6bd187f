"""Finding task modules: `<package>.tasks` for each package, or each Django installed app."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from typing import Any

from ..errors import UsageError


def discovered_modules(packages: Any, related_name: str) -> Iterator[str]:
    """The modules named `related_name` inside `packages` that exist (a package without one is
    passed over, as Celery passes it over)."""
    if callable(packages):
        packages = packages()
    if packages is None:
        packages = _django_apps()
    for package in packages:
        module = f"{package}.{related_name}" if related_name else str(package)
        try:
            spec = importlib.util.find_spec(module)  # imports the package, not the module
        except Exception as exc:
            raise UsageError(
                f"cannot discover tasks in {package!r}: {type(exc).__name__}: {exc}"
            ) from None
        if spec is not None:
            yield module


def import_task_module(module: str) -> None:
    """Import a module that holds tasks; one that fails to import is a mistake naming it and
    why, so a worker never starts with half its tasks."""
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise UsageError(f"cannot import {module!r}: {type(exc).__name__}: {exc}") from None


def _django_apps() -> list[str]:
    """Django's installed apps (their modules), once Django is set up; none without Django."""
    try:
        from django.apps import apps
    except ImportError:
        return []
    if not apps.ready:
        import django

        django.setup()
    return [config.name for config in apps.get_app_configs()]
