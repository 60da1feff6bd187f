"""Loggers for tasks and modules, as `celery.utils.log` gives them."""

from __future__ import annotations

import logging

TASK_LOGGER = "kernel.task"


def get_task_logger(name: str) -> logging.Logger:
    """A logger for a tasks module: its records also go through the "kernel.task" logger, so
    a worker's task logging can be set in one place."""
    logger = logging.getLogger(name)
    logger.parent = logging.getLogger(TASK_LOGGER)  # as Celery does: one parent for tasks
    return logger


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


__all__ = ["get_logger", "get_task_logger"]
