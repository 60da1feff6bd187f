"""The exceptions a Celery project imports from `celery.exceptions`, under the same names."""

from .errors import ConfigError as ImproperlyConfigured
from .wire.exceptions import (
    BackendError,
    BrokerUnreachable,
    ChordError,
    Ignore,
    InvalidTaskError,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskError,
    TaskRevokedError,
    TimeLimitExceeded,
    TimeoutError,
    WorkerLostError,
)
from .wire.exceptions import BrokerUnreachable as OperationalError
from .wire.exceptions import TaskError as CeleryError

__all__ = [
    "BackendError",
    "BrokerUnreachable",
    "CeleryError",
    "ChordError",
    "Ignore",
    "ImproperlyConfigured",
    "InvalidTaskError",
    "MaxRetriesExceededError",
    "NotRegistered",
    "OperationalError",
    "Reject",
    "Retry",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]
