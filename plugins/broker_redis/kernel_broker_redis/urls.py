"""Redis broker URLs: redis://, rediss:// (TLS), sentinel://, and `;`-separated failover lists."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import redis
from redis.sentinel import Sentinel

from kernel.plugin import ConfigError, safe_url

SCHEMES = ("redis", "rediss", "sentinel")


@attrs.frozen
class Target:
    """One place the broker may live; `client()` makes a redis-py client for it."""

    url: str
    host: str
    port: int
    make: Callable[[], redis.Redis]

    where: str = attrs.field(init=False)  # for messages: the URL without its password

    @where.default
    def _where(self) -> str:
        return f"{safe_url(self.url)} ({self.host}:{self.port})"

    def client(self) -> redis.Redis:
        return self.make()


def targets(url: str, options: Mapping[str, Any], connect_timeout: float) -> list[Target]:
    """Parse a broker URL (or a `;` list of them) into targets tried in order."""
    parts = [part.strip() for part in url.split(";") if part.strip()]
    if not parts:
        raise ConfigError("broker_url", f"no URL in {url!r}")
    schemes = {urlsplit(part).scheme for part in parts}
    if not schemes <= set(SCHEMES):
        raise ConfigError(
            "broker_url",
            f"expected {', '.join(s + '://' for s in SCHEMES)} URLs, got {safe_url(url)!r}",
        )
    common = {
        "socket_connect_timeout": options.get("socket_connect_timeout", connect_timeout),
        "socket_timeout": options.get("socket_timeout", 30.0),
        "socket_keepalive": options.get("socket_keepalive", True),
        "health_check_interval": options.get("health_check_interval", 25),
        "retry_on_timeout": False,
    }
    if "sentinel" in schemes:
        return [_sentinel(parts, options, common)]
    return [_direct(part, options, common) for part in parts]


def _hostport(part: str, default_port: int) -> tuple[str, int]:
    split = urlsplit(part)
    try:
        port = split.port or default_port
    except ValueError:
        raise ConfigError("broker_url", f"bad port in {safe_url(part)!r}") from None
    return split.hostname or "localhost", port


def _direct(part: str, options: Mapping[str, Any], common: Mapping[str, Any]) -> Target:
    host, port = _hostport(part, 6379)
    extra = {
        k: options[k]
        for k in ("max_connections", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
        if k in options
    }
    try:
        pool = redis.ConnectionPool.from_url(part, **common, **extra)
    except ValueError as exc:
        raise ConfigError("broker_url", f"{safe_url(part)!r}: {exc}") from None
    return Target(part, host, port, lambda: redis.Redis(connection_pool=pool))


def _sentinel(parts: list[str], options: Mapping[str, Any], common: Mapping[str, Any]) -> Target:
    master = options.get("master_name")
    if not master:
        raise ConfigError(
            "broker_transport_options",
            "sentinel:// URLs need master_name in broker_transport_options",
        )
    hosts = [_hostport(part, 26379) for part in parts]
    first = urlsplit(parts[0])
    password = unquote(first.password) if first.password else None
    db = int(first.path.strip("/") or 0) if first.path.strip("/").isdigit() else 0
    sentinel = Sentinel(
        hosts,
        sentinel_kwargs=dict(options.get("sentinel_kwargs") or {}),
        password=password,
        db=db,
        **common,
    )
    host, port = hosts[0]
    return Target(";".join(parts), host, port, lambda: sentinel.master_for(str(master)))
