"""The pool guide's code, run as written: its pool passes PoolContract and maxtasks recycles it."""

from __future__ import annotations

import collections
import re
import sys
import time
from pathlib import Path
from types import ModuleType

from kernel import App, Worker
from kernel.testing.pool_probes import NamedPlugin, slot_id

ROOT = Path(__file__).resolve().parent.parent
GUIDES = [ROOT / "README.md"]  # Writing a plugin, Writing a pool


def guide_code(first_line: str) -> str:
    """The code block of the pool guide that opens with `first_line`."""
    for guide in GUIDES:
        if guide.exists():
            blocks = re.findall(r"```python\n(.*?)```", guide.read_text(), re.S)
            found = [block for block in blocks if block.startswith(first_line)]
            if found:
                (code,) = found
                return code
    raise AssertionError(f"no code block opens with {first_line!r} in {GUIDES}")


def guide_module(first_line: str, name: str) -> ModuleType:
    module = ModuleType(name)
    exec(compile(guide_code(first_line), f"<the pool guide: {name}>", "exec"), module.__dict__)
    return module


mypool = guide_module("# kernel_mypool/__init__.py", "kernel_mypool")
sys.modules["kernel_mypool"] = mypool  # the guide's test imports it by this name
# the guide's contract test, collected here as it would be in the pool's own tests
TestMyPool = guide_module("# tests/test_mypool.py", "test_mypool").TestMyPool


def test_maxtasks_recycles_the_guides_pool_without_losing_a_task(tmp_path: Path) -> None:
    app = App(
        "guide", broker=f"embedded:///{tmp_path}/b.db", backend=f"embedded:///{tmp_path}/r.db"
    )

    @app.task
    def where(n: int) -> tuple[int, str]:
        return n, slot_id()

    worker = Worker(
        app=app,
        plugins=[NamedPlugin(mypool, "pool.mypool"), "maxtasks"],
        settings={
            "worker_pool": "mypool",
            "worker_concurrency": 2,
            "worker_max_tasks_per_child": 2,
        },
    )
    worker.start()
    try:
        ran = [r.get(timeout=30) for r in [where.delay(n) for n in range(20)]]
    finally:
        worker.stop()
        app.close()
    assert sorted(n for n, _ in ran) == list(range(20))  # every result arrived
    per_slot = collections.Counter(slot for _, slot in ran)
    assert max(per_slot.values()) <= 2, per_slot  # no thread ran past its bound
    assert len(per_slot) >= 10  # so the slots were replaced, 10 times at least


def test_the_guides_pace_asks_for_more_once_jobs_prove_fast() -> None:
    paced = guide_module("import time\nfrom kernel.plugin import Pace", "paced").Paced(2)
    assert paced.ahead == 2  # nothing measured: one job per slot
    for _ in range(100):
        paced.run(lambda x: x, 1)
    assert paced.ahead > 2 * 8
    for _ in range(60):
        paced.run(time.sleep, 0.005)
    assert paced.ahead == 2  # a slow job fills its 2 ms alone


def test_the_guides_time_limit_declaration_names_both_limits() -> None:
    limits = guide_module("from kernel.plugin import hookimpl", "limits")
    assert limits.kernel_task_options() == ["time_limit", "soft_time_limit"]
