"""The plan of the house holds: layers import downwards, no cycles, plugins use the one door."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROKERNEL_BUDGET = 1500  # lines: the microkernel stays small enough to read in a sitting
PUBLIC = ("kernel", "kernel.plugin", "kernel.testing")


def test_the_import_contracts_hold() -> None:
    # pyproject.toml [tool.importlinter]: layers, no run-time cycles, plugins through the door
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command())",
            "--no-cache",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 kept, 0 broken" in run.stdout


MICROKERNEL = (
    "catalog",
    "errors",
    "graph",
    "hints",
    "hookspecs",
    "lifecycle",
    "manager",
    "settings",
)


def microkernel_files() -> list[Path]:
    """The microkernel: the modules the layers contract lists at the bottom, and bootsteps/."""
    top = [ROOT / "kernel" / f"{name}.py" for name in MICROKERNEL]
    return sorted([*top, *(ROOT / "kernel" / "bootsteps").rglob("*.py")])


def test_every_top_level_module_is_placed() -> None:
    # a new module at the top of kernel/ is either microkernel (counted above) or a door
    doors = {"__init__", "__main__", "plugin", "exceptions", "states", "result"}
    top = {path.stem for path in (ROOT / "kernel").glob("*.py")}
    assert top - doors == set(MICROKERNEL)


def test_the_microkernel_stays_small() -> None:
    lines = sum(len(path.read_text().splitlines()) for path in microkernel_files())
    assert lines <= MICROKERNEL_BUDGET, f"the microkernel has {lines} lines"


def _kernel_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] == "kernel"]
    return found


def test_plugin_code_and_tests_use_only_the_public_modules() -> None:
    # import-linter reads the plugin packages; this reads everything under plugins/, tests too
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "plugins").rglob("*.py"))
        for line, name in _kernel_imports(path)
        if not (name in PUBLIC or name.startswith("kernel.testing."))
    ]
    assert wrong == []
