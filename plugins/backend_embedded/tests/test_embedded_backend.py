"""The embedded backend passes the backend contract, across processes and expiry."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernel import App
from kernel.plugin import SUCCESS, Stored, result_meta
from kernel.testing.contracts import BackendContract


class TestEmbeddedBackend(BackendContract):
    @pytest.fixture
    def backend_url(self, tmp_path: Path) -> str:
        return f"embedded:///{tmp_path}/results.db"


def test_another_process_reads_what_one_stored(tmp_path: Path) -> None:
    url = f"embedded:///{tmp_path}/results.db"
    code = (
        "from kernel import App\n"
        "from kernel.plugin import Stored, result_meta\n"
        f"b = App(broker='memory://', backend={url!r}).backend\n"
        "b.store([Stored('t1', 'SUCCESS', b.encode(result_meta('t1', 'SUCCESS', [1, 2])))])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    app = App(broker="memory://", backend=url)
    assert app.AsyncResult("t1").get(timeout=5) == [1, 2]


def test_expired_results_read_as_pending(tmp_path: Path) -> None:
    app = App(broker="memory://", backend=f"embedded:///{tmp_path}/results.db", result_expires=0.2)
    backend = app.backend
    backend.store([Stored("t", SUCCESS, backend.encode(result_meta("t", SUCCESS, 1)))])
    assert app.AsyncResult("t").state == SUCCESS
    time.sleep(0.3)
    assert app.AsyncResult("t").state == "PENDING"


def test_default_url_keeps_results_under_dot_taskkernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend = App(broker="memory://", backend="embedded://").backend
    backend.store([Stored("t", SUCCESS, backend.encode(result_meta("t", SUCCESS, 1)))])
    assert (tmp_path / ".taskkernel" / "results.db").exists()
