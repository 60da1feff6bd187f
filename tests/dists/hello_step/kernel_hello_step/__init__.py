"""A custom bootstep plugin, published the way a third party would publish one."""

from __future__ import annotations

from pathlib import Path

import attrs
import click

from kernel import Step, hookimpl, setting
from kernel.bootsteps import ServiceKey
from kernel.settings import optional, to_bool, to_str

CLOCK: ServiceKey[str] = ServiceKey("hello.clock")


def _journal(path: str | None, line: str) -> None:
    if path:
        with Path(path).open("a") as fh:
            fh.write(line + "\n")


@attrs.define
class Clock(Step):
    """Provides the `time` role; sorts after `announcer` by name, so only `requires` orders it."""

    name = "clock"
    provides = ("time",)

    hello_journal: str | None = setting(None, convert=optional(to_str), help="file to log to")

    def start(self, worker):  # type: ignore[no-untyped-def]
        worker.services[CLOCK] = "tick"
        _journal(self.hello_journal, "start clock")

    def stop(self, worker):  # type: ignore[no-untyped-def]
        _journal(self.hello_journal, "stop clock")


@attrs.define
class Announcer(Step):
    name = "announcer"
    requires = ("time",)

    hello_journal: str | None = setting(None, convert=optional(to_str), help="file to log to")
    hello_greeting: str = setting("hello", convert=to_str, help="what to announce")
    hello_fail_start: bool = setting(False, convert=to_bool, help="raise in start()")

    def start(self, worker):  # type: ignore[no-untyped-def]
        if self.hello_fail_start:
            raise RuntimeError("asked to fail")
        _journal(
            self.hello_journal, f"start announcer {self.hello_greeting} {worker.services[CLOCK]}"
        )

    def stop(self, worker):  # type: ignore[no-untyped-def]
        _journal(self.hello_journal, "stop announcer")

    def describe(self) -> str:
        return f"says {self.hello_greeting!r}"


@hookimpl
def kernel_steps():  # type: ignore[no-untyped-def]
    return [Clock, Announcer]


@hookimpl
def kernel_cli_options():  # type: ignore[no-untyped-def]
    return [click.Option(["--greeting", "hello_greeting"], help="What the announcer says.")]
