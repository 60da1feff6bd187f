"""The test kit's server check: skip on a laptop, fail under CI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_skips_locally_and_fails_under_ci(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "test_needs.py").write_text(
        "from kernel.testing.helpers import require_server\n"
        f"def test_it():\n    require_server('Redis', '127.0.0.1', {port})\n"
    )
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    local = subprocess.run(
        base, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "CI": ""}
    )
    assert "1 skipped" in local.stdout, local.stdout
    ci = subprocess.run(
        [*base, "-rf"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "CI": "true"}
    )
    assert "1 failed" in ci.stdout and f"Redis is unreachable at 127.0.0.1:{port}" in ci.stdout
