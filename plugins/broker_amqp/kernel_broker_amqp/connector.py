"""Opening a connection to the first reachable broker of a failover list, once, without retrying."""

from __future__ import annotations

import re
from typing import Any

from amqp.exceptions import AMQPError, ConsumerCancelled
from kombu.connection import Connection
from kombu.exceptions import KombuError

from kernel.plugin import BrokerUnreachable

from .options import AmqpOptions
from .urls import describe, scheme_of

# What a failed attempt can raise: socket errors (refused, timed out), AMQP errors (access
# refused, vhost not allowed) and kombu's wrappers of them.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (OSError, AMQPError, KombuError)


def close_quietly(conn: Any, timeout: float) -> None:
    """Close a kombu connection politely, within `timeout`, or else drop it without a word."""
    try:
        sock = conn.connection.sock if conn.connected else None
        if sock is not None:
            # py-amqp waits for close-ok with the socket's own timeout: give it one
            sock.settimeout(timeout)
        conn.release()
    except Exception:  # closing must not fail: the connection may be half gone already
        try:
            conn.collect()
        except Exception:
            pass


def reason(exc: BaseException) -> str:
    """An exception as one short line (errors from sockets and servers may span lines)."""
    if isinstance(exc, ConsumerCancelled):
        return "the server cancelled the consumer (was a queue deleted?)"
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text or type(exc).__name__


class Connector:
    """Knows the failover list and how to connect; every caller decides itself about retrying."""

    def __init__(self, urls: list[str], options: AmqpOptions) -> None:
        self.urls = urls
        self.options = options
        self.tls = bool(options.ssl)
        self.name = "broker " + " or ".join(self.where(url) for url in urls)
        """The broker (or the failover list) for messages: passwords masked, hosts named."""

    def where(self, url: str) -> str:
        return describe(url, self.tls)

    def connection(self, url: str, heartbeat: float) -> Any:
        """A kombu Connection to one URL of the list, not yet connected."""
        tls: Any = self.options.ssl or scheme_of(url) == "amqps"
        return Connection(
            url,
            heartbeat=heartbeat,
            connect_timeout=self.options.connect_timeout,
            transport_options=self.options.kombu_transport_options(),
            ssl=tls,
        )

    def open(self, heartbeat: float = 0.0) -> tuple[Any, str]:
        """Connect to the first URL that answers, in the order given: (connection, url).

        Each URL gets one attempt bounded by the connect timeout; BrokerUnreachable, naming
        each URL and host:port tried and why it failed, if none answers."""
        failures = []
        for url in self.urls:
            conn = self.connection(url, heartbeat)
            try:
                # max_retries=0: one attempt; kombu's own retry loop would sleep in between
                conn.ensure_connection(max_retries=0)
            except CONNECT_ERRORS as exc:
                try:
                    conn.collect()
                except Exception:  # nothing of a failed connection is worth an error
                    pass
                failures.append(f"{self.where(url)}: {reason(exc)}")
                continue
            return conn, url
        if len(failures) == 1:
            raise BrokerUnreachable(f"cannot reach broker {failures[0]}")
        raise BrokerUnreachable("cannot reach any broker: " + "; ".join(failures))
