"""What the figures were measured on: machine, servers, library versions, our commit."""

# kombu ships without type annotations (nor explicit exports).
# mypy: disable-error-code="no-untyped-call, attr-defined"

from __future__ import annotations

import datetime
import importlib.metadata
import os
import pathlib
import platform
import subprocess
from typing import Any

import redis
from brokers import AMQP_URL, REDIS_HOST
from kombu import Connection

REPO = pathlib.Path(__file__).resolve().parents[2]
LIBRARIES = ("taskkernel", "celery", "kombu", "redis", "amqp", "billiard")


def cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def redis_version() -> str:
    try:
        return str(redis.Redis.from_url(f"redis://{REDIS_HOST}/0").info("server")["redis_version"])
    except redis.RedisError as exc:
        return f"unreachable ({exc})"


def rabbitmq_version() -> str:
    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.connect()
            version = conn.connection.server_properties.get("version", "?")
            return version.decode() if isinstance(version, bytes) else str(version)
    except Exception as exc:  # any connection failure: the report says so
        return f"unreachable ({exc})"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def our_commit() -> str:
    """HEAD, and "+ local changes" when the worker's code differs from it (it is measured)."""
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "kernel", "plugins")
    return f"{head} + local changes" if dirty else head


def describe() -> dict[str, Any]:
    mem_kib = int(pathlib.Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": redis_version(),
        "rabbitmq": rabbitmq_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "commit": our_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": os.getloadavg(),
    }


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _commits(info: dict[str, Any]) -> str:
    """Workers import the checkout afresh at each start: a change mid-run must show."""
    after = info.get("commit_after", info["commit"])
    if after == info["commit"]:
        return str(info["commit"])
    return f"{info['commit']} at the start, {after} at the end (the code changed during the run)"


def lines(info: dict[str, Any]) -> list[str]:
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    load = " -> ".join(
        "/".join(f"{x:.2f}" for x in info[k]) for k in ("load_before", "load_after") if k in info
    )
    return [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"Linux {info['kernel']}, Python {info['python']}",
        f"Servers: Redis {info['redis']}, RabbitMQ {info['rabbitmq']}",
        f"Libraries: {libs}; taskkernel at {_commits(info)}",
        f"Date: {info['date']}; load average (1/5/15 min) {load}",
    ]
