"""Tests for numina_kit.sctir.budget: per-problem deadlines from a whole-run budget, on a fake clock.

Covers the share (up to `stretch` fair shares, a floor promised to later problems), the floor and ceiling clamps, time handed on by early finishers, the end of the budget
(deadline = now, never past the end) and bad arguments. Run: `pytest tests/test_budget.py`.
"""

import pytest

from numina_kit.sctir.budget import TimeBudget
from numina_kit.testing import FakeClock


def budget(clock, **overrides) -> TimeBudget:
    kwargs = {"total_s": 1000.0, "num_problems": 10, "reserve_s": 100.0, "floor_s": 10.0, "ceiling_s": 200.0}
    return TimeBudget(**{**kwargs, **overrides}, clock=clock)


@pytest.mark.parametrize(
    ("overrides", "allotment"),
    [
        ({}, 180.0),  # two fair shares of (1000 - 100) / 10
        ({"stretch": 1.0}, 90.0),  # one fair share
        ({"num_problems": 3}, 200.0),  # min(2 * 900 / 3, 900 - 2 * 10) = 600, cut to the ceiling
        ({"num_problems": 3, "floor_s": 200.0, "ceiling_s": 1000.0}, 500.0),  # 900 - 2 * 200 promised to later ones
        ({"ceiling_s": 50.0}, 50.0),
        ({"floor_s": 120.0}, 120.0),
        ({"num_problems": 1}, 200.0),  # one problem: the ceiling, not the whole 900 s
        ({"num_problems": 1, "ceiling_s": 5000.0}, 900.0),  # never past the end of the budget
    ],
)
def test_first_allotment(overrides, allotment):
    clock = FakeClock()
    b = budget(clock, **overrides)
    assert b.allotment() == pytest.approx(allotment)
    assert b.deadline() == pytest.approx(clock.now + allotment)


def test_early_finishers_leave_their_time_to_later_problems():
    clock = FakeClock()
    b = budget(clock)
    clock.now += 30.0  # used 30 of its 90 s
    b.done()
    assert b.allotment() == pytest.approx(2 * (900 - 30) / 9)


def test_overrun_is_taken_from_later_problems_and_the_end_is_never_passed():
    clock = FakeClock()
    b = budget(clock, floor_s=100.0)
    clock.now = 850.0  # the first problem ran long: 50 s left for 9 problems
    b.done()
    assert b.allotment() == pytest.approx(50.0)  # the floor is cut to what is left
    clock.now = 950.0
    assert b.allotment() == 0.0 and b.deadline() == clock.now


def test_done_more_than_num_problems_keeps_one_share():
    clock = FakeClock()
    b = budget(clock, num_problems=1)
    b.done()
    b.done()
    assert b.problems_left == 1 and b.allotment() == pytest.approx(200.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_problems": 0},
        {"reserve_s": 1000.0},
        {"reserve_s": -1.0},
        {"floor_s": 300.0},
        {"floor_s": -1.0},
        {"stretch": 0.5},
    ],
)
def test_bad_arguments(overrides):
    with pytest.raises(ValueError):
        budget(FakeClock(), **overrides)
