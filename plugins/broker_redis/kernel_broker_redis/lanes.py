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
        replies = self.replies(client, *commands)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def replies(self, client: redis.Redis, *commands: tuple[Any, ...]) -> list[Any]:
        """Like `call`, but an error reply is returned in its place instead of raised."""
        conn = self._connection(client)
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            self.drop()
            raise
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
