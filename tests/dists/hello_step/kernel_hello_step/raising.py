"""A plugin whose every hook raises, to prove an installed one does not take hints down."""

from __future__ import annotations

from kernel import hookimpl


@hookimpl
def kernel_steps():  # type: ignore[no-untyped-def]
    raise RuntimeError("kernel_steps is broken on purpose")


@hookimpl
def kernel_settings():  # type: ignore[no-untyped-def]
    raise RuntimeError("kernel_settings is broken on purpose")


@hookimpl
def kernel_cli_options():  # type: ignore[no-untyped-def]
    raise RuntimeError("kernel_cli_options is broken on purpose")
