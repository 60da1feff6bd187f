"""Client-side measurements, each run in a fresh process so one system's client state (imports,
connection pools, result consumers) never helps or hinders the other's.

    python client.py enqueue   --system ours|celery --n N [--batch]
    python client.py roundtrip --system ours|celery --n N [--warmup W]
    python client.py prefill   --system ours --n N --run RUN
    python client.py features  --system ours --n 0

The app is configured from the BENCH_* environment (see benchenv); one JSON object is printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from typing import Any

MODULES = {"ours": "kernel_app", "celery": "celery_app"}
FIRST_RESULT_TIMEOUT = 120.0  # the worker may still be starting when the first call is sent
RESULT_TIMEOUT = 30.0


def _tasks(system: str) -> tuple[Any, Any, Any]:
    module = importlib.import_module(MODULES[system])
    return module.app, module.add, module.mark


def enqueue(system: str, n: int, batch: bool) -> dict[str, Any]:
    """Seconds to send N `add` one by one with delay(), or in one delay_many() call."""
    _, add, _ = _tasks(system)
    add.delay(0, 0)  # connect and declare before the clock starts
    start = time.perf_counter()
    if batch:
        add.delay_many([(i, i) for i in range(n)])
    else:
        for i in range(n):
            add.delay(i, i)
    return {"seconds": time.perf_counter() - start, "n": n}


def roundtrip(system: str, n: int, warmup: int) -> dict[str, Any]:
    """Milliseconds of each `add.delay(2, 2).get()`, sent one after the other."""
    _, add, _ = _tasks(system)
    add.delay(1, 1).get(timeout=FIRST_RESULT_TIMEOUT)  # the worker is up and warm
    for _ in range(warmup):
        add.delay(2, 2).get(timeout=RESULT_TIMEOUT)
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        value = add.delay(2, 2).get(timeout=RESULT_TIMEOUT)
        latencies.append((time.perf_counter() - start) * 1000.0)
        if value != 4:
            raise RuntimeError(f"add(2, 2) returned {value!r}")
    return {"ms": latencies}


def prefill(system: str, n: int, run: str) -> dict[str, Any]:
    """Fill the queue with our client: first marker, N adds, last marker (embedded broker)."""
    app, add, _ = _tasks(system)
    start = time.perf_counter()
    app.send_task("bench.mark", [run, "first", ""])
    if hasattr(add, "delay_many"):
        add.delay_many([(i, i) for i in range(n)])
    else:
        for i in range(n):
            add.delay(i, i)
    app.send_task("bench.mark", [run, "last", ""])
    return {"seconds": time.perf_counter() - start, "n": n}


def features(system: str) -> dict[str, Any]:
    """What this system's client offers beyond delay()."""
    _, add, _ = _tasks(system)
    return {"delay_many": hasattr(add, "delay_many")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("enqueue", "roundtrip", "prefill", "features"))
    parser.add_argument("--system", choices=sorted(MODULES), required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--run", default="")
    args = parser.parse_args()
    if args.action == "enqueue":
        out = enqueue(args.system, args.n, args.batch)
    elif args.action == "roundtrip":
        out = roundtrip(args.system, args.n, args.warmup)
    elif args.action == "prefill":
        out = prefill(args.system, args.n, args.run)
    else:
        out = features(args.system)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
