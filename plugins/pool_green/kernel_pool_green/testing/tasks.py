"""Tasks for the patched-worker tests: `kernel start -A kernel_pool_green.testing.tasks -P NAME`.

The test that starts the worker names the broker, the result backend (a Redis URL, also used
for counters) and the queue in the environment.
"""

from __future__ import annotations

import os
import socket
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


@app.task(name="green_tasks.nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="green_tasks.patched")
def patched() -> list[str]:
    """Where the sleep and the sockets tasks use come from: the green library's, if patched."""
    return [time.sleep.__module__, socket.socket.__module__]


@app.task(name="green_tasks.patient", soft_time_limit=0.5)
def patient() -> str:
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        return "caught the soft limit"
    return "slept"


@app.task(name="green_tasks.endless", time_limit=0.5)
def endless(key: str) -> None:
    while True:  # counts its laps, so the test can tell that the kill really stopped it
        counters.incr(key)
        time.sleep(0.05)
