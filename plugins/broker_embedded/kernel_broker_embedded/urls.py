"""Map ``embedded://`` URLs (and kombu's parsed form of them) to database paths."""

from __future__ import annotations

import pathlib
from typing import Any
from urllib.parse import urlsplit

from kernel.plugin import path_from_url as _core_path_from_url
from kernel.plugin import path_from_url_path

SCHEME = "embedded"
DEFAULT_NAME = "broker.db"


def default_path() -> pathlib.Path:
    """The database used by a bare ``embedded://``: ``.taskkernel/broker.db`` under the cwd."""
    return path_from_url_path(None, DEFAULT_NAME)


def path_from_url(url: str) -> pathlib.Path:
    """Absolute database path for ``embedded:///rel.db``, ``embedded:////abs.db`` or ``embedded://``."""
    scheme = urlsplit(url).scheme
    if scheme and scheme != SCHEME:
        raise ValueError(f"not an {SCHEME}:// URL: {url!r}")
    return _core_path_from_url(url, DEFAULT_NAME)


def path_from_client(client: Any) -> pathlib.Path:
    """Database path for a :class:`kombu.Connection`.

    kombu parses ``embedded:///rel.db`` into ``virtual_host="rel.db"``,
    ``embedded:////abs.db`` into ``"/abs.db"`` and a bare ``embedded://`` into its
    default virtual host ``"/"``; the hostname plays no part.
    """
    return path_from_url_path(getattr(client, "virtual_host", None), DEFAULT_NAME)
