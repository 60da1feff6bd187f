"""URLs: shown with their password masked, and the files `embedded://` URLs name."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

STATE_DIR = ".taskkernel"


def safe_url(url: str) -> str:
    """The URL with any password masked, for banners and logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1****@", url)


def path_from_url_path(path: str | None, default_name: str) -> Path:
    """The absolute file for what follows a URL's authority: "" or "/" mean
    ``./.taskkernel/<default_name>``; "rel/x.db" is relative to the current directory (as in
    SQLAlchemy's URLs, three slashes make a relative path and four an absolute one)."""
    if not path or path == "/":
        return Path.cwd() / STATE_DIR / default_name
    found = Path(unquote(path)).expanduser()
    return found if found.is_absolute() else Path.cwd() / found


def path_from_url(url: str, default_name: str) -> Path:
    """`embedded:///rel/x.db` -> ./rel/x.db, `embedded:////abs/x.db` -> /abs/x.db,
    `embedded://` -> ./.taskkernel/<default_name>. Always absolute; creates nothing."""
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path  # the authority's slash
    return path_from_url_path(path, default_name)
