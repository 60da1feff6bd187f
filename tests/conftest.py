"""Shared helpers: the test plugin distribution, installed for real, and running `kernel`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

DISTS = Path(__file__).parent / "dists"


@pytest.fixture(scope="session")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed `kernel-hello-step` distribution (entry points and all)."""
    root = tmp_path_factory.mktemp("hello")
    source = shutil.copytree(DISTS / "hello_step", root / "src")
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
    )
    return site


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), env.get("PYTHONPATH", "")])
    env.pop("KERNEL_PLUGINS", None)
    return env


def _run(
    args: Sequence[str], *paths: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args],
        env=_env(*paths),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def kernel_env() -> Callable[..., dict[str, str]]:
    """`kernel_env(*site_dirs)`: the environment for a `kernel` subprocess seeing those dirs."""
    return _env


@pytest.fixture
def run_kernel() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_kernel(args, *site_dirs)`: run `python -m kernel ARGS` and capture its output."""
    return _run
