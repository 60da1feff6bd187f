"""Autoscaling: `--autoscale MAX,MIN` grows the pool toward MAX while tasks wait for a slot and
shrinks it back toward MIN once it has had nothing to grow for `worker_autoscale_keepalive`."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import attrs
import click

from kernel import Step, Worker, hookimpl, setting
from kernel.plugin import CONSUMER, POOL, ConsumerState, Pool, to_float

log = logging.getLogger("kernel.autoscale")


def to_bounds(value: Any) -> tuple[int, int] | None:
    """`MAX,MIN` (Celery's order), or just `MAX` (MIN then 0... as Celery: 1 at least)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    else:
        parts = [str(p) for p in value]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected MAX,MIN (two whole numbers), got {value!r}") from None
    if len(numbers) == 1:
        numbers.append(1)
    if len(numbers) != 2 or not 1 <= numbers[1] <= numbers[0]:
        raise ValueError(f"expected MAX,MIN with 1 <= MIN <= MAX, got {value!r}")
    return numbers[0], numbers[1]


class Autoscaler(threading.Thread):
    """Looks once a second at the tasks the worker holds and resizes the pool to fit."""

    def __init__(
        self,
        pool: Pool,
        consumer: ConsumerState,
        most: int,
        least: int,
        keepalive: float,
        interval: float,
    ) -> None:
        super().__init__(name="kernel-autoscale", daemon=True)
        self.pool, self.consumer = pool, consumer
        self.most, self.least = most, least
        self.keepalive, self.interval = keepalive, interval
        self._stop_event = threading.Event()
        self._last_growth = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.scale()
            except Exception:
                log.exception("autoscale failed; trying again")

    def scale(self) -> None:
        wanted = self.consumer.waiting + self.consumer.active
        size = self.pool.concurrency
        if wanted > size and size < self.most:
            target = min(wanted, self.most)
            self.pool.grow(target - size)
            self._last_growth = time.monotonic()
            log.info("autoscale: pool grows %d -> %d (%d tasks held)", size, target, wanted)
        elif (
            wanted < size
            and size > self.least
            and time.monotonic() - self._last_growth >= self.keepalive
        ):
            target = max(wanted, self.least)
            self.pool.shrink(size - target)
            log.info("autoscale: pool shrinks %d -> %d (%d tasks held)", size, target, wanted)

    def stop(self) -> None:
        self._stop_event.set()


@attrs.define
class AutoscaleStep(Step):
    name = "autoscale"
    requires = ("pool", "consumer")

    worker_autoscale: tuple[int, int] | None = setting(
        None, convert=to_bounds, help="MAX,MIN pool size"
    )
    worker_autoscale_keepalive: float = setting(
        30.0, convert=to_float, help="seconds without growth before the pool shrinks"
    )
    worker_autoscale_interval: float = setting(1.0, convert=to_float, help="seconds between looks")
    scaler: Autoscaler | None = attrs.field(default=None, init=False)

    def start(self, worker: Worker) -> None:
        if self.worker_autoscale is None:
            log.warning("plugin autoscale is enabled without --autoscale MAX,MIN; not scaling")
            return
        most, least = self.worker_autoscale
        pool, consumer = worker.services[POOL], worker.services[CONSUMER]
        consumer.prefetch_slots = most  # hold enough work to see what MAX slots would get
        size = pool.concurrency  # start at MIN: work that waits is what makes it grow
        if size > least:
            pool.shrink(size - least)
        elif size < least:
            pool.grow(least - size)
        self.scaler = Autoscaler(
            pool,
            consumer,
            most,
            least,
            self.worker_autoscale_keepalive,
            self.worker_autoscale_interval,
        )
        self.scaler.start()
        log.info("autoscale: between %d and %d slots (now %d)", least, most, pool.concurrency)

    def stop(self, worker: Worker) -> None:
        if self.scaler is not None:
            self.scaler.stop()

    def describe(self) -> str:
        if self.worker_autoscale is None:
            return "not scaling (no --autoscale)"
        most, least = self.worker_autoscale
        return f"{least} to {most} slots"


@hookimpl
def kernel_steps() -> list[type[Step]]:
    return [AutoscaleStep]


@hookimpl
def kernel_cli_options() -> list[click.Parameter]:
    return [
        click.Option(
            ["--autoscale", "worker_autoscale"],
            metavar="MAX,MIN",
            help="Grow the pool up to MAX slots while work waits; shrink to MIN.",
        )
    ]
