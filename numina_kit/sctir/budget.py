"""The time budget of a whole run: how long each problem may take so that all of them fit in the limit.

Kaggle gives AIMO-1 9 hours for 50 problems, served one at a time in an unknown order. Numina used a fixed 48x4 for
every problem and no clock at all (numina.md §2); the AIMO-2/3 leaders hand each problem a share of the time that
is left (peers.md §3, §6, §12). `TimeBudget` does the latter:

    share    = min(stretch x time left / problems left, time left - floor x (problems left - 1))
    deadline = now + clamp(share, floor, ceiling), never past the end

where "time left" runs to the end of the budget minus the reserve. A problem may take up to `stretch` (2) times
its fair share, as long as every later problem is still promised `floor` seconds (the AIMO-3 baseline keeps such
a promise, peers.md §6), and never more than `ceiling`. A hard problem early in a run with time to spare gets the
time it needs; when time is short, problems get about their fair share rather than a greedy few taking it all. A problem that finishes early leaves its time to the problems after it; one that overruns its deadline
(by the round running when the deadline passed) takes it from them. The reserve absorbs the overrun of the last problems
and the time outside `solve` (model loading, the API), so size it to at least one round plus that overhead.
When no time is left a problem gets a deadline of now, `solve` runs no round and submits its fallback answer.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from numina_kit.errors import InputError


NINE_HOURS = 9 * 3600.0


@dataclass
class TimeBudget:
    """Hands out per-problem deadlines on `clock` from a whole-run budget that starts when the object is made."""

    total_s: float = NINE_HOURS
    num_problems: int = 50
    reserve_s: float = 15 * 60.0  # kept back for overruns and loading (Numina declared 9 h - 15 min)
    floor_s: float = 120.0  # promised to every later problem; the least a problem gets while time remains
    ceiling_s: float = 1200.0  # the most one problem gets (about twice the 9 h / 50 share)
    stretch: float = 2.0  # how many fair shares one problem may take
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=float("nan"))
    solved: int = 0

    def __post_init__(self) -> None:
        if self.num_problems < 1:
            raise InputError(f"num_problems must be >= 1, got {self.num_problems}")
        if not 0 <= self.reserve_s < self.total_s:
            raise InputError(f"reserve_s must be in [0, total_s), got {self.reserve_s}")
        if self.stretch < 1:
            raise InputError(f"stretch must be >= 1, got {self.stretch}")
        if not 0 <= self.floor_s <= self.ceiling_s:
            raise InputError(f"need 0 <= floor_s <= ceiling_s, got {self.floor_s} and {self.ceiling_s}")
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
        """Seconds the next problem gets: up to `stretch` fair shares while `floor_s` stays promised to each later
        problem, clamped to [floor_s, ceiling_s], and never past `end`."""
        left, n = self.remaining(), self.problems_left
        share = min(self.stretch * left / n, left - self.floor_s * (n - 1))
        share = min(max(share, self.floor_s), self.ceiling_s)
        return max(min(share, left), 0.0)

    def deadline(self) -> float:
        """The absolute time on `clock` at which the next problem must stop generating."""
        return self.clock() + self.allotment()

    def done(self) -> None:
        """Record that a problem is finished, so the time left is shared among one problem fewer."""
        self.solved += 1
