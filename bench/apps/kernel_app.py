"""The taskkernel side of the benchmark: `bench.add` and `bench.mark`, configured from the
environment (see benchenv)."""

from __future__ import annotations

from benchenv import BenchEnv, record_mark

from kernel import App

env = BenchEnv.from_environ()
app = App(
    "bench",
    broker=env.broker,
    backend=env.backend,
    task_ignore_result=env.ignore_result,
    task_default_queue=env.queue,
)


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="bench.mark")
def mark(run: str, tag: str, stats: str) -> None:
    record_mark(run, tag, stats)
