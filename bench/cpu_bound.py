"""A CPU-bound batch through a real worker: prefork -c 2 beside threads -c 2 (embedded broker).

Each task sums the squares below `--upto` in pure Python, so threads take turns on the GIL
while prefork children run on separate cores. Printed, not asserted.

Usage: python bench/cpu_bound.py [-n 40] [--upto 2000000] [-c 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from kernel import App, Worker


def sum_of_squares(n: int) -> int:
    return sum(i * i for i in range(n))


def run_batch(pool: str, concurrency: int, tasks: int, upto: int, expected: int) -> float:
    """Seconds from sending `tasks` tasks to having every (checked) result, on a fresh worker."""
    with tempfile.TemporaryDirectory() as tmp:
        app = App(
            "bench",
            broker=f"embedded:///{tmp}/broker.db",
            backend=f"embedded:///{tmp}/results.db",
        )

        # registered before the worker starts: prefork children inherit the registry
        task = app.task(name="bench.sum_of_squares")(sum_of_squares)

        worker = Worker(app=app, settings={"worker_pool": pool, "worker_concurrency": concurrency})
        worker.start()
        try:
            # one small round first, so neither pool is timed starting up
            for result in [task.delay(10) for _ in range(concurrency)]:
                result.get(timeout=60)
            began = time.perf_counter()
            results = [task.delay(upto) for _ in range(tasks)]
            assert [r.get(timeout=600) for r in results] == [expected] * tasks
            return time.perf_counter() - began
        finally:
            worker.stop()
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="tasks in the batch")
    parser.add_argument("--upto", type=int, default=2_000_000, help="each task sums i*i below this")
    parser.add_argument("-c", type=int, default=2, help="concurrency of both pools")
    args = parser.parse_args()

    began = time.perf_counter()
    expected = sum_of_squares(args.upto)
    one = time.perf_counter() - began
    print(
        f"{args.n} tasks, each summing squares below {args.upto:,} "
        f"(about {one:.2f}s alone), -c {args.c}"
    )
    timings = {
        pool: run_batch(pool, args.c, args.n, args.upto, expected)
        for pool in ("prefork", "threads")
    }
    for pool, seconds in timings.items():
        print(f"  {pool:8} -c {args.c}: {seconds:6.2f}s  {args.n / seconds:6.2f} tasks/s")
    print(f"  prefork is {timings['threads'] / timings['prefork']:.2f}x the threads pool")


if __name__ == "__main__":
    main()
