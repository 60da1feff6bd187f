"""Tasks: functions registered with an app, sent as messages, run by workers or in-process."""

from __future__ import annotations

import logging
import random
import threading
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from ..wire.exceptions import Ignore, MaxRetriesExceededError, Retry
from ..wire.meta import RETRY
from ..wire.protocol import Request, utcnow
from .arguments import ARITIES, signature_of
from .canvas import Signature
from .progress import store_state
from .replacing import replacement, with_links
from .trace import apply_eagerly

if TYPE_CHECKING:
    from .app import App
    from .results import AsyncResult, EagerResult

log = logging.getLogger("kernel.worker")

# task attribute -> the app setting used when the task leaves it as None
_SETTING_FOR = {
    "acks_late": "task_acks_late",
    "acks_on_failure_or_timeout": "task_acks_on_failure_or_timeout",
    "reject_on_worker_lost": "task_reject_on_worker_lost",
    "ignore_result": "task_ignore_result",
    "store_errors_even_if_ignored": "task_store_errors_even_if_ignored",
    "track_started": "task_track_started",
    "serializer": "task_serializer",
    "time_limit": "task_time_limit",
    "soft_time_limit": "task_soft_time_limit",
    "rate_limit": "task_default_rate_limit",
}


class Task:
    """A registered task. `@app.task` makes a subclass per function, as Celery does.

    Class attributes are the task's options; None means "use the app's setting".
    """

    name: ClassVar[str] = ""
    app: ClassVar[App]
    bind: ClassVar[bool] = False
    max_retries: ClassVar[int | None] = 3
    default_retry_delay: ClassVar[float] = 180
    autoretry_for: ClassVar[tuple[type[BaseException], ...]] = ()
    dont_autoretry_for: ClassVar[tuple[type[BaseException], ...]] = ()
    retry_kwargs: ClassVar[Mapping[str, Any]] = {}
    retry_backoff: ClassVar[bool | float] = False
    retry_backoff_max: ClassVar[float] = 600
    retry_jitter: ClassVar[bool] = True
    acks_late: ClassVar[bool | None] = None
    acks_on_failure_or_timeout: ClassVar[bool | None] = None
    reject_on_worker_lost: ClassVar[bool | None] = None
    ignore_result: ClassVar[bool | None] = None
    store_errors_even_if_ignored: ClassVar[bool | None] = None
    track_started: ClassVar[bool | None] = None
    queue: ClassVar[str | None] = None
    priority: ClassVar[int | None] = None
    serializer: ClassVar[str | None] = None
    time_limit: ClassVar[float | None] = None
    soft_time_limit: ClassVar[float | None] = None
    rate_limit: ClassVar[str | None] = None
    expires: ClassVar[float | datetime | None] = None
    typing: ClassVar[bool] = True

    # the options `@app.task(...)` accepts
    OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {
            "name",
            "bind",
            "max_retries",
            "default_retry_delay",
            "autoretry_for",
            "dont_autoretry_for",
            "retry_kwargs",
            "retry_backoff",
            "retry_backoff_max",
            "retry_jitter",
            "acks_late",
            "acks_on_failure_or_timeout",
            "reject_on_worker_lost",
            "ignore_result",
            "store_errors_even_if_ignored",
            "track_started",
            "queue",
            "priority",
            "serializer",
            "time_limit",
            "soft_time_limit",
            "rate_limit",
            "expires",
            "typing",
        }
    )

    # Worked out once per class, so that a task pays nothing for what it does not override:
    # whether the worker calls run() itself (neither __call__ nor before_start overridden),
    # and whether it has handlers of its own to call after a run (as Celery's worker decides)
    calls_run: ClassVar[bool] = True
    has_on_success: ClassVar[bool] = False
    has_after_return: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.calls_run = cls.__call__ is Task.__call__ and cls.before_start is Task.before_start
        cls.has_on_success = cls.on_success is not Task.on_success
        cls.has_after_return = cls.after_return is not Task.after_return

    def __init__(self) -> None:
        self._stack = threading.local()

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    # -- running -------------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"task {self.name!r} has no run()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here. Called by the worker (through a subclass's override) to run the
        request it pushed; called by anyone else, a direct call with a request of its own."""
        local = self._stack
        if getattr(local, "entered", False):
            local.entered = False  # once: the task calling itself inside run() is a direct call
            return self.run(*args, **kwargs)
        self.push_request(Request(args=list(args), kwargs=kwargs, called_directly=True))
        try:
            return self.run(*args, **kwargs)
        finally:
            self.pop_request()

    def call_as_worker(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call the task through its own `__call__` for the request already pushed (the
        worker's, or an eager one): an override runs around run(), and `self.request` inside
        both stays that request."""
        local = self._stack
        local.entered = True
        try:
            return self(*args, **kwargs)
        finally:
            local.entered = False  # an override that never reached Task.__call__

    def push_request(self, request: Request) -> None:
        stack = getattr(self._stack, "items", None)
        if stack is None:
            stack = self._stack.items = []
        stack.append(request)

    def pop_request(self) -> None:
        self._stack.items.pop()

    @property
    def request(self) -> Request:
        """The request being run by this thread; an empty one when the task is called directly."""
        stack = getattr(self._stack, "items", None)
        return stack[-1] if stack else Request(called_directly=True)

    def option(self, attr: str) -> Any:
        """A task option, falling back to the app setting when the task leaves it as None."""
        value = getattr(self, attr)
        return (
            self.app.conf[_SETTING_FOR[attr]] if value is None and attr in _SETTING_FOR else value
        )

    # -- sending -------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task to a worker (or run it here when `task_always_eager` is set)."""
        args, kwargs = list(args or ()), dict(kwargs or {})
        if self.typing:
            self.check_arguments(args, kwargs)
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        self._add_task_options(options)
        return self.app.send_task(self.name, args, kwargs, **options)

    def delay_many(
        self,
        calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]],
        **options: Any,
    ) -> list[AsyncResult]:
        """Send this task once per item of `calls` (positional args, or an (args, kwargs) pair)
        in as few broker round trips as the broker allows. For bulk producers."""
        pairs = []
        for call in calls:
            if (
                isinstance(call, tuple)
                and len(call) == 2
                and isinstance(call[1], Mapping)
                and isinstance(call[0], (list, tuple))
            ):
                args, kwargs = list(call[0]), dict(call[1])
            else:
                args, kwargs = list(call), {}
            if self.typing:
                self.check_arguments(args, kwargs)
            pairs.append((args, kwargs))
        if self.app.conf.task_always_eager:
            return [self.apply(args, kwargs, **options) for args, kwargs in pairs]
        self._add_task_options(options)
        return self.app.send_many(self.name, pairs, **options)

    def _add_task_options(self, options: dict[str, Any]) -> None:
        """Fill in what the call left out from the task's own options."""
        for attr in ("queue", "priority", "expires", "time_limit", "soft_time_limit"):
            value = getattr(self, attr)
            if value is not None:
                options.setdefault(attr, value)
        options.setdefault("serializer", self.option("serializer"))
        options.setdefault("ignore_result", bool(self.option("ignore_result")))

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError now for a call the function could not accept, instead of on a worker."""
        try:
            signature = signature_of(type(self))
        except (TypeError, ValueError):
            return
        arity = ARITIES.get(type(self))
        if arity is not None and not kwargs and arity[0] <= len(args) <= arity[1]:
            return  # positional arguments only, as many as it takes: no need to bind them
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}() {exc}") from None

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        retries: int = 0,
        throw: bool | None = None,
        link: Any = None,
        link_error: Any = None,
        **options: Any,
    ) -> EagerResult:
        """Run the task here, now, and return its result (retries run at once, in order)."""
        return apply_eagerly(
            self,
            list(args or ()),
            dict(kwargs or {}),
            task_id=task_id,
            retries=retries,
            throw=throw,
            link=link,
            link_error=link_error,
            options=options,
        )

    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Send this task again (same id, retries + 1) and raise Retry to end this run."""
        request = self.request
        if request.called_directly:
            raise exc or RuntimeError(f"task {self.name!r} called directly cannot retry")
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} kwargs:{request.kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        when: float | datetime = countdown if countdown is not None else eta  # type: ignore[assignment]
        signal = Retry(exc=exc, when=when)
        if not request.is_eager:
            # RETRY is stored before the retry is sent: stored after (with the worker's next
            # batch), it could land after the next run's result and hide it
            signal.stored = self._store_retry(request, signal)
            self._send_retry(request, args, kwargs, eta, countdown, options)
        if throw:
            raise signal
        return signal

    def _store_retry(self, request: Request, signal: Retry) -> bool:
        """Store this run's RETRY state now, as the worker would have stored it once `signal`
        ended the run; False if it is not to be stored or could not be (the worker then
        stores it with the run's outcome, as before)."""
        ignored = request.ignore_result
        if (ignored if ignored is not None else self.option("ignore_result")) or not request.id:
            return False
        cause = signal.exc if isinstance(signal.exc, BaseException) else signal
        try:
            try:
                raise signal  # its traceback, as the run would end with it
            except Retry:
                einfo = traceback.format_exc()
            children = [[[request.id, None], None]]
            store_state(self.app, request, request.id, RETRY, cause, einfo, children)
        except Exception:
            log.debug("could not store RETRY of %s before sending it", request.id, exc_info=True)
            return False
        return True

    def _send_retry(
        self,
        request: Request,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        eta: datetime | None,
        countdown: float | None,
        options: dict[str, Any],
    ) -> None:
        if eta is None:
            eta = utcnow() + timedelta(seconds=countdown or 0)
        info = request.delivery_info
        if not info.get("exchange"):  # sent through the default exchange: same queue
            options.setdefault("queue", info.get("routing_key"))
        else:
            options.setdefault("exchange", info.get("exchange"))
            options.setdefault("routing_key", info.get("routing_key"))
        custom = {k: v for k, v in request.headers.items() if k not in _STANDARD_HEADERS}
        hard, soft = request.timelimit
        self.app.send_task(
            self.name,
            request.args if args is None else list(args),
            request.kwargs if kwargs is None else dict(kwargs),
            task_id=request.id,
            retries=request.retries + 1,
            eta=eta,
            expires=request.expires,
            parent_id=request.id,
            root_id=request.root_id,
            group_id=request.group,
            group_index=request.group_index,
            chain=request.chain,
            chord=request.chord,
            link=request.callbacks,
            link_error=request.errbacks,
            time_limit=hard,
            soft_time_limit=soft,
            reply_to=request.reply_to,
            priority=request.priority,
            shadow=request.shadow,
            stamps=request.stamps,
            replaced_task_nesting=request.replaced_task_nesting,
            headers=custom,
            origin=request.origin,
            ignore_result=request.ignore_result,
            serializer=self.option("serializer"),
            **options,
        )

    def update_state(
        self,
        task_id: str | None = None,
        state: str | None = None,
        meta: Any = None,
        *,
        traceback: str | None = None,
    ) -> None:
        """Store a state of this run now, e.g. ``update_state(state="PROGRESS",
        meta={"current": 3, "total": 10})``: `AsyncResult(id).state` and `.info` (the meta)
        read it from any client while the task runs. `task_id` defaults to the running
        task's; a task called directly has none, and nothing is stored."""
        if state is None:
            raise ValueError("update_state() needs a state, e.g. state='PROGRESS'")
        request = self.request
        task_id = task_id or request.id
        if task_id is not None:
            store_state(self.app, request, task_id, state, meta, traceback)

    def replace(self, sig: Mapping[str, Any]) -> Any:
        """End this run and have `sig` (one task's signature) take its place: it is sent with
        this task's id, links and chain, so `AsyncResult(id).get()` returns its result. In a
        worker this raises Ignore (write ``return self.replace(sig)``); in an eager run it
        runs `sig` here and returns its result. Groups and chords are not supported yet."""
        request = self.request
        new = replacement(self.app, request, sig)
        if not request.is_eager:
            # an eager run's own links run when it returns the replacement's result
            new = with_links(new, request)
        return self.on_replace(new)

    def backoff_countdown(self, retries: int) -> float:
        """Seconds before retry number `retries + 1` under `retry_backoff`/`retry_jitter`."""
        factor = 1 if self.retry_backoff is True else float(self.retry_backoff)
        countdown = min(self.retry_backoff_max, factor * (2**retries))
        if self.retry_jitter:
            countdown = random.randrange(int(countdown) + 1)
        return float(countdown)

    # -- signatures and results ----------------------------------------------------------
    def signature(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        return Signature(self.name, args, kwargs, options, app=self.app)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self.name, args, kwargs, immutable=True, app=self.app)

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return self.app.AsyncResult(task_id)

    # -- handlers a subclass (``base=``) may override -------------------------------------
    def before_start(self, task_id: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Called in the worker just before the task runs (its failure fails the task)."""

    def on_success(
        self, retval: Any, task_id: str, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        """Called in the worker after the task returned."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        einfo: str | None,
    ) -> None:
        """Called in the worker after the task raised."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        einfo: str | None,
    ) -> None:
        """Called in the worker after the task asked to be retried."""

    def on_replace(self, sig: Signature) -> Any:
        """Called by `replace()` with the replacement, ready: sends it and raises Ignore (in a
        worker), or runs it here and returns its result (eager). An override must end with
        ``return super().on_replace(sig)``."""
        if self.request.is_eager:
            return sig.apply().get()
        sig.apply_async()
        raise Ignore("Replaced by new task")

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        einfo: str | None,
    ) -> None:
        """Called in the worker after a run that succeeded or failed (not after a retry, an
        Ignore, such as a replaced task's, or a Reject), as in Celery."""


_STANDARD_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
        "compression",
        "redelivered",
    }
)
