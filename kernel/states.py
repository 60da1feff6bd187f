"""Task states under Celery's names (`celery.states`), with the sets they are grouped in."""

from .wire.meta import (
    EXCEPTION_STATES,
    FAILURE,
    IGNORED,
    PENDING,
    PROPAGATE_STATES,
    READY_STATES,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
)

UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})

__all__ = [
    "ALL_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "IGNORED",
    "PENDING",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
]
