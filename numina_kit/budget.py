"""The time budget of a whole run: how long each problem may take so that all of them fit in the limit.

Kaggle gives AIMO-1 9 hours for 50 problems, served one at a time in an unknown order. Numina used a fixed 48x4 for
every problem and no clock at all (numina.md §2); the AIMO-2/3 leaders hand each problem a share of the time that
is left (peers.md §3, §6, §12). `TimeBudget` does the latter:

    deadline = now + clamp((time left - reserve) / problems left, floor, ceiling), never past (end - reserve)

A problem that finishes early leaves its time to the problems after it; one that overruns its deadline (by the
round running when the deadline passed) takes it from them. The reserve absorbs the overrun of the last problems
and the time outside `solve` (model loading, the API), so size it to at least one round plus that overhead.
When no time is left a problem gets a deadline of now, `solve` runs no round and submits its fallback answer.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field


NINE_HOURS = 9 * 3600.0


@dataclass
class TimeBudget:
    """Hands out per-problem deadlines on `clock` from a whole-run budget that starts when the object is made."""

    total_s: float = NINE_HOURS
    num_problems: int = 50
    reserve_s: float = 15 * 60.0  # kept back for overruns and loading (Numina declared 9 h - 15 min)
    floor_s: float = 60.0  # the least a problem is given while time remains
    ceiling_s: float = 1800.0  # the most a problem is given, so early ones cannot starve late ones
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=float("nan"))
    solved: int = 0

    def __post_init__(self) -> None:
        if self.num_problems < 1:
            raise ValueError(f"num_problems must be >= 1, got {self.num_problems}")
        if not 0 <= self.reserve_s < self.total_s:
            raise ValueError(f"reserve_s must be in [0, total_s), got {self.reserve_s}")
        if not 0 <= self.floor_s <= self.ceiling_s:
            raise ValueError(f"need 0 <= floor_s <= ceiling_s, got {self.floor_s} and {self.ceiling_s}")
        if self.started != self.started:  # NaN: start now
            self.started = self.clock()

    @property
    def end(self) -> float:
        """The time on `clock` by which all problems must be done, reserve excluded."""
        return self.started + self.total_s - self.reserve_s

    @property
    def problems_left(self) -> int:
        return max(self.num_problems - self.solved, 1)

    def remaining(self) -> float:
        """Seconds left before `end` (negative once past it)."""
        return self.end - self.clock()

    def allotment(self) -> float:
        """Seconds the next problem gets: its share of what is left, clamped, and never past `end`."""
        left = self.remaining()
        share = min(max(left / self.problems_left, self.floor_s), self.ceiling_s)
        return max(min(share, left), 0.0)

    def deadline(self) -> float:
        """The absolute time on `clock` at which the next problem must stop generating."""
        return self.clock() + self.allotment()

    def done(self) -> None:
        """Record that a problem is finished, so the time left is shared among one problem fewer."""
        self.solved += 1
