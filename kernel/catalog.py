"""The plugins this project publishes, as data: what hints tell a user to install or enable.

The only place the core names plugins. What an installed plugin serves (URL schemes, task
options) it declares itself; this table speaks for the ones that are not installed.
"""

from __future__ import annotations

from typing import NamedTuple


class Published(NamedTuple):
    distribution: str
    summary: str
    honours: tuple[str, ...] = ()  # task options a worker honours once this plugin is enabled


_LIMITS = ("time_limit", "soft_time_limit")

PUBLISHED: dict[str, Published] = {
    "pool.solo": Published("taskkernel-pool-solo", "runs one task at a time in the worker"),
    "pool.threads": Published("taskkernel-pool-threads", "a pool of threads", _LIMITS),
    "pool.prefork": Published("taskkernel-pool-prefork", "a pool of child processes", _LIMITS),
    "pool.gevent": Published("taskkernel-pool-gevent", "green threads on gevent", _LIMITS),
    "pool.eventlet": Published("taskkernel-pool-eventlet", "green threads on eventlet", _LIMITS),
    "broker.embedded": Published("taskkernel-broker-embedded", "a broker in a file, no server"),
    "broker.redis": Published("taskkernel-broker-redis", "Redis broker"),
    "broker.amqp": Published("taskkernel-broker-amqp", "RabbitMQ (AMQP) broker"),
    "backend.embedded": Published("taskkernel-backend-embedded", "results in a file, no server"),
    "backend.redis": Published("taskkernel-backend-redis", "Redis result backend"),
    "backend.rpc": Published("taskkernel-backend-rpc", "results as messages to the client"),
    "backend.database": Published("taskkernel-backend-database", "results in a SQL database"),
    "ratelimit": Published("taskkernel-ratelimit", "task rate limits", ("rate_limit",)),
    "autoscale": Published("taskkernel-autoscale", "grows and shrinks the pool with the load"),
    "maxtasks": Published("taskkernel-maxtasks", "recycles pool children after N tasks or KiB"),
}


def distribution_for(name: str) -> str | None:
    found = PUBLISHED.get(name)
    return found.distribution if found else None


def providers(role: str) -> list[str]:
    """Published plugins that fill `role` (their names start with "<role>.")."""
    return sorted(name for name in PUBLISHED if name.startswith(role + "."))


def honouring(option: str) -> list[str]:
    """Published plugins that make a worker honour task option `option`."""
    return sorted(name for name, entry in PUBLISHED.items() if option in entry.honours)


def options() -> list[str]:
    """Every task option some published plugin honours."""
    return sorted({option for entry in PUBLISHED.values() for option in entry.honours})
