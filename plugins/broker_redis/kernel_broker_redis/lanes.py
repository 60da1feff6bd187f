"""A connection of its own per thread for the hot commands, used below redis-py's client layer."""

from __future__ import annotations

import threading
from typing import Any

import redis


class Lanes:
    """Per-thread connections made from a client's pool settings, not borrowed from the pool.

    redis-py's client layer (pool checkout, retries, instrumentation) costs about as much
    CPU per command as the round trip itself; the hot path (publishing, fetching, acking,
    waiting) sends packed commands straight down one connection per thread instead. Errors
    are the client's: a connection error drops that thread's connection and propagates, so
    the caller's own reconnect and fail-over policy applies. A lane made for an older client
    (before a fail-over) is replaced on next use."""

    def __init__(self) -> None:
        self._local = threading.local()

    def call(self, client: redis.Redis, *commands: tuple[Any, ...]) -> list[Any]:
        """Send `commands` in one write and return their replies in order; raise the first
        error reply once every reply has been read, so the connection stays in step."""
        conn = self._connection(client)
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[Any] = []
            first_error: redis.ResponseError | None = None
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
                    first_error = first_error or exc
        except BaseException:
            self.drop()
            raise
        if first_error is not None:
            raise first_error
        return replies

    def _connection(self, client: redis.Redis) -> Any:
        local = self._local
        if getattr(local, "client", None) is not client:
            self.drop()
            pool = client.connection_pool
            local.conn = pool.connection_class(**pool.connection_kwargs)
            local.client = client
        return local.conn

    def drop(self) -> None:
        """Close this thread's connection, if any (after an error, or at shutdown)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = self._local.client = None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:
                pass
