"""Two ways to spend a rate: a token bucket per worker, or one budget in Redis for the cluster."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

# GCRA on Redis's own clock, so every worker agrees on time. KEYS[1]: the task's key;
# ARGV[1]: milliseconds between tasks. Returns 0 (run now) or milliseconds to wait.
CLUSTER_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat > now then return tat - now end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(interval * 2 + 1000))
return 0
"""


class Limiter(Protocol):
    def take(self, key: str, per_second: float) -> float:
        """0.0 to run now (the slot is spent), else seconds until it is worth asking again."""


class TokenBuckets:
    """Celery's semantics: one bucket per task name on this worker, capacity 1 (no bursts)."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]
        self._lock = threading.Lock()

    def take(self, key: str, per_second: float) -> float:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [1.0, now]
            tokens = min(1.0, bucket[0] + (now - bucket[1]) * per_second)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / per_second


class ClusterBudget:
    """One budget per task name shared by every worker through Redis."""

    def __init__(self, client: Any, prefix: str = "_kernel.rate.") -> None:
        self._client = client
        self._take = client.register_script(CLUSTER_TAKE)
        self._prefix = prefix

    def take(self, key: str, per_second: float) -> float:
        wait_ms = self._take(keys=[self._prefix + key], args=[1000.0 / per_second])
        return float(wait_ms) / 1000.0
