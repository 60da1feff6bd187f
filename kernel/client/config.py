"""Settings the core declares, with Celery's names where the concept is the same."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ..settings import (
    Setting,
    at_least,
    identity,
    one_of,
    optional,
    to_bool,
    to_dict,
    to_float,
    to_int,
    to_str,
    to_str_list,
)
from .zones import to_timezone


def to_seconds(value: Any) -> float:
    """Seconds, from a number, a timedelta or text."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return to_float(value)


LIMIT_FORMS = "a number of seconds above 0, or None for no limit"
# per call, None means "the task's own limit"; 0 lifts it (every pool reads 0 as no limit), so
# a message that carried 0 is sent again as it came when its task retries
SEND_LIMIT_FORMS = "a number of seconds above 0, 0 for no limit, or None for the task's own"


def to_time_limit(value: Any) -> float:
    """A time limit: seconds above zero (a limit of 0 or less would fail every task)."""
    seconds = to_seconds(value)
    if not seconds > 0:
        raise ValueError(f"expected {LIMIT_FORMS}, got {value!r}")
    return seconds


def check_time_limits(options: Mapping[str, Any], where: str, *, per_call: bool = False) -> None:
    """Refuse a `time_limit`/`soft_time_limit` in `options` that no pool could honour, naming
    the option and `where` it was given, before anything is registered or sent."""
    forms = SEND_LIMIT_FORMS if per_call else LIMIT_FORMS
    for option in ("time_limit", "soft_time_limit"):
        value = options.get(option)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} {option}={value!r}: expected {forms}")
        if value < 0 or (value == 0 and not per_call):
            raise ValueError(f"{where} {option}={value!r}: expected {forms}")


def to_priority(value: Any) -> int:
    number = to_int(value)
    if not 0 <= number <= 255:
        raise ValueError(f"expected a priority from 0 to 255, got {value!r}")
    return number


def to_delivery_mode(value: Any) -> int:
    named = {"persistent": 2, "transient": 1}
    if isinstance(value, str) and value.lower() in named:
        return named[value.lower()]
    number = to_int(value)
    if number not in (1, 2):
        raise ValueError(f"expected 1, 2, 'transient' or 'persistent', got {value!r}")
    return number


def to_protocol(value: Any) -> int:
    """`task_protocol`: 2, the one we send (protocol 1 messages are read, never sent: a worker
    that only reads 1 would not understand ours)."""
    try:
        number = to_int(value)
    except ValueError:
        number = None
    if number != 2:
        raise ValueError(f"expected 2 (protocol 1 is read but not sent), got {value!r}")
    return number


def to_rate(value: Any) -> Any:
    """A rate limit as written (`10/s`, `100/m`, `1000/h`, a number), checked at start-up."""
    from .rates import parse_rate

    parse_rate(value)
    return value


def to_routes(value: Any) -> Any:
    """`task_routes`: a mapping, a callable, or a list of them (as Celery takes it)."""
    if value is None or isinstance(value, dict) or callable(value):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, dict) or callable(v) for v in value):
        return list(value)
    raise ValueError(f"expected a mapping, a function or a list of them, got {value!r}")


SERIALIZERS = ("json", "msgpack", "yaml", "pickle")
COMPRESSIONS = ("zlib", "bzip2", "gzip", "lzma", "brotli", "zstd")

_s = Setting
CORE_SETTINGS: tuple[Setting, ...] = (
    # composition
    _s("plugins", [], to_str_list, "plugins to enable by entry-point name; no:NAME blocks"),
    _s("imports", [], to_str_list, "modules the worker imports at start (where tasks live)"),
    _s("include", [], to_str_list, "more modules the worker imports at start"),
    # broker and backend
    _s("broker_url", None, optional(to_str), "broker URL (default: the embedded broker)"),
    _s("broker_transport_options", {}, to_dict, "options for the broker transport"),
    _s("broker_connection_retry", True, to_bool, "retry connecting and publishing"),
    _s("broker_connection_max_retries", 100, optional(to_int), "give up after this many tries"),
    _s("broker_connection_timeout", 4.0, to_seconds, "seconds to wait for a connection"),
    _s("broker_heartbeat", 60.0, optional(to_seconds), "AMQP heartbeat interval (s)"),
    _s("broker_use_ssl", None, identity, "TLS options for the broker connection"),
    _s("result_backend", None, optional(to_str), "result backend URL (default: embedded)"),
    _s("result_backend_transport_options", {}, to_dict, "options for the result backend"),
    _s("result_expires", 86400.0, optional(to_seconds), "seconds results are kept"),
    _s("result_extended", False, to_bool, "store name, args, kwargs, worker, queue too"),
    _s("result_serializer", "json", one_of(*SERIALIZERS), "how results are serialized"),
    _s("result_accept_content", None, optional(to_str_list), "result content types accepted"),
    # messages
    _s("task_serializer", "json", one_of(*SERIALIZERS), "how task messages are serialized"),
    _s("accept_content", ["json"], to_str_list, "content types a worker accepts"),
    _s("task_compression", None, optional(one_of(*COMPRESSIONS)), "compress task messages"),
    _s("task_protocol", 2, to_protocol, "message protocol sent (2; 1 is accepted on input)"),
    _s("task_default_queue", "celery", to_str, "queue for tasks with no route"),
    _s("task_default_priority", None, optional(to_priority), "priority when none is given"),
    _s("task_queue_max_priority", None, optional(to_priority), "RabbitMQ x-max-priority of queues"),
    _s("task_default_delivery_mode", 2, to_delivery_mode, "1 transient, 2 persistent"),
    _s("task_routes", None, to_routes, "task name (or glob) -> queue"),
    _s("task_create_missing_queues", True, to_bool, "declare queues named by routes"),
    _s("task_publish_retry", True, to_bool, "retry publishing while the broker is down"),
    _s(
        "task_publish_retry_policy",
        {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        to_dict,
        "retry policy for publishing",
    ),
    # task behaviour
    _s("task_acks_late", False, to_bool, "acknowledge after the task ran, not before"),
    _s("task_acks_on_failure_or_timeout", True, to_bool, "ack failed late-ack tasks"),
    _s("task_reject_on_worker_lost", None, optional(to_bool), "redeliver if the worker dies"),
    _s("task_ignore_result", False, to_bool, "store no results by default"),
    _s("task_store_errors_even_if_ignored", False, to_bool, "store failures of ignore_result"),
    _s("task_track_started", False, to_bool, "store STARTED when a task begins"),
    _s("task_always_eager", False, to_bool, "run tasks in the caller, not on a worker"),
    _s("task_eager_propagates", False, to_bool, "apply() re-raises task exceptions"),
    _s(
        "task_time_limit",
        None,
        optional(to_time_limit),
        "hard time limit (needs a pool honouring it)",
    ),
    _s("task_soft_time_limit", None, optional(to_time_limit), "soft time limit"),
    _s("task_default_rate_limit", None, to_rate, "rate limit for every task (plugin ratelimit)"),
    _s("enable_utc", True, to_bool, "without a timezone: UTC if true, else this machine's zone"),
    _s("timezone", None, optional(to_timezone), "the zone times are given in ('Europe/Paris')"),
    # worker
    _s("worker_pool", None, optional(to_str), "the pool to run tasks in: pool.<name>"),
    _s("worker_concurrency", None, optional(at_least(1)), "pool slots (default: number of CPUs)"),
    _s("worker_prefetch_multiplier", 4, at_least(0), "messages held per pool slot (0: unlimited)"),
    _s("worker_hostname", None, optional(to_str), "node name; %h is this host's name"),
    _s(
        "worker_queues",
        None,
        optional(to_str_list),
        "queues to consume (default: the default queue)",
    ),
)
