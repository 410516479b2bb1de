"""Tests for numina_kit.sctir.budget: per-problem deadlines from a whole-run budget, on a fake clock.

Covers the share (time left split between the hard problems expected to come and the easy ones, which stop early),
the floor promised to every later problem (shrinking to an equal share when time is short, so no problem gets
nothing while time remains), the overrun learned and kept for the later hard problems, the fair share without an
early-stop rule, the mix of the rule and the fair share with only one way to end early, the ceiling (a competition's
per-call limit), what the budget learns from finished problems, the end of the budget, and bad arguments (of the
class, and of the simulation's command line, benchmarks/budget.py).
"""

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from numina_kit.errors import InputError
from numina_kit.sctir.budget import CLAMP_FLOOR, TimeBudget
from numina_kit.testing import FakeClock


def budget(clock, **overrides) -> TimeBudget:
    return TimeBudget(**{"total_s": 17400.0, "num_problems": 50, "reserve_s": 0.0, **overrides}, clock=clock)


def finish(b: TimeBudget, clock: FakeClock, seconds: float) -> None:
    """Run one problem for `seconds` (or to its deadline, if sooner)."""
    deadline = b.deadline()
    clock.now = min(clock.now + seconds, deadline)
    b.done()


def test_first_allotment_shares_the_run_between_expected_hard_and_easy_problems():
    b = budget(FakeClock())
    share = 17400 / 50
    later_hard = 15 * 49 / 50  # 30% of 50 problems are expected to be hard
    expected = (17400 - (49 - later_hard) * 0.6 * share) / (1 + later_hard)  # an easy one: 0.6 share, a priori
    assert b.allotment() == pytest.approx(expected)
    assert share < b.allotment() < 3 * share  # between the fair share and the clamp rule's 900 s


def test_the_easy_time_prior_moves_time_between_the_first_problems_and_the_later_ones():
    """Assuming easy problems take a whole fair share starts the run at a fair share; assuming they take less gives
    the first problems the time the easy ones are expected to save."""
    fair = budget(FakeClock(), easy_share=1.0)
    assert fair.allotment() == pytest.approx(17400 / 50)
    assert budget(FakeClock(), easy_share=0.3).allotment() > budget(FakeClock()).allotment() > fair.allotment()


def test_easy_problems_leave_their_time_to_the_hard_ones():
    clock = FakeClock()
    b = budget(clock)
    first = b.allotment()
    for _ in range(20):
        finish(b, clock, 60.0)  # early stops: a minute each
    assert not any(p.hard for p in b.history)
    assert b.allotment() > first


def test_problems_that_ran_to_their_deadline_count_as_the_expected_hard_ones():
    clock = FakeClock()
    b = budget(clock)
    for _ in range(15):  # the 15 expected hard problems come first and use all they get
        finish(b, clock, 10**6)
    assert all(p.hard for p in b.history) and b.remaining() > 0
    # no hard problem is expected any more: the next one gets the time left less the easy ones' expected time
    assert b.allotment() == pytest.approx(b.remaining() - 34 * b.floor())


@pytest.mark.parametrize("placement", ["front", "back", "random"])
def test_never_nothing_while_time_remains_and_never_past_the_end(placement):
    clock = FakeClock()
    b = budget(clock, total_s=3000.0)  # far too short: most problems get their floor
    needs = [10**6] * 15 + [120.0] * 35
    if placement == "back":
        needs.reverse()
    elif placement == "random":
        random.Random(0).shuffle(needs)
    for need in needs:
        left = b.remaining()
        allotted = b.allotment()
        assert allotted <= left + 1e-9
        if left > 0:
            assert allotted >= min(b.floor(), left) - 1e-9 and b.floor() > 0
        finish(b, clock, need)
    assert clock.now <= b.end + 1e-9


def test_the_floor_is_promised_to_every_later_problem():
    clock = FakeClock()
    b = budget(clock, floor_s=300.0)
    clock.now = 17400 - 49 * 300 - 400  # behind schedule: 400 s more than the floors of the later problems
    assert b.share() > 400 and b.allotment() == pytest.approx(400.0)  # the later ones keep their 300 s each
    clock.now = 17400 - 10 * 50  # far behind: 500 s left for 50 problems
    assert b.floor() == pytest.approx(10.0) and b.allotment() == pytest.approx(10.0)  # an equal share each


def test_an_overrun_is_kept_for_every_later_hard_problem_and_before_the_end():
    """The synchronous loop finishes the round it started: the mean overrun seen is promised to every later problem
    expected to run to its deadline (the expected hard ones); one that stops early does not overrun."""
    clock = FakeClock()
    b = budget(clock, floor_s=100.0, hard_share=0.1, easy_share=0.0)  # 5 hard problems expected
    clock.now = b.deadline() + 100.0  # ran 100 s past its deadline
    b.done()
    assert b.history[0].hard and b.overrun() == pytest.approx(100.0)
    assert b.later_hard() == pytest.approx(4 * 48 / 49)  # 4 hard ones left, spread over the 49 problems to come
    later = 48 * 100 + 100 * b.later_hard()  # 48 later floors, and the overruns of the hard ones among them
    clock.now = 17400 - (later + 100 + 400)  # 400 s more than those and this one's overrun
    assert b.share() > 400 and b.allotment() == pytest.approx(400.0)
    clock.now += 200.0  # now 200 s more than the later problems' floors and overruns: this one gets only that
    assert b.allotment() == pytest.approx(200.0)
    one_left = budget(FakeClock(), num_problems=2, floor_s=100.0)
    one_left.clock.now = one_left.deadline() + 50.0
    one_left.done()
    assert one_left.allotment() == pytest.approx(one_left.remaining() - 50.0)  # ends its overrun before the end
    one_left.clock.now = one_left.end - 30.0  # less time left than the overrun seen: the last one still gets it all
    assert one_left.allotment() == pytest.approx(30.0)


def test_the_next_problem_keeps_the_overrun_even_when_no_hard_one_is_expected():
    """A problem that overruns eats into the next one's time: its overrun is kept for at least one later problem."""
    clock = FakeClock()
    b = budget(clock, num_problems=3, floor_s=100.0, hard_share=0.0, easy_share=0.0)
    clock.now = b.deadline() + 50.0  # the first overran by 50 s; no hard problem is expected any more
    b.done()
    assert b.later_hard() == 0.0 and b.overrun() == pytest.approx(50.0)
    clock.now = b.end - 1000.0
    assert b.allotment() == pytest.approx(1000.0 - 50.0 - (100.0 + 50.0))  # its overrun, the next one's floor + o


@pytest.mark.parametrize("placement", ["front", "back", "random"])
def test_without_an_early_stop_rule_every_problem_gets_the_fair_share(placement):
    """No early stop: nothing is saved for later, so each allotment is time left / problems left, whatever ran before
    (hard problems that overran their deadlines, easy ones that finished early) and in any order."""
    clock = FakeClock()
    b = budget(clock, stop_rule=False, cancels=False)
    assert b.allotment() == pytest.approx(17400 / 50) and budget(FakeClock()).allotment() > 17400 / 50
    needs = [10**6] * 15 + [120.0] * 35
    if placement == "back":
        needs.reverse()
    elif placement == "random":
        random.Random(1).shuffle(needs)
    for i, need in enumerate(needs):
        fair = b.remaining() / b.problems_left
        expected = fair if i < 49 else b.remaining() - b.overrun()  # the last one ends its overrun before the end
        assert b.allotment() == pytest.approx(expected)
        deadline = b.deadline()
        clock.now = min(clock.now + need, deadline + 30.0)  # the hard ones overrun by a synchronous round
        b.done()
    assert b.overrun() == pytest.approx(30.0) and sum(p.hard for p in b.history) == 15


def test_without_an_early_stop_rule_the_floor_ceiling_and_end_still_hold():
    """The fair share is never below the floor (the floor is at most that share), is capped by the ceiling, and the
    last problem still ends its expected overrun before the end unless that leaves it less than its floor."""
    clock = FakeClock()
    b = budget(clock, stop_rule=False, cancels=False, floor_s=300.0, ceiling_s=200.0)
    assert b.allotment() == pytest.approx(200.0)  # the ceiling, below the 348 s fair share and the 300 s floor
    clock.now = 17400 - 50 * 10  # far behind: 500 s left for 50 problems
    assert b.floor() == pytest.approx(10.0) and b.allotment() == pytest.approx(10.0)
    last = budget(FakeClock(), num_problems=2, stop_rule=False, cancels=False, floor_s=100.0)
    last.clock.now = last.deadline() + 50.0  # the first overran its deadline by 50 s
    last.done()
    assert last.allotment() == pytest.approx(last.remaining() - 50.0)
    last.clock.now = last.end - 30.0  # less left than the overrun: the last one still gets all of it
    assert last.allotment() == pytest.approx(30.0)
    last.clock.now = last.end + 1.0
    assert last.allotment() == 0.0


@pytest.mark.parametrize(("stop_rule", "cancels"), [(True, False), (False, True)])
@pytest.mark.parametrize("partial_share", [0.0, 0.6, 1.0])
def test_with_only_one_way_to_end_early_part_of_the_rules_departure_from_the_fair_share_is_kept(
    stop_rule, cancels, partial_share
):
    """The synchronous loop with early stops, or the async engine without them: the allotment is fair +
    partial_share x (the rule's - fair), after hard problems that overran and easy ones that stopped early alike;
    never below the floor; a ceiling caps both before they are mixed. The rule is the default budget's (both ways);
    with neither, the allotment is the fair share."""
    for ceiling in (None, 400.0):
        clock, rule_clock = FakeClock(), FakeClock()
        part = budget(
            clock, stop_rule=stop_rule, cancels=cancels, partial_share=partial_share, floor_s=300.0, ceiling_s=ceiling
        )
        rule = budget(rule_clock, floor_s=300.0, ceiling_s=ceiling)
        for used in (2000.0, 100.0, 100.0, 3000.0):  # the same history for both, then compare the next allotment
            for b, c in ((part, clock), (rule, rule_clock)):
                b.deadline()
                c.now += used
                b.done()
            fair = min(part.remaining() / part.problems_left, ceiling or math.inf)
            expected = fair + partial_share * (rule.allotment() - fair)
            assert part.allotment() == pytest.approx(expected) and part.allotment() >= part.floor()
    assert budget(FakeClock(), stop_rule=stop_rule, cancels=cancels).allotment() > 17400 / 50  # hard ones expected
    assert budget(FakeClock(), stop_rule=False, cancels=False).allotment() == pytest.approx(17400 / 50)


def test_the_default_floor_is_the_clamp_rule_scaled_to_the_budget():
    b = budget(FakeClock(), total_s=36000.0, reserve_s=3600.0)
    assert b.floor() == pytest.approx(CLAMP_FLOOR * 32400 / 50)
    assert budget(FakeClock()).floor() == pytest.approx(300.0)  # AIMO-3: 300 s on 17,400 s


@pytest.mark.parametrize(("ceiling", "expected"), [(None, 8700.0), (600.0, 600.0), (20000.0, 8700.0)])
def test_the_ceiling_caps_one_problem(ceiling, expected):
    b = budget(FakeClock(), ceiling_s=ceiling, num_problems=2, hard_share=1.0)  # both hard: half each
    assert b.allotment() == pytest.approx(expected)


def test_a_per_call_ceiling_holds_even_when_one_problem_is_left():
    b = budget(FakeClock(), num_problems=1, ceiling_s=1740.0)
    assert b.allotment() == 1740.0 and b.deadline() == 1740.0


def test_past_the_end_the_deadline_is_now():
    clock = FakeClock()
    b = budget(clock, total_s=1000.0, num_problems=3)
    clock.now = 2000.0
    assert b.allotment() == 0.0 and b.deadline() == clock.now
    b.done()
    assert b.solved == 1 and b.history[0].hard


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_problems": 0},
        {"reserve_s": 17400.0},
        {"reserve_s": -1.0},
        {"floor_s": -1.0},
        {"ceiling_s": -5.0},
        {"hard_share": 1.5},
        {"easy_share": -0.1},
        {"partial_share": 1.2},
        {"partial_share": -0.1},
    ],
)
def test_bad_arguments_are_input_errors(overrides):
    with pytest.raises(InputError):
        budget(FakeClock(), **overrides)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["x"], "argument runs: invalid int value: 'x'"),
        (["5", "y"], "argument first_seed: invalid int value: 'y'"),
        (["1"], "runs must be at least 2"),
        (["5", "-3"], "first_seed must be >= 0"),
        (["5", "--confirm-runs", "1"], "--confirm-runs must be 0 or at least 2"),
    ],
)
def test_the_simulation_rejects_bad_input_in_one_line(argv, message):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "budget.py"
    result = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
