"""URL forms of the embedded broker, parsed directly and through kombu."""

from __future__ import annotations

import pathlib

import pytest
from kernel_broker_embedded import Transport, default_path, path_from_url
from kombu import Connection


@pytest.fixture
def cwd(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work.resolve()


def test_default_path_is_under_the_current_directory(cwd: pathlib.Path) -> None:
    assert default_path() == cwd / ".taskkernel" / "broker.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("embedded:///rel/path.db", "rel/path.db"),
        ("embedded:///path.db", "path.db"),
        ("embedded://", ".taskkernel/broker.db"),
        ("embedded:///", ".taskkernel/broker.db"),
        ("embedded:///with%20space/p.db", "with space/p.db"),
    ],
)
def test_relative_forms(cwd: pathlib.Path, url: str, expected: str) -> None:
    assert path_from_url(url) == cwd / expected


def test_absolute_form(cwd: pathlib.Path, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "abs" / "broker.db"
    assert path_from_url(f"embedded:///{target}") == target  # "embedded:////tmp/..."
    assert path_from_url("embedded:////var/lib/tk.db") == pathlib.Path("/var/lib/tk.db")


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError):
        path_from_url("redis://localhost/0")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("embedded:///rel/path.db", "rel/path.db"),
        ("embedded://", ".taskkernel/broker.db"),
    ],
)
def test_kombu_connection_relative(cwd: pathlib.Path, url: str, expected: str) -> None:
    conn = Connection(url, transport=Transport)
    try:
        conn.connect()
        db = conn.transport.db_path
        assert db == cwd / expected
        assert db.is_file()  # parent directories created, schema written
    finally:
        conn.release()


def test_kombu_connection_absolute(cwd: pathlib.Path, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "deep" / "er" / "b.db"
    conn = Connection(f"embedded:///{target}", transport=Transport)
    try:
        conn.connect()
        assert conn.transport.db_path == target.resolve()
        assert target.is_file()
    finally:
        conn.release()
