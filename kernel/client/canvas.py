"""Signatures: a task call kept as data (Celery's dict layout) to send later, link or chain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..wire.exceptions import NotRegistered

if TYPE_CHECKING:
    from .app import App
    from .results import AsyncResult, EagerResult


class Signature(dict[str, Any]):
    """``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}``, as on the wire."""

    def __init__(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
        subtask_type: str | None = None,
        app: App | None = None,
    ) -> None:
        super().__init__(
            task=task,
            args=list(args),
            kwargs=dict(kwargs or {}),
            options=dict(options or {}),
            subtask_type=subtask_type,
            immutable=immutable,
        )
        self.app = app

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: App | None = None) -> Signature:
        if isinstance(data, Signature):
            return data if app is None or data.app is app else data.clone(app=app)
        return cls(
            str(data["task"]),
            data.get("args") or (),
            data.get("kwargs") or {},
            data.get("options") or {},
            immutable=bool(data.get("immutable")),
            subtask_type=data.get("subtask_type"),
            app=app,
        )

    @property
    def name(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> list[Any]:
        return list(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self["options"])

    @property
    def immutable(self) -> bool:
        return bool(self["immutable"])

    def clone(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        app: App | None = None,
        **options: Any,
    ) -> Signature:
        """A copy with `args` prepended (unless immutable), kwargs and options merged."""
        new_args = self.args if self.immutable else [*args, *self.args]
        new_kwargs = self.kwargs if self.immutable else {**self.kwargs, **(kwargs or {})}
        return Signature(
            self.name,
            new_args,
            new_kwargs,
            {**self.options, **options},
            immutable=self.immutable,
            subtask_type=self["subtask_type"],
            app=app or self.app,
        )

    def set(self, **options: Any) -> Signature:
        self["options"].update(options)
        return self

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        self["options"].setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        self["options"].setdefault("link_error", []).append(errback)
        return errback

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        if self.app is None:
            raise RuntimeError(f"signature {self.name!r} is not bound to an app")
        sig = self.clone(args, kwargs, **options)
        return self.app.send_task(sig.name, sig.args, sig.kwargs, **sig.options)

    def apply(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> EagerResult:
        """Run the task here, now (its `apply()`), with this signature's arguments and options."""
        if self.app is None:
            raise RuntimeError(f"signature {self.name!r} is not bound to an app")
        task = self.app.tasks.get(self.name)
        if task is None:
            raise NotRegistered(self.name)
        sig = self.clone(args, kwargs, **options)
        return task.apply(sig.args, sig.kwargs, **sig.options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        args = ", ".join(
            [*(repr(a) for a in self["args"]), *(f"{k}={v!r}" for k, v in self["kwargs"].items())]
        )
        return f"{self.name}({args}){'!' if self.immutable else ''}"


def as_signature_list(value: Any, app: App | None = None) -> list[Signature] | None:
    """`link=`/`link_error=` accept one signature or a list; normalise to a list (or None)."""
    if value is None:
        return None
    items = [value] if isinstance(value, Mapping) else list(value)
    return [Signature.from_dict(item, app) for item in items]
