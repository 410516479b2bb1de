"""The time budget of a whole run: how long each problem may take so that all of them fit in the limit.

Kaggle serves 50 problems one at a time in an unknown order (AIMO-1: 9 h; AIMO-2 and AIMO-3: 5 h). Some are easy:
with an early stop (k answers agree, or the leader cannot be caught) they end long before any deadline. Others
are hard and use all the time they get. `TimeBudget` spends what the easy ones save on the hard ones:

    X = (time left - (later easy problems) x e) / (1 + later hard problems)

where the later hard problems are the `hard_share` x N hard problems expected in the run, less those already seen
(a problem that ran to its deadline counts as hard), and e is the time an easy problem takes, learned from the
problems that stopped early (before any has, `easy_share` of a fair share). X is then kept so that every later
problem is still promised its floor, at least that floor itself, at most `ceiling_s`, and never past the end:

    floor    = min(floor_s, time left / problems left)     (default floor_s: 300/348 of the first fair share)
    o        = mean overrun (time used - time allotted) of the problems that ran to their deadline
    H        = the hard problems expected among the later ones, at least 1 while any problem is to come
    deadline = now + min(max(min(X, left - o - floor x (problems left - 1) - o x H), floor), ceiling_s,
                         max(left - o, floor))

The overrun o is what the synchronous loop adds to a deadline (a started round runs to its end; about 0 with the
async engine, which cancels at the deadline). Only a problem that runs to its deadline overruns it, so o is kept
back for the H later hard problems, not for every later one (an easy problem stops early, inside its allotment),
and for at least the next one (an overrun eats into the next problem's time). The current problem must end, overrun
included, before the end of the run, unless that would leave it less than its floor.

Two facts about the run decide how much of that rule is used: whether an early-stop rule (or a decided vote) can end
a problem (`stop_rule`; `numina_kit.sctir.loop.has_stop_rule`), and whether the engine cancels a problem at its
deadline (`cancels`: the async engine; `numina_kit.sctir.loop.runs_async`). The notebook passes both.

With neither (`ends_early` is False: the synchronous loop without an early-stop rule) a problem ends before its
deadline only when every candidate does, within the same rounds, so nothing is saved to spend elsewhere and the
prior that hard problems come later only takes time from them: every problem then gets the fair share, time left /
problems left, under the same ceiling and end of run (the floor never binds: it is at most that share). The async
engine without an early-stop rule does save time (a problem ends once its candidates are all done, without waiting
each round for the slowest one), and on the simulation the fair share there lost to the clamp rule with AIMO-3's
hard problems first.

With only one of them the allotment is a fair share plus `partial_share` (0.6) of the rule's departure from it; the
whole rule needs both. Under the synchronous loop with an early stop, time moved to a problem also moves the overrun
of the round it lets start, and buys whole rounds only: on the simulation the full rule gave the first 45 problems
about 80 s more than a fair share each and left the last five about half of one, losing to the fair share with
AIMO-2's long rounds, while the fair share itself loses to the clamp rule with AIMO-3's hard problems first. Under
the async engine without an early-stop rule only the problems whose candidates all finish save time, and the full
rule lost to the fair share on the simulation's falling curve (docs/sctir.md).

`easy_share` (0.6) is the time an easy problem is assumed to take before any has stopped early. Lower values give
the first problems more than a fair share, which hard problems placed last then lack where easy problems run long (no
early stop, or a synchronous loop whose rounds wait for the slowest candidate); higher ones give hard problems placed
first less than the clamp rule's three floors. The same value serves both engines: on the simulation's tuning seeds
no per-engine value removed the cells in which this rule loses (docs/sctir.md).

"Time left" runs to the end of the budget minus the reserve. The floor is the AIMO-3 winners' rule
(`clamp(time left - 300 x (problems left - 1), 300, 900)` on 17,400 s keeps 300 s for every problem to come);
shrinking it to an equal share when time is short means no problem is left with nothing while time remains.
`benchmarks/budget.py` compares this rule with the clamp rule and the fair share on simulated runs with the hard
problems placed first, in the middle, last and at random (docs/sctir.md says how it was chosen, and on which seeds).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from numina_kit.errors import InputError


NINE_HOURS = 9 * 3600.0
CLAMP_FLOOR = 300 / 348  # the AIMO-3 winners' 300 s per later problem, as a share of their fair share (17,400 s / 50)


@dataclass
class Finished:
    """What the budget learned from one finished problem."""

    allotted: float
    used: float
    hard: bool  # it ran until its deadline (no early stop, not all candidates done)


@dataclass
class TimeBudget:
    """Hands out per-problem deadlines on `clock` from a whole-run budget that starts when the object is made.

    Call `deadline()` when a problem arrives and `done()` when it is answered; the budget learns from the time each
    problem used. `ceiling_s` caps one problem (set it to a competition's per-call limit); `floor_s` defaults to
    300/348 of the first fair share (the AIMO-3 rule's 300 s on 17,400 s for 50 problems).
    """

    total_s: float = NINE_HOURS
    num_problems: int = 50
    reserve_s: float = 15 * 60.0  # kept back for loading, the API and overruns
    floor_s: float | None = None  # promised to every later problem while time allows
    ceiling_s: float | None = None  # the most one problem gets
    hard_share: float = 0.3  # problems expected to run to their deadline
    easy_share: float = 0.6  # time an easy problem takes before any is seen, in fair shares (see above)
    prior_weight: float = 3.0  # how many problems the easy-time prior counts for
    hard_margin_s: float = 10.0  # a problem that ends this close to its deadline counts as hard
    stop_rule: bool = True  # an early-stop rule or a decided vote can end a problem before its deadline
    cancels: bool = True  # the engine cancels a problem at its deadline (async); False: the synchronous loop
    partial_share: float = 0.6  # with only one of those two, the share of the rule's departure from a fair share kept
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=float("nan"))
    history: list[Finished] = field(default_factory=list)
    _problem: tuple[float, float] | None = field(default=None, init=False, repr=False)  # (start, allotted) now open

    def __post_init__(self) -> None:
        if self.num_problems < 1:
            raise InputError(f"num_problems must be >= 1, got {self.num_problems}")
        if not 0 <= self.reserve_s < self.total_s:
            raise InputError(f"reserve_s must be in [0, total_s), got {self.reserve_s}")
        for name in ("floor_s", "ceiling_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"{name} must be >= 0, got {value}")
        if not 0 <= self.hard_share <= 1:
            raise InputError(f"hard_share must be in [0, 1], got {self.hard_share}")
        if self.easy_share < 0:
            raise InputError(f"easy_share must be >= 0, got {self.easy_share}")
        if not 0 <= self.partial_share <= 1:
            raise InputError(f"partial_share must be in [0, 1], got {self.partial_share}")
        if self.started != self.started:  # NaN: start now
            self.started = self.clock()
        self.first_share = (self.total_s - self.reserve_s) / self.num_problems

    @property
    def ends_early(self) -> bool:
        """Whether a problem can end before its deadline, leaving time to later ones; if not, each gets a fair share."""
        return self.stop_rule or self.cancels

    @property
    def end(self) -> float:
        """The time on `clock` by which all problems must be done, reserve excluded."""
        return self.started + self.total_s - self.reserve_s

    @property
    def solved(self) -> int:
        return len(self.history)

    @property
    def problems_left(self) -> int:
        return max(self.num_problems - self.solved, 1)

    def remaining(self) -> float:
        """Seconds left before `end` (negative once past it)."""
        return self.end - self.clock()

    def floor(self) -> float:
        """What every problem still to come is promised: `floor_s`, or an equal share when time is short."""
        floor = CLAMP_FLOOR * self.first_share if self.floor_s is None else self.floor_s
        return max(min(floor, self.remaining() / self.problems_left), 0.0)

    def later_hard(self) -> float:
        """How many of the later problems are expected to run to their deadline (hard ones not yet seen)."""
        n, hard_seen = self.problems_left, sum(p.hard for p in self.history)
        hard_left = min(max(self.hard_share * self.num_problems - hard_seen, 0.0), n)
        return hard_left * (n - 1) / n

    def share(self) -> float:
        """X above: the time left shared between the hard problems expected among the rest and the easy ones."""
        left, n, later_hard = self.remaining(), self.problems_left, self.later_hard()
        easy = [p.used for p in self.history if not p.hard]
        prior = self.easy_share * self.first_share
        easy_s = (sum(easy) + prior * self.prior_weight) / (len(easy) + self.prior_weight)
        return (left - (n - 1 - later_hard) * easy_s) / (1 + later_hard)

    def overrun(self) -> float:
        """How far past their deadlines the problems that ran to them went, on average (0 before any did)."""
        over = [max(p.used - p.allotted, 0.0) for p in self.history if p.hard]
        return sum(over) / len(over) if over else 0.0

    def allotment(self) -> float:
        """Seconds the next problem gets (see the module docstring); 0 once the budget is spent."""
        left, floor, over = self.remaining(), self.floor(), self.overrun()
        fair = self._capped(left / self.problems_left)
        if self.ends_early:
            later = self.problems_left - 1
            promised = floor * later + over * max(self.later_hard(), min(later, 1))  # the next may follow an overrun
            allotted = self._capped(max(min(self.share(), left - over - promised), floor))
            if not (self.stop_rule and self.cancels):  # keep only part of the rule's departure from a fair share
                allotted = fair + self.partial_share * (allotted - fair)
        else:  # nothing is saved to redistribute: the fair share
            allotted = fair
        return max(min(allotted, max(left - over, floor)), 0.0)  # never less than the floor while time remains

    def _capped(self, seconds: float) -> float:
        return seconds if self.ceiling_s is None else min(seconds, self.ceiling_s)

    def deadline(self) -> float:
        """The absolute time on `clock` at which the next problem must stop; starts that problem's clock."""
        now, allotted = self.clock(), self.allotment()
        self._problem = (now, allotted)
        return now + allotted

    def done(self) -> None:
        """Record that the problem is finished: the time it used, and whether it ran to its deadline."""
        now = self.clock()
        start, allotted = self._problem if self._problem is not None else (now, 0.0)
        used = now - start
        self.history.append(Finished(allotted, used, hard=used >= allotted - self.hard_margin_s))
        self._problem = None
