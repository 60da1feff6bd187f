"""The app: configuration, the task registry, sending tasks and reading results."""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, NamedTuple, TypeVar, overload

from ..errors import ConfigError, PluginError
from ..manager import PluginManager
from ..wire.backend import DisabledBackend
from ..wire.protocol import NOTIFY_HEADER, Request, encode_body, new_id, task_message
from ..wire.transport import Broker, Outgoing, QueueSpec, ResultBackend
from . import current
from .accepted import check_refused
from .canvas import as_signature_list
from .conf import app_conf
from .config import check_time_limits
from .discovery import discovered_modules, import_task_module
from .rates import parse_rate
from .results import AsyncResult
from .sources import source_reader
from .task import Task as TaskBase
from .zones import zone_of

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_BROKER = "embedded://"
SEND_OPTIONS = frozenset(
    {
        "task_id",
        "countdown",
        "eta",
        "expires",
        "queue",
        "routing_key",
        "exchange",
        "priority",
        "headers",
        "link",
        "link_error",
        "ignore_result",
        "time_limit",
        "soft_time_limit",
        "serializer",
        "compression",
        "shadow",
        "retries",
        "chain",
        "chord",
        "group_id",
        "group_index",
        "parent_id",
        "root_id",
        "reply_to",
        "stamps",
        "retry",
        "retry_policy",
        "add_to_parent",
        "origin",
        "delivery_mode",
        "exchange_type",
        "replaced_task_nesting",
    }
)


class SendDefaults(NamedTuple):
    default_queue: str
    default_priority: int | None
    delivery_mode: int
    serializer: str
    compression: str | None
    create_queues: bool
    zone: tzinfo  # countdown and expires are given in it, as Celery gives them


class App:
    """Configuration plus tasks. ``App("proj", broker=URL, backend=URL, **settings)``.

    With no broker URL the embedded broker (a file under ``.taskkernel/``) is used, and with
    it the embedded result backend; with another broker and no backend, results are disabled.
    """

    Task: type[TaskBase] = TaskBase

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        config_source: Any = None,
        task_cls: type[TaskBase] | str | None = None,
        set_as_current: bool = True,
        **settings: Any,
    ) -> None:
        self.main = main
        if task_cls is not None:  # every task of this app derives from it (Celery's task_cls)
            self.Task = _import_class(task_cls, TaskBase, "task_cls")
        self.namespace: str | None = None  # the prefix of setting names in config sources
        self.conf = app_conf()
        if config_source is not None:
            self.config_from_object(config_source)
        for key, value in settings.items():
            self.conf[key] = value
        if broker is not None:
            self.conf.broker_url = broker
        if backend is not None:
            self.conf.result_backend = backend
        self.tasks: dict[str, TaskBase] = {}
        self._lock = threading.RLock()
        self._pm: PluginManager | None = None
        self._broker: Broker | None = None
        self._backend: ResultBackend | None = None
        self._local = threading.local()
        self._origin: tuple[int, str] = (0, "")
        self._defaults: tuple[int, SendDefaults] | None = None
        self._discover: list[tuple[Any, str]] = []  # autodiscover_tasks, done at finalize()
        if set_as_current:
            current.add_app(self)  # shared tasks are registered on it here

    def set_current(self) -> None:
        """Make this the app that `current_app` and shared tasks mean, in this thread."""
        current.set_current(self)

    def autodiscover_tasks(
        self,
        packages: Any = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import `<package>.<related_name>` for each package when the app is finalized (a
        worker starting, or `finalize()`), or now with `force`. `packages` is a list, a
        callable returning one (called then), or None: Django's installed apps."""
        self._discover.append((packages, related_name))
        if force:
            self.finalize()

    def finalize(self) -> None:
        """Import the task modules `autodiscover_tasks` asked for (each once)."""
        pending, self._discover = self._discover, []
        for packages, related_name in pending:
            for module in discovered_modules(packages, related_name):
                import_task_module(module)

    def __repr__(self) -> str:
        return f"<App {self.main or '__main__'}: {len(self.tasks)} tasks>"

    # -- configuration ---------------------------------------------------------------------
    def config_from_object(
        self, obj: Any, silent: bool = False, force: bool = False, namespace: str | None = None
    ) -> None:
        """Take settings from a mapping, an object, a module, or a module's name (dotted, or
        ``"module:attribute"`` such as ``"django.conf:settings"``), as Celery does: read when a
        setting is first looked at (now with `force`), replacing the previous source's values;
        values set on the app itself win. With ``namespace="CELERY"`` only ``CELERY_``-prefixed
        names are read (``CELERY_BROKER_URL`` is broker_url); without one, Celery's old
        upper-case names are read as the new ones. `silent` ignores a module that is missing."""
        self.namespace = namespace or self.namespace
        self.conf.read_from(source_reader(obj, self.namespace, silent), now=force)

    def config_from_envvar(
        self, variable_name: str, silent: bool = False, force: bool = False
    ) -> bool:
        """`config_from_object` with the module named by environment variable `variable_name`;
        False if it is unset and `silent`, else ConfigError."""
        module_name = os.environ.get(variable_name)
        if not module_name:
            if silent:
                return False
            raise ConfigError(
                f"config_from_envvar: environment variable {variable_name!r} is not set; "
                "set it to the name of a configuration module"
            )
        self.config_from_object(module_name, silent=silent, force=force)
        return True

    @property
    def timezone(self) -> tzinfo:
        """The zone this app's times are given in (`timezone`, else UTC, or this machine's
        zone with ``enable_utc=False``), as Celery's ``app.timezone``."""
        return self._send_defaults().zone

    def now(self) -> datetime:
        """The current time in the app's zone, as Celery's ``app.now()``."""
        return datetime.now(self._send_defaults().zone)

    @property
    def broker_url(self) -> str:
        return str(self.conf.broker_url or DEFAULT_BROKER)

    @property
    def backend_url(self) -> str | None:
        """The result backend URL: the embedded one only if the broker is embedded too."""
        if self.conf.result_backend:
            return str(self.conf.result_backend)
        return DEFAULT_BROKER if _scheme(self.broker_url) == _scheme(DEFAULT_BROKER) else None

    # -- tasks -------------------------------------------------------------------------------
    @overload
    def task(self, fun: F) -> TaskBase: ...

    @overload
    def task(self, **options: Any) -> Callable[[F], TaskBase]: ...

    def task(self, fun: Any = None, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., bind=True)``."""
        if fun is not None and callable(fun) and not options:
            return self._register(fun, {})

        def decorate(function: F) -> TaskBase:
            return self._register(function, options)

        return decorate

    def _register(self, fun: Callable[..., Any], options: dict[str, Any]) -> TaskBase:
        base = options.pop("base", None) or self.Task
        unknown = set(options) - base.OPTIONS
        if unknown:
            raise TypeError(
                f"unknown task option(s) {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(base.OPTIONS))}"
            )
        if options.get("rate_limit") is not None:
            parse_rate(options["rate_limit"])  # a malformed rate fails here, where it is written
        check_time_limits(options, "task option")
        name = options.pop("name", None) or self._task_name(fun)
        bind = options.get("bind", base.bind)
        attrs = {
            "name": name,
            "app": self,
            "run": fun if bind else staticmethod(fun),
            "__module__": fun.__module__,
            "__doc__": fun.__doc__,
            "__qualname__": getattr(fun, "__qualname__", name),
            "__wrapped__": fun,
            **options,
        }
        for key in ("autoretry_for", "dont_autoretry_for"):
            if key in attrs:
                attrs[key] = tuple(attrs[key])
        cls = type(fun.__name__, (base,), attrs)
        task: TaskBase = cls()
        self.tasks[name] = task
        return task

    def _task_name(self, fun: Callable[..., Any]) -> str:
        module = fun.__module__
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{fun.__name__}"

    # -- plugins, broker, backend ---------------------------------------------------------
    @property
    def pm(self) -> PluginManager:
        """This app's own plugin manager: the broker and backend plugins its URLs pick."""
        with self._lock:
            if self._pm is None:
                pm = PluginManager()
                pm.enable(pm.plugin_for_url("broker", self.broker_url, "broker_url"))
                backend_url = self.backend_url
                if backend_url:
                    pm.enable(pm.plugin_for_url("backend", backend_url, "result_backend"))
                self._pm = pm
            return self._pm

    @property
    def broker(self) -> Broker:
        with self._lock:
            if self._broker is None:
                self._broker = self.open_broker(self.pm)
            return self._broker

    def open_broker(self, pm: PluginManager) -> Broker:
        url = self.broker_url
        broker = pm.hook.kernel_broker(url=url, app=self)
        if broker is None:
            raise PluginError(f"no enabled plugin handles broker URL {_scheme(url)}://")
        return broker  # type: ignore[no-any-return]

    @property
    def backend(self) -> ResultBackend:
        with self._lock:
            if self._backend is None:
                self._backend = self.open_backend(self.pm)
            return self._backend

    def open_backend(self, pm: PluginManager) -> ResultBackend:
        url = self.backend_url
        if url is None:
            return DisabledBackend(self)
        backend = pm.hook.kernel_result_backend(url=url, app=self)
        if backend is None:
            raise PluginError(f"no enabled plugin handles result backend URL {_scheme(url)}://")
        return backend  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            for thing in (self._broker, self._backend):
                if thing is not None:
                    thing.close()
            self._broker = self._backend = None

    # -- sending --------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        """`gen<pid>@<host>`, as Celery clients name themselves (the pid changes after a fork)."""
        pid = os.getpid()
        cached = self._origin
        if cached[0] != pid:
            cached = self._origin = (pid, f"gen{pid}@{socket.gethostname()}")
        return cached[1]

    @property
    def oid(self) -> str:
        """This client's id, used as `reply_to` (uuid3 of node, process, thread and app)."""
        key = (os.getpid(), threading.get_ident())
        cached = getattr(self._local, "oid", None)
        if cached is None or cached[0] != key:
            node = f"{uuid.getnode()}-{key[0]}-{key[1]}-{id(self)}"
            cached = self._local.oid = (key, str(uuid.uuid3(uuid.NAMESPACE_OID, node)))
        return cached[1]

    def push_current(self, request: Request) -> None:
        stack = getattr(self._local, "current", None)
        if stack is None:
            stack = self._local.current = []
        stack.append(request)

    def pop_current(self) -> None:
        self._local.current.pop()

    def current_request(self) -> Request | None:
        """The request this thread is running, so tasks it sends record their parent."""
        stack = getattr(self._local, "current", None)
        return stack[-1] if stack else None

    def route(
        self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any], queue: str | None = None
    ) -> dict[str, Any]:
        """Where a task goes: `queue`, else `task_routes`, the task's queue, the default queue."""
        if queue is not None:
            return {"queue": queue}
        for router in _routers(self.conf.task_routes):
            found = router(name, args, kwargs) if callable(router) else _match(router, name)
            if found:
                return {"queue": found} if isinstance(found, str) else dict(found)
        task = self.tasks.get(name)
        if task is not None and task.queue:
            return {"queue": task.queue}
        return {"queue": self.conf.task_default_queue}

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name (it need not be registered here); return its AsyncResult."""
        check_time_limits(options, "send option", per_call=True)  # not on a worker, later
        task_id, message = self.build_message(name, args, kwargs, options)
        self.broker.publish([message])
        return AsyncResult(task_id, self)

    def send_many(
        self,
        name: str,
        calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]],
        **options: Any,
    ) -> list[AsyncResult]:
        """Send one task many times, `(args, kwargs)` per call, in as few broker round trips
        as the broker allows (Redis: one pipeline). For bulk producers."""
        check_time_limits(options, "send option", per_call=True)
        built = [self.build_message(name, args, kwargs, options) for args, kwargs in calls]
        if not built:
            return []
        self.broker.publish([message for _, message in built])
        return [AsyncResult(task_id, self) for task_id, _ in built]

    def build_message(
        self,
        name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> tuple[str, Outgoing]:
        """The task id and the serialized message `send_task` would publish."""
        unknown = set(options) - SEND_OPTIONS
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(SEND_OPTIONS))}"
            )
        conf = self._send_defaults()
        args, kwargs = list(args or ()), dict(kwargs or {})
        task_id = options.get("task_id") or new_id()
        eta = options.get("eta")
        expires = options.get("expires")
        if options.get("countdown") is not None or (
            expires is not None and not isinstance(expires, datetime)
        ):
            now = datetime.now(conf.zone)
            if options.get("countdown") is not None:
                eta = now + timedelta(seconds=float(options["countdown"]))
            if expires is not None and not isinstance(expires, datetime):
                expires = now + timedelta(seconds=float(expires))
        route = self.route(name, args, kwargs, options.get("queue"))
        queue = route.get("queue") or conf.default_queue
        exchange = options.get("exchange") or route.get("exchange") or ""
        routing_key = options.get("routing_key") or route.get("routing_key") or queue
        priority = options.get("priority", route.get("priority"))
        if priority is None:
            priority = conf.default_priority
        reply_to = options.get("reply_to") or self.oid
        parent = self.current_request()
        parent_id = options.get("parent_id") or (parent.id if parent else None)
        root_id = options.get("root_id") or (parent.root_id if parent else None)
        headers, properties, body = task_message(
            task_id=task_id,
            name=name,
            args=args,
            kwargs=kwargs,
            origin=options.get("origin") or self.origin,
            eta=eta,
            expires=expires,
            retries=options.get("retries") or 0,
            timelimit=(options.get("time_limit"), options.get("soft_time_limit")),
            root_id=root_id,
            parent_id=parent_id,
            group=options.get("group_id"),
            group_index=options.get("group_index"),
            shadow=options.get("shadow"),
            ignore_result=options.get("ignore_result"),
            callbacks=as_signature_list(options.get("link"), self),
            errbacks=as_signature_list(options.get("link_error"), self),
            chain=options.get("chain"),
            chord=options.get("chord"),
            reply_to=reply_to,
            priority=priority,
            stamps=options.get("stamps"),
            replaced_task_nesting=options.get("replaced_task_nesting") or 0,
            extra_headers=options.get("headers"),
            delivery_mode=options.get("delivery_mode") or conf.delivery_mode,
        )
        raw, content_type, encoding, extra = encode_body(
            body,
            options.get("serializer") or conf.serializer,
            options.get("compression") or conf.compression,
        )
        headers.update(extra)
        declare: list[str | QueueSpec] = [queue] if conf.create_queues and not exchange else []
        if reply_to == self.oid:
            reply_queue, notify_channel = self._result_channels(reply_to)
            if reply_queue is not None:
                declare.append(reply_queue)
            if notify_channel is not None:
                headers[NOTIFY_HEADER] = notify_channel
        message = Outgoing(
            raw, routing_key, exchange, headers, properties, content_type, encoding, declare
        )
        return task_id, message

    def _send_defaults(self) -> SendDefaults:
        """Settings every send reads, looked up again only after the configuration changed
        (then checked: a client must not send what a refused setting would have changed)."""
        cached = self._defaults
        if cached is None or cached[0] != self.conf.version:
            conf = self.conf
            check_refused(conf.explicit())  # reads a pending source first, which bumps version
            defaults = SendDefaults(
                default_queue=conf.task_default_queue,
                default_priority=conf.task_default_priority,
                delivery_mode=conf.task_default_delivery_mode,
                serializer=conf.task_serializer,
                compression=conf.task_compression,
                create_queues=bool(conf.task_create_missing_queues),
                zone=zone_of(conf),
            )
            cached = self._defaults = (conf.version, defaults)
        return cached[1]

    def _result_channels(self, oid: str) -> tuple[QueueSpec | None, str | None]:
        """What this client's backend needs on each message it sends, asked once per client
        thread: the reply queue to declare (rpc://) and where the client hears of results
        announced in batches (Redis). See the ResultBackend contract."""
        found = getattr(self._local, "result_channels", None)
        if found is None or found[0] is not self._backend or found[1] != oid:
            backend = self.backend
            found = (backend, oid, backend.reply_queue(oid), backend.notify_channel(oid))
            self._local.result_channels = found
        return found[2], found[3]

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id, self)


Celery = App  # the name a Celery project knows the app by


def _import_class(spec: type[TaskBase] | str, base: type[TaskBase], what: str) -> type[TaskBase]:
    """A class given as itself or as "module:Class" (or "module.Class"), derived from `base`."""
    if isinstance(spec, str):
        module, sep, name = spec.partition(":")
        if not sep:
            module, _, name = spec.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"{what} {spec!r} cannot be imported: {exc}") from None
    else:
        found = spec
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ValueError(f"{what} {spec!r} is not a subclass of {base.__qualname__}")
    return found


def _scheme(url: str) -> str:
    return url.split(";", 1)[0].strip().split("://", 1)[0].lower()


def _routers(routes: Any) -> list[Any]:
    if routes is None:
        return []
    return list(routes) if isinstance(routes, (list, tuple)) else [routes]


def _match(table: Mapping[Any, Any], name: str) -> Any:
    if name in table:
        return table[name]
    for pattern, route in table.items():
        if isinstance(pattern, re.Pattern):
            if pattern.match(name):
                return route
        elif isinstance(pattern, str) and fnmatch.fnmatchcase(name, pattern):
            return route
    return None
