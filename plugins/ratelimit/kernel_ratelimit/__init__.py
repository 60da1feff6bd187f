"""Rate limits as a plugin: `--plugin ratelimit`.

A limited task waits in the worker, unacknowledged and without a pool slot, while other task
types run (the core's `kernel_task_defer` hook). Rates come from the task's `rate_limit`, else
`task_default_rate_limit`, and can be changed while the worker runs (`set_rate_limit`).
`rate_limit_scope="worker"` gives each worker its own budget (Celery's semantics);
`"cluster"` shares one budget across every worker through Redis.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from kernel import ConfigError, Step, Worker, hookimpl, setting
from kernel.plugin import Request, ServiceKey, Task, one_of, optional, parse_rate, to_bool, to_str

from .limiters import ClusterBudget, Limiter, TokenBuckets

log = logging.getLogger("kernel.ratelimit")


class RateLimits:
    """The worker's rates and the limiter spending them (`worker.services[RATE_LIMITS]`)."""

    def __init__(self, app: Any, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter
        self._overrides: dict[str, Any] = {}
        self._parsed: dict[Any, float | None] = {}

    def rate_of(self, task: Task) -> float | None:
        if task.name in self._overrides:
            raw = self._overrides[task.name]
        else:
            raw = (
                task.rate_limit
                if task.rate_limit is not None
                else self.app.conf.task_default_rate_limit
            )
        if raw not in self._parsed:
            self._parsed[raw] = parse_rate(raw)
        return self._parsed[raw]

    def set_rate_limit(self, task_name: str, rate: Any) -> None:
        """Change a task's rate while the worker runs (None or "" removes the limit)."""
        if task_name not in self.app.tasks:
            raise KeyError(f"unknown task {task_name!r}")
        parse_rate(rate)  # refuse a malformed rate, quoting it
        self._overrides[task_name] = rate
        log.info("rate limit of %s set to %s", task_name, rate or "none")

    def delay_for(self, task: Task) -> float | None:
        rate = self.rate_of(task)
        if rate is None:
            return None
        wait = self.limiter.take(task.name, rate)
        return wait or None


RATE_LIMITS: ServiceKey[RateLimits] = ServiceKey("ratelimit")


@attrs.define
class RateLimitStep(Step):
    name = "ratelimit"
    before = ("consumer",)  # the limiter exists before the first task is asked about

    rate_limit_scope: str = setting(
        "worker",
        convert=one_of("worker", "cluster"),
        help="worker: a budget per worker; cluster: one in Redis",
    )
    rate_limit_redis_url: str | None = setting(
        None, convert=optional(to_str), help="Redis for cluster-wide rates (default: the broker)"
    )
    worker_disable_rate_limits: bool = setting(False, convert=to_bool, help="ignore rate limits")

    def start(self, worker: Worker) -> None:
        if self.worker_disable_rate_limits:
            log.info("rate limits disabled (worker_disable_rate_limits)")
            return
        limiter: Limiter = TokenBuckets()
        if self.rate_limit_scope == "cluster":
            limiter = ClusterBudget(self._redis(worker))
        worker.services[RATE_LIMITS] = RateLimits(worker.app, limiter)

    def _redis(self, worker: Worker) -> Any:
        try:
            import redis
        except ImportError:
            raise ConfigError(
                "rate_limit_scope",
                "cluster-wide rates need redis-py: pip install 'taskkernel-ratelimit[cluster]'",
            ) from None
        url = self.rate_limit_redis_url or worker.app.broker_url
        if not url.startswith(("redis://", "rediss://")):
            raise ConfigError(
                "rate_limit_redis_url",
                "cluster-wide rates keep their budget in "
                f"Redis; give a redis:// URL (the broker is {url.split('://')[0]}://)",
            )
        return redis.Redis.from_url(url.split(";")[0])

    def describe(self) -> str:
        if self.worker_disable_rate_limits:
            return "disabled"
        return (
            "one budget per worker" if self.rate_limit_scope == "worker" else "cluster-wide (Redis)"
        )


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [RateLimitStep]


@hookimpl
def kernel_task_options() -> list[str]:
    return ["rate_limit"]


# asked last: taking a token admits the task, so no other policy may defer it afterwards
@hookimpl(trylast=True)
def kernel_task_defer(request: Request, task: Task, worker: Worker) -> float | None:
    limits = worker.services.get(RATE_LIMITS)
    return limits.delay_for(task) if limits is not None else None
