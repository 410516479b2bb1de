"""The `predict` endpoint (numina_kit.kaggle.predict): it never raises and always answers in range under injected
faults, answers by the budget's deadline, caps every deadline at the competition's per-call limit (AIMO-2: 30 min),
and abandons a solver that overruns."""

import logging
import threading
import time

import pandas as pd
import polars as pl
import pytest

from numina_kit.answers import COMPETITIONS
from numina_kit.errors import InputError
from numina_kit.kaggle import predict as kaggle
from numina_kit.sctir.budget import TimeBudget
from numina_kit.testing import FakeClock


def solver_ok(problem, deadline):
    return 7


def solver_raises(problem, deadline):
    raise RuntimeError("CUDA error: device-side assert triggered")


def solver_out_of_range(problem, deadline):
    return 123456


def solver_none(problem, deadline):
    return None


def solver_text(problem, deadline):
    return "12"


def solver_bool(problem, deadline):
    return True


def solver_negative(problem, deadline):
    return -4


def solver_numpy(problem, deadline):
    import numpy as np

    return np.int64(7)


@pytest.mark.parametrize("competition", ["aimo1", "aimo2", "aimo3"])
@pytest.mark.parametrize(
    ("solver", "expected_source"),
    [
        (solver_ok, "solver"),
        (solver_numpy, "solver"),
        (solver_raises, "fallback"),
        (solver_out_of_range, "fallback"),
        (solver_none, "fallback"),
        (solver_text, "fallback"),
        (solver_bool, "fallback"),
        (solver_negative, "fallback"),
    ],
)
def test_predict_always_returns_one_in_range_row(competition, solver, expected_source):
    records = []
    predict = kaggle.make_predict(solver, competition=competition, records=records)
    reply = predict(pl.Series("id", ["abc123"]), pl.Series("problem", ["What is $1+6$?"]))
    assert isinstance(reply, pl.DataFrame) and reply.columns == ["id", "answer"] and reply.height == 1
    assert reply["id"][0] == "abc123" and COMPETITIONS[competition].accepts(reply["answer"][0])
    assert records[0].source == expected_source
    if expected_source == "fallback":
        assert reply["answer"][0] == COMPETITIONS[competition].fallback and records[0].reason


@pytest.mark.parametrize(
    "problem",
    [
        pl.Series("problem", [""]),
        pl.Series("problem", ["   \n"]),
        pl.Series("problem", [None], dtype=pl.String),
        pl.Series("problem", [], dtype=pl.String),
        pd.Series([float("nan")]),
        None,
        42,
        object(),
    ],
)
def test_empty_or_malformed_problem_gets_the_fallback_without_solving(problem):
    calls, records = [], []
    predict = kaggle.make_predict(lambda text, deadline: calls.append(text) or 5, records=records)
    reply = predict(pl.Series("id", ["x"]), problem)
    assert reply["answer"].to_list() == [0] and calls == []
    assert "not non-empty text" in records[0].reason


def test_predict_accepts_pandas_series_and_plain_values():
    predict = kaggle.make_predict(solver_ok)
    assert predict(pd.Series(["a1"]), pd.Series(["1+6"]))["answer"].to_list() == [7]
    assert predict("b2", "1+6").to_dicts() == [{"id": "b2", "answer": 7}]


def test_deadline_already_passed_answers_at_once_with_the_fallback(caplog):
    clock = FakeClock(1000.0)
    budget = TimeBudget(total_s=100, num_problems=2, reserve_s=0, floor_s=0, ceiling_s=100, clock=clock)
    clock.now += 500  # the whole budget is gone
    calls, records = [], []
    predict = kaggle.make_predict(
        lambda text, deadline: calls.append(text) or 5, budget=budget, clock=clock, records=records
    )
    with caplog.at_level(logging.WARNING, logger="numina_kit.kaggle.predict"):
        replies = [predict(f"id{i}", "What is 2+3?") for i in range(3)]
    assert [reply["answer"][0] for reply in replies] == [0, 0, 0] and calls == []
    assert {record.reason for record in records} == {"deadline already passed"}
    assert "deadline already passed" in caplog.text
    assert budget.solved == 3


def test_solver_is_told_a_deadline_before_the_budget_one():
    clock = FakeClock(1000.0)
    budget = TimeBudget(total_s=1000, num_problems=10, reserve_s=0, floor_s=0, ceiling_s=1000, clock=clock)
    seen = []
    predict = kaggle.make_predict(
        lambda text, deadline: seen.append(deadline) or 1, budget=budget, grace_s=5.0, clock=clock
    )
    expected = budget.deadline() - 5.0  # the clock is frozen, so the budget hands out the same deadline
    predict("a", "1+0")
    assert seen == [pytest.approx(expected)] and expected > clock.now


def test_a_solver_that_overruns_its_deadline_is_waited_for_until_the_run_ends():
    """The synchronous loop finishes the round it started: its answer counts if it comes before the run's end."""

    def late_solver(text, deadline):
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.2)  # 0.2 s past the deadline it was told
        return 9

    budget = TimeBudget(total_s=5.0, num_problems=2, reserve_s=0, floor_s=0, ceiling_s=0.3)
    records = []
    reply = kaggle.make_predict(late_solver, budget=budget, grace_s=0.1, records=records)("a", "1+8")
    assert reply["answer"][0] == 9 and records[0].source == "solver"
    assert budget.history[0].hard and budget.history[0].used > budget.history[0].allotted


def test_a_solver_that_runs_past_the_end_is_abandoned_there():
    release = threading.Event()
    starts = []

    def slow_solver(text, deadline):
        starts.append(time.monotonic())
        release.wait(5)
        return 9

    budget = TimeBudget(total_s=0.6, num_problems=2, reserve_s=0, floor_s=0, ceiling_s=0.2)
    records = []
    predict = kaggle.make_predict(slow_solver, budget=budget, grace_s=0.1, records=records)
    first = predict("a", "1+8")
    # waited past the deadline up to the run's end, then answered without the solver (which would have said 9)
    assert first["answer"][0] == 0 and time.monotonic() >= budget.end and not release.is_set()
    second = predict("b", "1+8")  # the run is over: no second solve starts
    assert second["answer"][0] == 0 and len(starts) == 1
    assert [record.reason for record in records] == [
        "solver ran past the run's end or the per-call limit",
        "deadline already passed",
    ]
    release.set()


def test_a_broken_budget_still_gets_an_answer():
    class BrokenBudget:
        def deadline(self):
            raise OSError("clock gone")

        def done(self):
            raise OSError("clock gone")

    reply = kaggle.make_predict(solver_ok, budget=BrokenBudget())("a", "1+6")
    assert reply["answer"].to_list() == [0]


def test_unknown_competition_is_an_input_error():
    with pytest.raises(InputError, match="unknown competition 'aimo9'"):
        kaggle.make_predict(solver_ok, competition="aimo9")


@pytest.mark.parametrize(
    ("competition", "budget_s", "told_s"),
    [
        ("aimo2", 3 * 3600.0, 1800 - 60 - 5),  # capped at the 30-minute call limit less the margin and the grace
        ("aimo2", 600.0, 600 - 5),  # a budget deadline inside the cap is kept
        ("aimo3", 3 * 3600.0, 3 * 3600 - 5),  # no per-call limit
    ],
)
def test_every_deadline_is_capped_at_the_per_call_limit(competition, budget_s, told_s):
    clock = FakeClock(100.0)
    budget = TimeBudget(total_s=budget_s, num_problems=1, reserve_s=0, floor_s=0, ceiling_s=budget_s, clock=clock)
    seen = []
    predict = kaggle.make_predict(
        lambda text, deadline: seen.append(deadline) or 1, competition=competition, budget=budget, clock=clock
    )
    predict("a", "1+0")
    assert seen == [pytest.approx(clock.now + told_s)]


def test_without_a_budget_aimo2_still_gets_the_per_call_cap():
    clock = FakeClock(0.0)
    seen = []
    predict = kaggle.make_predict(lambda text, deadline: seen.append(deadline) or 1, competition="aimo2", clock=clock)
    predict("a", "1+0")
    assert seen == [pytest.approx(1800 - 60 - 5.0)]
    predict = kaggle.make_predict(lambda text, deadline: seen.append(deadline) or 1, competition="aimo1", clock=clock)
    predict("b", "1+0")
    assert seen[-1] is None


def test_a_failing_budget_done_is_logged_and_the_answer_kept(caplog):
    class Budget:
        end = time.monotonic() + 600

        def deadline(self):
            return time.monotonic() + 60

        def done(self):
            raise OSError("clock gone")

    with caplog.at_level(logging.ERROR, logger="numina_kit.kaggle.predict"):
        reply = kaggle.make_predict(solver_ok, budget=Budget())("a", "1+6")
    assert reply["answer"].to_list() == [7] and "budget.done() failed" in caplog.text


def test_records_summary_and_saved_records(tmp_path):
    records = []
    predict = kaggle.make_predict(solver_ok, records=records)
    predict("a", "1+6")
    predict("b", "")
    summary = kaggle.records_summary(records)
    assert summary["answered"] == 2 and summary["fallbacks"] == 1 and len(summary["reasons"]) == 1
    lines = kaggle.save_records(records, tmp_path / "answers.jsonl").read_text().splitlines()
    assert [line.count('"source"') for line in lines] == [1, 1]
