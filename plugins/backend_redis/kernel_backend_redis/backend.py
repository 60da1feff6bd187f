"""Results in Redis as Celery keeps them: `celery-task-meta-<id>` strings, announced by PUBLISH."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

from kernel.plugin import (
    READY_STATES,
    BackendError,
    BaseBackend,
    ConfigError,
    Stored,
    retry_call,
    safe_url,
)

KEY_PREFIX = "celery-task-meta-"
ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)

# Store a batch of metas in one call. KEYS: the meta keys. ARGV: ttl (0: none); the number of
# notice channels; the channels; one encoded meta per key; one flag string per key: "S"
# (SUCCESS) or "O" (other), then "P" to PUBLISH the meta on the key's own channel as Celery
# does or "-" not to, then the number of its notice channel (0: none).
# A stored SUCCESS is never replaced: the first success wins, as in Celery, and a late FAILURE
# or STARTED from a redelivered task does not overwrite it. Each notice channel then gets one
# PUBLISH carrying the metas written for it, one per line, so its client needs no GET.
STORE = """
local ttl = tonumber(ARGV[1])
local channels = tonumber(ARGV[2])
local n = #KEYS
local function set(key, value)
  if ttl > 0 then
    return redis.call('SET', key, value, 'EX', ttl, 'GET')
  end
  return redis.call('SET', key, value, 'GET')
end
local function success(value)
  return value and string.find(value, '"status": "SUCCESS"', 1, true)
end
local notices = {}
for i = 1, n do
  local key, data, flags = KEYS[i], ARGV[2 + channels + i], ARGV[2 + channels + n + i]
  local written = true
  if string.sub(flags, 1, 1) == 'S' then
    local old = set(key, data)
    if success(old) and old ~= data then
      redis.call('SET', key, old, 'KEEPTTL')
      written = false
    end
  elseif success(redis.call('GET', key)) then
    written = false
  else
    set(key, data)
  end
  if written then
    if string.sub(flags, 2, 2) == 'P' then
      redis.call('PUBLISH', key, data)
    end
    local channel = tonumber(string.sub(flags, 3))
    if channel > 0 then
      local lines = notices[channel] or {}
      lines[#lines + 1] = data
      notices[channel] = lines
    end
  end
end
for channel, lines in pairs(notices) do
  redis.call('PUBLISH', ARGV[2 + channel], table.concat(lines, '\\n'))
end
return 0
"""
NOTIFY_PREFIX = "kernel-result-notices-"
HEARD_MAX = 10_000  # metas heard of but not yet asked for, kept per client thread


class RedisBackend(BaseBackend):
    """`get()` waits on the key's pub/sub channel (as Celery clients do), checking the key too."""

    # its store connections are shared safely by threads, and a forked child makes its own
    stores_in_pool = True

    def __init__(self, app: Any, url: str) -> None:
        super().__init__(app, url)
        options = dict(app.conf.result_backend_transport_options or {})
        prefix = str(options.get("global_keyprefix") or "")
        if prefix and prefix[-1] not in ":_-.":
            prefix += "_"  # as Celery joins its prefix
        self.prefix = prefix + KEY_PREFIX
        self.policy = dict(
            options.get("retry_policy")
            or {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}
        )
        self._client = self._make_client(url, options, app.conf.broker_connection_timeout)
        self._store = self._client.register_script(STORE)
        self._local = threading.local()
        self._store_lock = threading.Lock()
        self._store_pid = os.getpid()
        self._idle: list[Any] = []  # store connections not in use

    def _make_client(self, url: str, options: dict[str, Any], timeout: float) -> redis.Redis:
        first = url.split(";", 1)[0].strip()
        kwargs = {
            "socket_connect_timeout": timeout,
            "socket_timeout": options.get("socket_timeout", 30.0),
        }
        if first.startswith("sentinel://"):
            master = options.get("master_name")
            if not master:
                raise ConfigError(
                    "result_backend_transport_options", "sentinel:// result URLs need master_name"
                )
            hosts = [
                (urlsplit(p).hostname or "localhost", urlsplit(p).port or 26379)
                for p in url.split(";")
                if p.strip()
            ]
            client: redis.Redis = Sentinel(hosts, **kwargs).master_for(str(master))
            return client
        split = urlsplit(first)
        self.where = f"{safe_url(first)} ({split.hostname or 'localhost'}:{split.port or 6379})"
        try:
            return redis.Redis.from_url(first, **kwargs)
        except ValueError as exc:
            raise ConfigError("result_backend", f"{safe_url(first)!r}: {exc}") from None

    where = "redis"

    def key(self, task_id: str) -> str:
        return self.prefix + task_id

    def _call(self, fn: Any, what: str) -> Any:
        try:
            return retry_call(fn, ERRORS, self.policy, f"{what} at {self.where}")
        except ERRORS as exc:
            raise BackendError(f"result backend {self.where} unreachable: {exc}") from None

    def notify_channel(self, oid: str) -> str:
        """The channel a client (by its oid) waits on: sent with its tasks (NOTIFY_HEADER), so
        our workers announce a batch of its results with one PUBLISH."""
        return f"{self.prefix}{NOTIFY_PREFIX}{oid}"

    def store(self, items: Sequence[Stored]) -> None:
        if not items:
            return
        ttl = int(self.expires) if self.expires else 0
        keys, data, flags = [], [], []
        channels: dict[str, int] = {}
        for item in items:
            keys.append(self.key(item.task_id))
            data.append(item.data)
            # a client that named a channel hears of its results once per batch; others (Celery
            # clients) are told on each result's own channel, as Celery tells them
            channel = channels.setdefault(item.notify, len(channels) + 1) if item.notify else 0
            kind = "S" if item.state == "SUCCESS" else "O"
            flags.append(f"{kind}{'-' if item.notify else 'P'}{channel}")
        args = [ttl, len(channels), *channels, *data, *flags]
        self._call(lambda: self._run_store(keys, args), "storing results")

    def _run_store(self, keys: list[str], args: list[Any]) -> None:
        """The store script on a connection of our own, below redis-py's client layer (which
        costs about a third of a round trip here); loaded again if the server lost it."""
        conn = self._checkout()
        try:
            conn.send_command("EVALSHA", self._store.sha, len(keys), *keys, *args)
            conn.read_response()
        except redis.exceptions.NoScriptError:
            self._checkin(conn)
            self._store(keys=keys, args=args)  # loads it and runs it
        except BaseException:
            conn.disconnect()  # in an unknown state: not used again
            raise
        else:
            self._checkin(conn)

    def _checkout(self) -> Any:
        """An idle store connection, or a new one; a forked pool child starts its own."""
        if self._store_pid != os.getpid():
            # a forked child: the parent's connections are not ours to use, and its lock may
            # have been held by one of its threads at the fork, never to be released here
            self._store_lock, self._idle = threading.Lock(), []
            self._store_pid = os.getpid()
        with self._store_lock:
            if self._idle:
                return self._idle.pop()
        pool = self._client.connection_pool
        return pool.connection_class(**pool.connection_kwargs)

    def _checkin(self, conn: Any) -> None:
        with self._store_lock:
            self._idle.append(conn)

    def get(self, task_id: str) -> dict[str, Any] | None:
        raw = self._call(lambda: self._client.get(self.key(task_id)), "reading a result")
        return self.decode(raw) if raw is not None else None

    def forget(self, task_id: str) -> None:
        self._call(lambda: self._client.delete(self.key(task_id)), "forgetting a result")

    def _listener(self) -> Any:
        """This thread's pub/sub connection, subscribed to its client's notice channel."""
        listener = getattr(self._local, "pubsub", None)
        if listener is None:
            listener = self._client.pubsub(ignore_subscribe_messages=True)
            listener.subscribe(self.notify_channel(self.app.oid))
            self._local.pubsub = listener
        return listener

    def _heard(self) -> dict[str, dict[str, Any]]:
        """Ready metas this thread heard of in notices and has not been asked for yet."""
        heard = getattr(self._local, "heard", None)
        if heard is None:
            heard = self._local.heard = {}
        return heard

    def _listen(self, listener: Any, timeout: float) -> None:
        """Take the notices that arrive within `timeout` (or are already here)."""
        heard = self._heard()
        message = listener.get_message(timeout=timeout)
        while message is not None:
            if message.get("type") == "message":
                for line in message["data"].split(b"\n"):
                    meta = self.decode(line)
                    if meta.get("status") in READY_STATES:
                        heard[str(meta.get("task_id"))] = meta
                if len(heard) > HEARD_MAX:  # results nobody asks for: keep the newest
                    for stale in list(heard)[: len(heard) - HEARD_MAX]:
                        del heard[stale]
            message = listener.get_message(timeout=0)

    def wait_for(
        self, task_id: str, *, deadline: float | None, interval: float
    ) -> dict[str, Any] | None:
        """Wait for a notice carrying the task's meta (our workers send one per batch),
        reading the key after waits that grow from 1 ms: results from workers that only
        publish on each result's own channel (Celery's) are found by that reading. A fast
        result from our worker is heard of first, and costs no read."""
        try:
            listener = self._listener()
            heard = self._heard()
            pause = 0.001
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                ends = time.monotonic() + (
                    pause if remaining is None else min(pause, max(remaining, 0))
                )
                self._listen(listener, 0)
                while task_id not in heard and time.monotonic() < ends:
                    self._listen(listener, max(ends - time.monotonic(), 0))
                if task_id in heard:
                    return heard.pop(task_id)
                meta = self.get(task_id)
                if meta is not None and meta.get("status") in READY_STATES:
                    heard.pop(task_id, None)
                    return meta
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                pause = min(pause * 2, interval, 0.1)
        except ERRORS as exc:
            raise BackendError(f"result backend {self.where} unreachable: {exc}") from None

    def close(self) -> None:
        listener = getattr(self._local, "pubsub", None)
        if listener is not None:
            try:
                listener.close()
            except Exception:
                pass
            self._local.pubsub = None
        with self._store_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()
        self._client.close()
