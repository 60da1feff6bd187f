"""A plugin made of hooks alone: it declares a setting without contributing a step."""

from __future__ import annotations

from kernel.plugin import Setting, at_least, hookimpl


@hookimpl
def kernel_settings():  # type: ignore[no-untyped-def]
    return [Setting("hello_repeat", 1, at_least(1), "how many times to say it")]
