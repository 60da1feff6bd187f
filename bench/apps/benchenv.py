"""What the bench apps share: their configuration (from the environment) and the marker task.

The harness starts each worker with these variables set, so one module per system is enough
for every broker, backend and queue:

* ``BENCH_BROKER``: broker URL; ``BENCH_BACKEND``: result backend URL ("" for none);
* ``BENCH_QUEUE``: the queue the tasks are routed to and the worker consumes;
* ``BENCH_IGNORE_RESULT``: "1" to set ``task_ignore_result``;
* ``BENCH_MARKS``: Redis URL where markers are recorded;
* ``BENCH_HARNESS_PID``: the harness's pid, to find the worker's main process.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from procs import servers_cpu_seconds, snapshot, system_busy_seconds, tree_cpu_seconds, worker_root
from redis.typing import EncodableT, FieldT

SERVERS = ("redis-server", "beam.smp")  # Redis, and RabbitMQ's Erlang VM


@dataclass(frozen=True)
class BenchEnv:
    broker: str
    backend: str | None
    queue: str
    ignore_result: bool

    @classmethod
    def from_environ(cls) -> BenchEnv:
        return cls(
            broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/6"),
            backend=os.environ.get("BENCH_BACKEND") or None,
            queue=os.environ.get("BENCH_QUEUE", "bench"),
            ignore_result=os.environ.get("BENCH_IGNORE_RESULT", "1") == "1",
        )


def marks_key(run: str) -> str:
    return f"bench:marks:{run}"


def done_key(run: str) -> str:
    return f"bench:done:{run}"


@cache
def _marks_client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("BENCH_MARKS", "redis://127.0.0.1:6379/6"))


def total_calls(commandstats: dict[str, Any]) -> int:
    """Sum of `calls` over INFO commandstats (commands run by Lua scripts included)."""
    return sum(int(v["calls"]) for v in commandstats.values() if isinstance(v, dict))


def _clients(client: redis.Redis) -> str:
    """Who else talks to this Redis server, to flag runs whose command counts they pollute."""
    rows = [
        {"db": int(c.get("db", 0)), "idle": int(c.get("idle", 0)), "cmd": c.get("cmd", "")}
        for c in client.client_list()
    ]
    return json.dumps(rows)


def record_mark(run: str, tag: str, stats: str) -> None:
    """Record when this marker ran and, at that moment, the CPU time of the worker tree, of the
    broker servers and of the whole machine (so others' load during a run can be flagged).

    `stats` is "reset" (first marker on a Redis broker: CONFIG RESETSTAT), "read" (last
    marker: sum INFO commandstats) or "" (no broker statistics).
    """
    now = time.time()
    busy = system_busy_seconds()
    procs = snapshot()
    root = worker_root(int(os.environ.get("BENCH_HARNESS_PID", "0")), procs)
    client = _marks_client()
    fields: dict[FieldT, EncodableT] = {
        f"{tag}.time": repr(now),
        f"{tag}.cpu": repr(tree_cpu_seconds(root, procs)),
        f"{tag}.servers_cpu": repr(servers_cpu_seconds(procs, SERVERS)),
        f"{tag}.busy": repr(busy),
    }
    if stats == "reset":
        client.config_resetstat()
    elif stats == "read":
        fields[f"{tag}.calls"] = total_calls(client.info("commandstats"))
    if tag == "last":
        fields[f"{tag}.clients"] = _clients(client)
    client.hset(marks_key(run), mapping=fields)
    if tag == "last":
        client.rpush(done_key(run), 1)
