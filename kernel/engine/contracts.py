"""What the engine's roles promise (the pool, the consumer), the keys steps share them under, and
the base of every pool's step."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from ..bootsteps import ServiceKey, Step
from ..settings import at_least, optional, setting
from ..wire.transport import Broker, ResultBackend

if TYPE_CHECKING:
    from ..lifecycle import Node

log = logging.getLogger("kernel.pool")


class Pool(Protocol):
    """Runs functions on a bounded number of slots (processes, threads or green threads).

    `BasePool` gives the optional members their defaults."""

    @property
    def concurrency(self) -> int:
        """How many functions may run at once."""

    @property
    def ahead(self) -> int | None:
        """How many jobs beyond its slots the pool wants handed to it now (a pool that sends
        work to its slots in batches wants more). None: one job per slot beyond the running
        ones, which is what a pool that does not batch wants."""

    def apply(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        callback: Callable[[Any], None],
        error_callback: Callable[[BaseException], None],
        timeouts: tuple[float | None, float | None] = (None, None),
    ) -> None:
        """Run `fn(arg)` on a slot; then `callback(result)`, or `error_callback(exc)` if the slot
        was lost (a dead child: WorkerLostError; the hard limit: TimeLimitExceeded) or `fn`
        raised. Callbacks may run in any thread.

        `timeouts` is (soft, hard) in seconds, None for no limit. A pool that can, raises
        SoftTimeLimitExceeded inside `fn` at the soft limit, and at the hard limit stops `fn`
        and frees the slot; a pool honouring limits says so through `kernel_task_options`."""

    def grow(self, n: int = 1) -> None:
        """Add `n` slots (autoscale, `pool_grow`)."""

    def shrink(self, n: int = 1) -> None:
        """Remove `n` slots once they are idle; running work finishes."""

    def stop(self) -> None:
        """Let everything submitted finish (callbacks called), then release the slots."""

    def terminate(self) -> None:
        """Release the slots now, abandoning running work. Must not raise."""

    def info(self) -> dict[str, Any]:
        """Figures for `stats`: implementation, max-concurrency, processes/threads."""


class BasePool:
    """Defaults for a pool's optional members: no batching, a fixed size."""

    ahead: int | None = None

    def grow(self, n: int = 1) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot grow")

    def shrink(self, n: int = 1) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot shrink")


class ConsumerState(Protocol):
    """What the consumer step shares with policy plugins (autoscale, remote control)."""

    @property
    def active(self) -> int:
        """Tasks handed to the pool that have not reported back yet."""

    @property
    def processed(self) -> int:
        """Tasks this worker finished (stored and settled) since it started."""

    @property
    def waiting(self) -> int:
        """Received tasks that are due and wait for a pool slot."""

    @property
    def prefetch_slots(self) -> int | None:
        """Slots the prefetch window is sized for; None means the pool's current size."""

    @prefetch_slots.setter
    def prefetch_slots(self, value: int | None) -> None: ...

    def set_time_limit(self, task_name: str, soft: float | None, hard: float | None) -> None:
        """Change a task's time limits while the worker runs (applies to tasks started later)."""


def check_members(obj: object, role: str, members: tuple[str, ...], base: str) -> None:
    """Refuse, once at start-up, a role object that lacks what its contract declares (the
    worker reads those members without probing, on every task)."""
    missing = [name for name in members if not hasattr(obj, name)]
    if missing:
        raise TypeError(
            f"the {role} {type(obj).__name__} lacks {', '.join(missing)}, which the "
            f"{role} contract declares; subclass kernel.plugin.{base} for their defaults"
        )


POOL_MEMBERS = ("concurrency", "ahead", "apply", "grow", "shrink", "stop", "terminate", "info")
BROKER_MEMBERS = ("wakes_up", "location", "consumers", "publish", "consume", "poll", "wakeup")
BACKEND_MEMBERS = ("stores_in_pool", "reply_queue", "notify_channel", "encode", "store")

BROKER: ServiceKey[Broker] = ServiceKey("broker")
CONSUMER: ServiceKey[ConsumerState] = ServiceKey("consumer")
BACKEND: ServiceKey[ResultBackend] = ServiceKey("backend")
POOL: ServiceKey[Pool] = ServiceKey("pool")


class ChildHooks:
    """The hooks a pool calls where its tasks run, so every child policy works with every pool:
    `started()` once in each new process (or thread) that runs tasks (`kernel_child_init`),
    `recycle(tasks, rss_kib)` after each task (`kernel_recycle_child`)."""

    def __init__(self, worker: Node) -> None:
        self.worker = worker
        pm = worker.pm
        # asked after every task: only if some plugin has an opinion
        self.recycles = pm.implements("kernel_recycle_child")

    def started(self) -> None:
        self.worker.pm.hook.kernel_child_init(worker=self.worker)

    def recycle(self, tasks: int, rss_kib: int) -> bool:
        """Should the child that just ran its `tasks`-th task be replaced? False when no plugin
        says so (then the pool need not even count)."""
        if not self.recycles:
            return False
        hook = self.worker.pm.hook.kernel_recycle_child
        return bool(hook(worker=self.worker, tasks=tasks, rss_kib=rss_kib))


@attrs.define
class PoolStep(Step):
    """The step of a pool plugin: subclass it, name it ``pool.<name>`` and give `create`.

    It reads `worker_concurrency` (the pool's default when unset), shares the pool as POOL,
    calls `kernel_child_init` once here for a pool whose tasks run in this process, and stops
    or terminates the pool with the worker. A pool whose tasks run elsewhere (child processes)
    sets `in_process = False` and calls `children.started()` in each child itself; a pool that
    can replace a slot calls `children.recycle(...)` after each task (`recycles = True`); one
    that cannot is warned about at start-up when a plugin implements `kernel_recycle_child`."""

    provides: ClassVar[tuple[str, ...]] = ("pool",)
    in_process: ClassVar[bool] = True
    recycles: ClassVar[bool] = False
    slots: ClassVar[str] = "slots"  # what a slot is called in the banner ("threads", ...)

    worker_concurrency: int | None = setting(
        None, convert=optional(at_least(1)), help="pool slots (default: the pool's own)"
    )
    pool: Pool | None = attrs.field(default=None, init=False)

    def default_concurrency(self) -> int:
        """Slots when `worker_concurrency` is unset: the number of CPUs, unless overridden."""
        return os.cpu_count() or 1

    @property
    def concurrency(self) -> int:
        return self.worker_concurrency or self.default_concurrency()

    def create(self, worker: Node, concurrency: int, children: ChildHooks) -> Pool:
        """Build and start the pool (its slots ready to take work)."""
        raise NotImplementedError

    def start(self, worker: Node) -> None:
        children = ChildHooks(worker)
        if children.recycles and not self.recycles:
            self._warn_never_recycled(worker)
        self.pool = self.create(worker, self.concurrency, children)
        worker.services[POOL] = self.pool
        if self.in_process:
            children.started()

    def _warn_never_recycled(self, worker: Node) -> None:
        # a policy asked for (--plugin maxtasks) that this pool cannot honour must not be
        # silently void: say which pool ignores which plugins
        impls = worker.pm.hook.kernel_recycle_child.get_hookimpls()
        plugins = ", ".join(sorted({impl.plugin_name for impl in impls}))
        log.warning(
            "%s cannot replace its %s, so it never asks kernel_recycle_child: the "
            "recycling policy of %s does nothing on this worker",
            self.name,
            self.slots,
            plugins,
        )

    def stop(self, worker: Node) -> None:
        if self.pool is not None:
            self.pool.stop()

    def terminate(self, worker: Node) -> None:
        if self.pool is not None:
            self.pool.terminate()

    def describe(self) -> str:
        return f"{self.concurrency} {self.slots}"
