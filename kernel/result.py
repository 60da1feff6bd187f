"""Result handles under Celery's names (`celery.result`)."""

from .client.results import AsyncResult, EagerResult

__all__ = ["AsyncResult", "EagerResult"]
