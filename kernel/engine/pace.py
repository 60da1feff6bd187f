"""How long a pool's jobs take lately, and so how many of them fit in a stretch of time."""

from __future__ import annotations

WEIGHT = 0.1  # of the newest job in the moving average


class Pace:
    """A moving average of job run times, kept by a pool to size what it holds ahead.

    Updated from any thread without a lock: a lost update only nudges an estimate."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: float | None = None  # nothing measured yet

    def record(self, seconds: float) -> None:
        average = self.seconds
        self.seconds = seconds if average is None else average + (seconds - average) * WEIGHT

    def fitting(self, budget: float, most: int) -> int:
        """How many jobs run in `budget` seconds at this pace: at least 1, at most `most`;
        1 until a job has been measured, so nothing is held back on a guess."""
        seconds = self.seconds
        if seconds is None:
            return 1
        return max(1, min(most, int(budget / max(seconds, 1e-7))))
