"""`kernel` as a user runs it: a real subprocess, a real installed plugin distribution."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def assert_one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_plugins_lists_installed_and_enabled_with_versions(
    hello_site: Path, run_kernel: Any
) -> None:
    listed = run_kernel(["plugins"], hello_site)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    row = next(line for line in lines if line.startswith("hello "))
    assert row.split() == ["hello", "installed", "kernel-hello-step", "1.0.0"]
    assert "    step clock: provides time" in lines
    assert "    step announcer: requires time" in lines

    enabled = run_kernel(["plugins", "--plugin", "hello"], hello_site)
    row = next(line for line in enabled.stdout.splitlines() if line.startswith("hello "))
    assert row.split()[1] == "enabled"
    assert "hooks: kernel_cli_options, kernel_steps" in enabled.stdout


def test_graph_places_the_custom_step_where_its_requires_say(
    hello_site: Path, run_kernel: Any
) -> None:
    shown = run_kernel(["graph", "--plugin", "hello"], hello_site)
    assert shown.returncode == 0, shown.stderr
    order = [
        line.split()[1]
        for line in shown.stdout.splitlines()
        if line.strip()[:2].strip(".").isdigit()
    ]
    # "announcer" sorts first by name; its requirement on "time" puts "clock" first
    assert order == ["clock", "announcer"]
    assert "plugin hello; requires time; says 'hello'" in shown.stdout

    dot = run_kernel(["graph", "--plugin", "hello", "--dot"], hello_site)
    assert '"clock" -> "announcer";' in dot.stdout


def test_plugin_option_and_settings_reach_the_step(hello_site: Path, run_kernel: Any) -> None:
    shown = run_kernel(["graph", "-p", "hello", "--greeting", "hi there"], hello_site)
    assert "says 'hi there'" in shown.stdout
    shown = run_kernel(["graph", "--plugin=hello", "-s", "hello_greeting=howdy"], hello_site)
    assert "says 'howdy'" in shown.stdout


def test_sigterm_exits_zero_after_stopping_every_step_in_reverse(
    hello_site: Path, tmp_path: Path, kernel_env: Any
) -> None:
    journal = tmp_path / "journal"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kernel",
            "start",
            "--plugin",
            "hello",
            "--greeting",
            "hi",
            "-s",
            f"hello_journal={journal}",
            "-n",
            "w1@%h",
        ],
        env=kernel_env(hello_site),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while "start announcer" not in (journal.read_text() if journal.exists() else ""):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert journal.read_text().splitlines() == [
        "start clock",
        "start announcer hi tick",
        "stop announcer",
        "stop clock",
    ]
    # the banner names the node, the plugins with versions and the step order
    assert "node    : w1@" in out
    assert "plugins : hello 1.0.0" in out
    assert "steps   : clock -> announcer" in out
    assert "warm shutdown" in err


def test_failing_step_exits_nonzero_naming_it_after_rollback(
    hello_site: Path, tmp_path: Path, run_kernel: Any
) -> None:
    journal = tmp_path / "journal"
    result = run_kernel(
        ["start", "-p", "hello", "-s", f"hello_journal={journal}", "-s", "hello_fail_start=yes"],
        hello_site,
    )
    assert result.returncode == 1
    assert "step 'announcer' failed to start: RuntimeError: asked to fail" in result.stderr
    assert journal.read_text().splitlines() == ["start clock", "stop clock"]


def test_misspelled_hook_in_an_installed_plugin(hello_site: Path, run_kernel: Any) -> None:
    result = run_kernel(["start", "--plugin", "hello.broken"], hello_site)
    assert_one_line_error(
        result, "plugin 'hello.broken'", "unknown hook 'kernel_step'", "did you mean 'kernel_steps'"
    )


def test_missing_plugin_says_what_to_install(hello_site: Path, run_kernel: Any) -> None:
    # (a known plugin that is not installed names its distribution: see test_plugins.py)
    assert_one_line_error(
        run_kernel(["graph", "--pool", "nosuch"], hello_site),
        "unknown pool 'nosuch' (worker_pool); choose one of:",
        "threads",
    )
    assert_one_line_error(
        run_kernel(["start", "--plugin", "helo"], hello_site),
        "plugin 'helo' is not installed",
        "did you mean 'hello'?",
    )


def test_unknown_option_names_the_plugin_that_adds_it(hello_site: Path, run_kernel: Any) -> None:
    assert_one_line_error(
        run_kernel(["start", "--greeting", "x"], hello_site), "--greeting", "add --plugin hello"
    )
    assert_one_line_error(run_kernel(["start", "--frobnicate"], hello_site), "--frobnicate")


def test_bad_values_name_the_allowed_ones(hello_site: Path, run_kernel: Any) -> None:
    assert_one_line_error(
        run_kernel(["start", "-p", "hello", "-s", "hello_fail_start=maybe"], hello_site),
        "setting 'hello_fail_start': expected true or false, got 'maybe'",
    )
    assert_one_line_error(
        run_kernel(["start", "--loglevel", "loud"], hello_site), "'loud' is not one of", "debug"
    )
    assert_one_line_error(
        run_kernel(["start", "-s", "hello_greeting=hi"], hello_site), "belongs to plugin 'hello'"
    )


def test_plugins_from_the_environment_and_hook_tracing(hello_site: Path, kernel_env: Any) -> None:
    env = {**kernel_env(hello_site), "KERNEL_PLUGINS": "hello", "KERNEL_TRACE_HOOKS": "1"}
    shown = subprocess.run(
        [sys.executable, "-m", "kernel", "graph"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "clock" in shown.stdout and "announcer" in shown.stdout
    assert "kernel_steps" in shown.stderr  # every hook call is traced
    blocked = subprocess.run(
        [sys.executable, "-m", "kernel", "graph", "--plugin", "no:hello"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert blocked.returncode == 2 and "plugin 'hello' is blocked" in blocked.stderr


def test_installed_broken_plugins_never_break_a_mistake_message(
    hello_site: Path, run_kernel: Any
) -> None:
    # hello.broken, hello.crashing and hello.raising are installed, not enabled, and broken:
    # the hints that look through installed plugins pass over them
    assert_one_line_error(
        run_kernel(["start", "-s", "no_such_key=1"], hello_site),
        "setting 'no_such_key': unknown setting",
    )
    assert_one_line_error(
        run_kernel(["start", "-s", "hello_repeat=2"], hello_site),
        "setting 'hello_repeat': unknown setting; it belongs to plugin 'hello.tuning'",
    )
    assert_one_line_error(run_kernel(["start", "--no-such-option"], hello_site), "--no-such-option")
    listed = run_kernel(["plugins"], hello_site)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    assert "cannot load: plugin 'hello.crashing' (kernel-hello-step) failed to load: " in (
        listed.stdout
    )
    assert "cannot list its steps: RuntimeError: kernel_steps is broken on purpose" in (
        listed.stdout
    )


def test_a_setting_declared_by_hooks_alone_from_the_command_line(
    hello_site: Path, run_kernel: Any
) -> None:
    shown = run_kernel(["graph", "--plugin", "hello.tuning", "-s", "hello_repeat=2"], hello_site)
    assert shown.returncode == 0, shown.stderr
    assert_one_line_error(
        run_kernel(["graph", "--plugin", "hello.tuning", "-s", "hello_repeat=0"], hello_site),
        "setting 'hello_repeat': expected a number of at least 1, got '0'",
    )


def test_the_cores_own_steps_are_listed_and_shown_as_plugins(
    tmp_path: Path, run_kernel: Any
) -> None:
    (tmp_path / "proj.py").write_text(
        f"from kernel import App\napp = App('proj', broker='embedded:///{tmp_path}/b.db')\n"
    )
    listed = run_kernel(["plugins", "-A", "proj:app"], tmp_path)
    rows = {
        line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines() if line[:1] != " "
    }
    for core in ("core.broker", "core.backend", "core.consumer"):
        assert rows[core][:2] == ["enabled", "taskkernel"], listed.stdout
    shown = run_kernel(["graph", "-A", "proj:app", "-P", "solo"], tmp_path)
    assert "consumer   plugin core.consumer; requires broker, backend, pool" in shown.stdout
    blocked = run_kernel(
        ["graph", "-A", "proj:app", "-P", "solo", "-p", "no:core.consumer"], tmp_path
    )
    assert blocked.returncode == 0 and "core.consumer" not in blocked.stdout
