"""How long 1,000 tasks that each sleep 1 s take on the gevent and eventlet pools (-c 1000),
on Redis and on RabbitMQ, through real `kernel start` workers.

Usage: python bench/green_sleep.py [-n 1000] [--pools gevent,eventlet] [--brokers redis,amqp]

The workers it starts import this file as their app (`-A green_sleep`); the environment tells
them the broker and the queue. Results go to Redis db 14 either way.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kernel import App

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/14", 6379),
    "amqp": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}
BACKEND = "redis://127.0.0.1:6379/14"
HERE = Path(__file__).resolve().parent


def make_app(broker: str, queue: str) -> App:
    return App("green_sleep", broker=broker, backend=BACKEND, task_default_queue=queue)


if "GREEN_SLEEP_QUEUE" in os.environ:  # imported by a worker this script started
    app = make_app(os.environ["GREEN_SLEEP_BROKER"], os.environ["GREEN_SLEEP_QUEUE"])

    @app.task
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def start_worker(
    pool: str, broker: str, queue: str, slots: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GREEN_SLEEP_BROKER": broker,
        "GREEN_SLEEP_QUEUE": queue,
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernel",
                "start",
                "-A",
                "green_sleep",
                "-P",
                pool,
                "-c",
                str(slots),
                "-l",
                "info",
            ],
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while b" ready" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the {pool} worker did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def delete_amqp_queue(url: str, queue: str) -> None:
    from kombu.connection import Connection

    with Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


def run(pool: str, broker_name: str, tasks: int, workdir: Path) -> float:
    """Seconds from sending the first of `tasks` one-second naps to having every result."""
    broker, _ = BROKERS[broker_name]
    queue = f"bench-green-{pool}-{uuid.uuid4().hex[:8]}"
    proc = start_worker(pool, broker, queue, tasks, workdir / f"{pool}-{broker_name}.log")
    client = make_app(broker, queue)
    try:
        client.send_task("green_sleep.nap", (0,)).get(timeout=30)  # consuming, connections warm
        began = time.monotonic()
        results = [client.send_task("green_sleep.nap", (1,)) for _ in range(tasks)]
        for result in results:
            result.get(timeout=120)
        return time.monotonic() - began
    finally:
        client.close()
        stop_worker(proc)
        if broker_name == "amqp":
            delete_amqp_queue(broker, queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--tasks", type=int, default=1000, help="tasks, and pool slots")
    parser.add_argument("--pools", default="gevent,eventlet")
    parser.add_argument("--brokers", default="redis,amqp")
    args = parser.parse_args()
    if not reachable(6379):
        sys.exit("Redis is unreachable at 127.0.0.1:6379 (the result backend)")
    print(f"{args.tasks} tasks x time.sleep(1), -c {args.tasks}, results in Redis")
    with tempfile.TemporaryDirectory(prefix="green-sleep-") as tmp:
        for pool in args.pools.split(","):
            for broker_name in args.brokers.split(","):
                label = f"{pool:<9} {broker_name:<6}"
                if not reachable(BROKERS[broker_name][1]):
                    print(f"{label} skipped: {broker_name} is unreachable")
                    continue
                seconds = run(pool, broker_name, args.tasks, Path(tmp))
                print(f"{label} {seconds:6.2f} s  {args.tasks / seconds:7.1f} tasks/s", flush=True)


if __name__ == "__main__":
    main()
