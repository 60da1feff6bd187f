"""Plugins the project publishes, so errors can say what to install for a missing capability."""

from __future__ import annotations

# entry-point name -> (distribution to install, what it does)
KNOWN_PLUGINS: dict[str, tuple[str, str]] = {
    "pool.solo": ("taskkernel-pool-solo", "runs one task at a time in the worker process"),
    "pool.threads": ("taskkernel-pool-threads", "a pool of threads"),
    "pool.prefork": ("taskkernel-pool-prefork", "a pool of child processes (billiard)"),
    "pool.gevent": ("taskkernel-pool-gevent", "green threads on gevent"),
    "pool.eventlet": ("taskkernel-pool-eventlet", "green threads on eventlet"),
    "broker.embedded": ("taskkernel-broker-embedded", "a broker in a file, no server"),
    "broker.redis": ("taskkernel-broker-redis", "Redis broker"),
    "broker.amqp": ("taskkernel-broker-amqp", "RabbitMQ (AMQP) broker"),
    "backend.embedded": ("taskkernel-backend-embedded", "results in a file, no server"),
    "backend.redis": ("taskkernel-backend-redis", "Redis result backend"),
    "backend.rpc": ("taskkernel-backend-rpc", "results as messages to the client's reply queue"),
    "backend.database": ("taskkernel-backend-database", "results in a SQL database"),
    "ratelimit": ("taskkernel-ratelimit", "task rate limits, per worker or cluster-wide"),
    "autoscale": ("taskkernel-autoscale", "grows and shrinks the pool with the load"),
    "maxtasks": ("taskkernel-maxtasks", "recycles pool children after N tasks or N KiB"),
}

# A role is filled by exactly one plugin whose entry-point name starts with "<role>.".
ROLES = ("pool", "broker", "backend")


def distribution_for(name: str) -> str | None:
    known = KNOWN_PLUGINS.get(name)
    return known[0] if known else None


def known_providers(role: str) -> list[str]:
    return sorted(name for name in KNOWN_PLUGINS if name.startswith(role + "."))


# URL scheme -> plugin, where the name is not simply "<role>.<scheme>"
BROKER_SCHEMES = {
    "rediss": "broker.redis",
    "sentinel": "broker.redis",
    "amqps": "broker.amqp",
    "pyamqp": "broker.amqp",
}
BACKEND_SCHEMES = {"rediss": "backend.redis", "sentinel": "backend.redis", "db": "backend.database"}


def _plugin_for(url: str, role: str, table: dict[str, str]) -> str:
    first = url.split(";", 1)[0].strip()  # several URLs fail over; the first picks the plugin
    scheme = first.split("://", 1)[0].lower()
    base = scheme.split("+", 1)[0]  # db+postgresql -> db
    return table.get(scheme) or table.get(base) or f"{role}.{base}"


def broker_plugin_for(url: str) -> str:
    return _plugin_for(url, "broker", BROKER_SCHEMES)


def backend_plugin_for(url: str) -> str:
    return _plugin_for(url, "backend", BACKEND_SCHEMES)
