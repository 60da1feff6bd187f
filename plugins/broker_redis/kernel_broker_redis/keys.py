"""Where things live in Redis: kombu's layout (so Celery shares it), plus this broker's own keys."""

from __future__ import annotations

from bisect import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

SEP = "\x06\x16"  # kombu's separator in priority list names and binding members
PRIORITY_STEPS = (0, 3, 6, 9)


def priority_step(priority: Any) -> int:
    """kombu's bucket for a message priority: clamp to 0..9, round down to 0, 3, 6 or 9."""
    try:
        value = int(priority)
    except (TypeError, ValueError):
        value = 0
    value = min(max(value, 0), 9)
    return PRIORITY_STEPS[bisect(PRIORITY_STEPS, value) - 1]


@attrs.frozen
class Keys:
    """Key names, honouring kombu's `global_keyprefix` and its unacked key options."""

    prefix: str = ""
    unacked: str = "unacked"
    unacked_index: str = "unacked_index"
    unacked_mutex: str = "unacked_mutex"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Keys:
        prefix = str(options.get("global_keyprefix") or "")
        return cls(
            prefix=prefix,
            unacked=prefix + str(options.get("unacked_key", "unacked")),
            unacked_index=prefix + str(options.get("unacked_index_key", "unacked_index")),
            unacked_mutex=prefix + str(options.get("unacked_mutex_key", "unacked_mutex")),
        )

    def queue(self, name: str, priority: Any = 0) -> str:
        """The list a message of this priority sits in (0 is the queue's own name, as kombu)."""
        step = priority_step(priority)
        return f"{self.prefix}{name}{SEP}{step}" if step else f"{self.prefix}{name}"

    def queue_lists(self, names: Sequence[str]) -> list[str]:
        """Every list to take from, most urgent first: Redis priority 0 before 3, 6, 9."""
        return [
            f"{self.prefix}{name}{SEP}{step}" if step else f"{self.prefix}{name}"
            for step in PRIORITY_STEPS
            for name in names
        ]

    def binding(self, exchange: str) -> str:
        return f"{self.prefix}_kombu.binding.{exchange}"

    @staticmethod
    def binding_member(queue: str, routing_key: str, pattern: str = "") -> str:
        return f"{routing_key}{SEP}{pattern}{SEP}{queue}"

    # this broker's own bookkeeping (Celery ignores these keys)
    @property
    def consumers(self) -> str:
        return f"{self.prefix}_kernel.consumers"

    def heartbeat(self, consumer: str) -> str:
        return f"{self.prefix}_kernel.consumer.{consumer}"

    def held(self, consumer: str) -> str:
        return f"{self.prefix}_kernel.held.{consumer}"
