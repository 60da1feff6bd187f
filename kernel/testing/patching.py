"""What `kernel` runs before anything else loads, for tests of pools that monkey-patch."""

from __future__ import annotations

from ..cli.launcher import patch_for

__all__ = ["patch_for"]
