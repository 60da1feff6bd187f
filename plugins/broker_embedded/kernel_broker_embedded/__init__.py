"""Embedded default broker: a kombu virtual transport stored in one SQLite file."""

from __future__ import annotations

from .transport import Channel, Transport
from .urls import default_path, path_from_url

__all__ = ["Channel", "Transport", "default_path", "path_from_url"]
