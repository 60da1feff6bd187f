"""Tasks for the patched-worker tests: `kernel start -A green_tasks -P gevent` imports this.

The test that starts the worker names the broker, the result backend (a Redis URL, also
used for counters) and the queue in the environment.
"""

from __future__ import annotations

import os
import time

import redis

from kernel import App
from kernel.plugin import SoftTimeLimitExceeded

app = App(
    "green_tasks",
    broker=os.environ["GREEN_BROKER"],
    backend=os.environ["GREEN_BACKEND"],
    task_default_queue=os.environ["GREEN_QUEUE"],
)
counters = redis.Redis.from_url(os.environ["GREEN_BACKEND"])


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def patched() -> bool:
    from gevent import monkey

    return bool(monkey.is_module_patched("socket") and monkey.is_module_patched("time"))


@app.task(soft_time_limit=0.5)
def patient() -> str:
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        return "caught the soft limit"
    return "slept"


@app.task(time_limit=0.5)
def endless(key: str) -> None:
    while True:  # counts its laps, so the test can tell that the kill really stopped it
        counters.incr(key)
        time.sleep(0.05)
