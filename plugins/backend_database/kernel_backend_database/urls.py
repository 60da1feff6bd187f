"""`db+<SQLAlchemy URL>` to an SQLAlchemy URL whose driver is installed, and where it points."""

from __future__ import annotations

import importlib.util
import os
import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from kernel.plugin import BackendError

PREFIX = "db+"

# Drivers to use, as ("+driver", module) in order of preference, when a URL names none and
# SQLAlchemy's default for the dialect (which differs between SQLAlchemy versions) is missing.
_MYSQL = (("pymysql", "pymysql"), ("mysqldb", "MySQLdb"), ("mysqlconnector", "mysql.connector"))
_DRIVERS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2"), ("pg8000", "pg8000")),
    "mysql": _MYSQL,
    "mariadb": _MYSQL,
}
_EXTRAS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


def redact(url: str) -> str:
    """The URL without its password, fit for an error message."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def sqlalchemy_url(url: str) -> URL:
    """Strip `db+`, and pick an installed driver when the URL names none and the default is
    missing (`db+mysql://` runs on PyMySQL, `db+postgresql://` on psycopg 3)."""
    if not url.startswith(PREFIX):
        raise BackendError(f"not a database backend URL: {redact(url)} (expected db+...)")
    try:
        parsed = make_url(url[len(PREFIX) :])
    except ArgumentError:
        raise BackendError(
            f"bad database backend URL {redact(url)}: expected "
            "db+<dialect>://user:password@host:port/database or db+sqlite:///file.db"
        ) from None
    dialect, _, driver = parsed.drivername.partition("+")
    if dialect == "postgres":  # the old alias SQLAlchemy no longer accepts
        dialect = "postgresql"
        parsed = parsed.set(drivername=f"{dialect}+{driver}" if driver else dialect)
    if not driver and dialect in _DRIVERS and not _default_installed(parsed):
        for name, module in _DRIVERS[dialect]:
            if _installed(module):
                return parsed.set(drivername=f"{dialect}+{name}")
    return parsed


def _default_installed(url: URL) -> bool:
    try:
        url.get_dialect().import_dbapi()
    except ImportError:
        return False
    return True


def install_hint(url: URL) -> str:
    extra = _EXTRAS.get(url.get_backend_name())
    if extra:
        return f"pip install 'taskkernel-backend-database[{extra}]'"
    return f"install a DB-API driver for {url.drivername}"


def describe(url: URL) -> str:
    """Where the database is, for messages: the host and port, or the SQLite file."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database
        return f"sqlite file {os.path.abspath(database) if database else ':memory:'}"
    port = url.port or _DEFAULT_PORTS.get(backend)
    where = f"{url.host or 'localhost'}:{port}" if port else (url.host or "localhost")
    return f"{backend} at {where}" + (f", database {url.database}" if url.database else "")
