"""What calling a no-op task costs the worker, per task: plain, and with Celery's task hooks.

Times `trace()` (push the request, call the task, classify, pop) and `call_task()` alone for
a task class with nothing of its own, one that overrides `__call__` (the Flask pattern) and
one with a `before_start`, plus the round trip of a request through pickle (what a prefork
child is sent). Printed, not asserted; run it before and after a change to the hot path.

Usage: python bench/task_call.py [-n 200000]
"""

from __future__ import annotations

import argparse
import pickle
import timeit
from collections.abc import Callable
from typing import Any

from kernel import App, Task
from kernel.client.trace import call_task, trace
from kernel.wire.protocol import Request, decode_request, task_message


class PassThrough(Task):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs)


class Starting(Task):
    def before_start(self, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        pass


def best_ns(fn: Callable[[], object], number: int) -> float:
    """The fastest of several runs, per call: the figure least disturbed by other work."""
    return min(timeit.repeat(fn, number=number, repeat=9)) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="calls per timing")
    number = parser.parse_args().n
    app = App("bench", broker="memory://", backend="memory://bench", set_as_current=False)
    tasks = {
        "plain": app.task(name="plain")(lambda: None),
        "__call__ override": app.task(base=PassThrough, name="call")(lambda: None),
        "before_start": app.task(base=Starting, name="start")(lambda: None),
    }
    request = Request(id="id", name="plain")
    for label, task in tasks.items():
        alone = best_ns(lambda task=task: call_task(task, request), number)
        traced = best_ns(lambda task=task: trace(task, request, call_task), number)
        print(f"{label:18s}  call_task {alone:6.0f} ns   trace {traced:6.0f} ns")
    headers, properties, body = task_message(
        task_id="aaaaaaaa-0000-0000-0000-000000000001", name="plain", args=[2, 3], origin="o"
    )
    decoded = decode_request(headers, properties, {"routing_key": "celery"}, body)
    data = pickle.dumps(decoded, pickle.HIGHEST_PROTOCOL)
    sent = best_ns(lambda: pickle.dumps(decoded, pickle.HIGHEST_PROTOCOL), number // 10)
    rebuilt = best_ns(lambda: pickle.loads(data), number // 10)
    print(f"request pickle      {sent:6.0f} ns   unpickle {rebuilt:6.0f} ns   {len(data)} bytes")


if __name__ == "__main__":
    main()
