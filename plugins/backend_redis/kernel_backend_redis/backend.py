"""Results in Redis as Celery keeps them: `celery-task-meta-<id>` strings, announced by PUBLISH."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

from kernel.backend import BaseBackend
from kernel.errors import ConfigError
from kernel.exceptions import BackendError
from kernel.results import READY_STATES
from kernel.retry import retry_call
from kernel.roles import Stored

KEY_PREFIX = "celery-task-meta-"
ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
_SUCCESS = b'"status": "SUCCESS"'

# Write a state that is not SUCCESS unless SUCCESS is already stored (a late duplicate of a
# redelivered task must not turn a success into a failure). KEYS: the meta keys;
# ARGV: ttl (0: none), then one encoded meta per key.
GUARDED_SET = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not (current and string.find(current, '"status": "SUCCESS"', 1, true)) then
    if ttl > 0 then
      redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
    else
      redis.call('SET', key, ARGV[i + 1])
    end
    redis.call('PUBLISH', key, ARGV[i + 1])
  end
end
return 0
"""


def safe_url(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1****@", url)


class RedisBackend(BaseBackend):
    """`get()` waits on the key's pub/sub channel (as Celery clients do), checking the key too."""

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
        self._guarded = self._client.register_script(GUARDED_SET)
        self._local = threading.local()

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

    def store(self, items: Sequence[Stored]) -> None:
        if not items:
            return
        ttl = int(self.expires) if self.expires else 0
        successes = [item for item in items if item.state == "SUCCESS"]
        others = [item for item in items if item.state != "SUCCESS"]

        def write() -> None:
            replaced = []
            with self._client.pipeline(transaction=False) as pipe:
                for item in successes:
                    # SET ... GET: one command that also says what was there before
                    pipe.set(self.key(item.task_id), item.data, ex=ttl or None, get=True)
                    pipe.publish(self.key(item.task_id), item.data)
                if others:
                    self._guarded(
                        keys=[self.key(i.task_id) for i in others],
                        args=[ttl, *(i.data for i in others)],
                        client=pipe,
                    )
                results = pipe.execute()
            for index, item in enumerate(successes):
                previous = results[2 * index]
                if previous is not None and _SUCCESS in previous and previous != item.data:
                    replaced.append((item, previous))
            for item, previous in replaced:  # first success wins, as in Celery
                self._client.set(self.key(item.task_id), previous, keepttl=True)

        self._call(write, "storing results")

    def get(self, task_id: str) -> dict[str, Any] | None:
        raw = self._call(lambda: self._client.get(self.key(task_id)), "reading a result")
        return self.decode(raw) if raw is not None else None

    def forget(self, task_id: str) -> None:
        self._call(lambda: self._client.delete(self.key(task_id)), "forgetting a result")

    def wait_for(
        self, task_id: str, *, deadline: float | None, interval: float
    ) -> dict[str, Any] | None:
        """Subscribe, then read (so a result stored in between is not missed), then listen."""
        key = self.key(task_id)
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(key)
            while True:
                meta = self.get(task_id)
                if meta is not None and meta.get("status") in READY_STATES:
                    return meta
                wait = interval if deadline is None else min(interval, deadline - time.monotonic())
                if wait <= 0:
                    return None
                message = pubsub.get_message(timeout=wait)
                if message is not None and message.get("type") == "message":
                    meta = self.decode(message["data"])
                    if meta.get("status") in READY_STATES:
                        return meta
        except ERRORS as exc:
            raise BackendError(f"result backend {self.where} unreachable: {exc}") from None
        finally:
            try:
                pubsub.close()
            except Exception:
                pass

    def close(self) -> None:
        self._client.close()
