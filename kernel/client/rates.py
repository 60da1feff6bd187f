"""Rate strings as Celery writes them: `10/s`, `100/m`, `1000/h`, or a bare number per second."""

from __future__ import annotations

import re
from typing import Any

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
FORMS = "a number of tasks per second (10), or N/s, N/m, N/h (10/s, 100/m, 1000/h)"


def parse_rate(value: Any) -> float | None:
    """Tasks per second, or None for no limit (None, "", 0). ValueError quotes a bad string."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"invalid rate limit {value!r}: use {FORMS}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid rate limit {value!r}: use {FORMS}")
        return float(value) or None
    match = _RATE.match(str(value))
    if not match:
        raise ValueError(f"invalid rate limit {value!r}: use {FORMS}")
    per_second = float(match.group(1)) / _PER[match.group(2) or "s"]
    return per_second or None
