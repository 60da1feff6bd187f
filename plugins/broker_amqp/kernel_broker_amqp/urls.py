"""Broker URLs: which ones this plugin takes, failover lists, and how to name a host in errors."""

from __future__ import annotations

from urllib.parse import urlsplit

from kernel.plugin import safe_url

SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
DEFAULT_PORT = 5672
DEFAULT_TLS_PORT = 5671


def split_urls(url: str) -> list[str]:
    """The URLs of a `;`-separated failover list, in the order they are tried."""
    return [part.strip() for part in url.split(";") if part.strip()]


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def handles(url: str) -> bool:
    """True if every URL of the list is an AMQP one (a mixed list is some other plugin's)."""
    parts = split_urls(url)
    return bool(parts) and all(scheme_of(part) in SCHEMES for part in parts)


def host_port(url: str, tls: bool = False) -> str:
    """`host:port` of one URL, with AMQP's default ports filled in."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a malformed port: name what was written rather than fail here
        return url.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
    if port is None:
        port = DEFAULT_TLS_PORT if tls or scheme_of(url) == "amqps" else DEFAULT_PORT
    return f"{host or 'localhost'}:{port}"


def describe(url: str, tls: bool = False) -> str:
    """One URL for logs and errors: password masked, then the host and port it means."""
    return f"{safe_url(url)} ({host_port(url, tls)})"
