"""Time zones: checking the `timezone` setting, and the zone an app gives its times in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError
from ..settings import to_bool

UTC = timezone.utc


def to_timezone(value: Any) -> Any:
    """A `timezone` setting: a zone name zoneinfo knows ('Europe/Paris'), a tzinfo, or None."""
    if value is None or isinstance(value, tzinfo):
        return value
    if isinstance(value, str) and value.strip():
        try:
            ZoneInfo(value.strip())
            return value.strip()
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ValueError(f"expected a time zone name such as 'Europe/Paris' or 'UTC', got {value!r}")


def zone_of(conf: Mapping[str, Any]) -> tzinfo:
    """The zone of an app's times, as Celery's `app.timezone`: `timezone` if set, else UTC, or
    this machine's zone when `enable_utc` is false. ConfigError names a bad setting."""
    try:
        name = to_timezone(conf["timezone"])
    except ValueError as exc:
        raise ConfigError("timezone", str(exc)) from None
    if isinstance(name, tzinfo):
        return name
    if name is None:
        try:
            utc = to_bool(conf["enable_utc"])
        except ValueError as exc:
            raise ConfigError("enable_utc", str(exc)) from None
        return UTC if utc else local_zone()
    return UTC if name in ("UTC", "Etc/UTC") else ZoneInfo(name)  # the fast UTC where we can


def local_zone() -> tzinfo:
    """This machine's zone: $TZ, else /etc/localtime, else its current offset from UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        return datetime.now().astimezone().tzinfo or UTC
