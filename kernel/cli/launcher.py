"""The `kernel` command's first step: let the chosen pool monkey-patch before anything loads.

gevent and eventlet must patch the standard library (sockets, threads, time) before other
modules take references to it. A pool that needs this publishes an entry point in the group
`kernel.patches` under its plugin name (``pool.gevent = "kernel_pool_gevent.patch:patch"``);
it runs only when that pool is asked for, so installing such a plugin changes nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

PATCH_GROUP = "kernel.patches"


def requested_pool(argv: Sequence[str]) -> str | None:
    """The value of -P/--pool on the command line, if any (the last one wins)."""
    found = None
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in ("-P", "--pool") and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--pool="):
            found = arg.split("=", 1)[1]
        elif arg.startswith("-P") and len(arg) > 2:
            found = arg[2:]
    return found


def patch_for(argv: Sequence[str]) -> str | None:
    """Run the patch entry point of the requested pool; return its name if one ran."""
    pool = requested_pool(argv)
    if not pool:
        return None
    name = f"pool.{pool}"
    for entry in entry_points(group=PATCH_GROUP, name=name):
        entry.load()()
        return name
    return None


def main() -> None:
    patch_for(sys.argv[1:])
    from .commands import main as cli_main

    cli_main()
