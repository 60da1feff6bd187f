"""The Celery side of the benchmark: the same `bench.add` and `bench.mark`, configured from the
same environment variables (see benchenv)."""

# celery ships without type annotations.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from benchenv import BenchEnv, record_mark
from celery import Celery

env = BenchEnv.from_environ()
app = Celery("bench", broker=env.broker, backend=env.backend)
app.conf.update(
    task_ignore_result=env.ignore_result,
    task_default_queue=env.queue,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="bench.mark")
def mark(run: str, tag: str, stats: str) -> None:
    record_mark(run, tag, stats)
