"""Tests for numina_kit.answers.competitions: the one table of competitions (answer rules, fallbacks, Kaggle facts,
hardware and limits), `to_competition_answer` under each rule, and unknown names. Table cases live in
tests/cases/answers.json."""

import json
from pathlib import Path

import pytest

from numina_kit.answers.competitions import (
    COMPETITIONS,
    GENERAL,
    KAGGLE_COMPETITIONS,
    PER_CALL_MARGIN_S,
    competition_rule,
    to_competition_answer,
)
from numina_kit.errors import InputError


CASES = json.loads((Path(__file__).parents[1] / "cases" / "answers.json").read_text())


@pytest.mark.parametrize(
    ("answer", "competition", "expected", "why"),
    CASES["to_competition_answer"],
    ids=[f"{case[1]}-{case[-1]}" for case in CASES["to_competition_answer"]],
)
def test_to_competition_answer(answer: str, competition: str, expected: int | None, why: str) -> None:
    assert to_competition_answer(answer, competition) == expected


@pytest.mark.parametrize(
    ("name", "high", "modulus", "hardware", "hours", "per_call_s", "shape"),
    [
        ("aimo1", 999, 1000, "2x NVIDIA T4", 9, None, "NvidiaTeslaT4"),
        ("aimo2", 999, None, "4x NVIDIA L4", 5, 1800, "NvidiaL4"),
        ("aimo3", 99999, None, "1x NVIDIA H100", 5, None, "NvidiaH100"),
    ],
)
def test_kaggle_competitions_facts(name, high, modulus, hardware, hours, per_call_s, shape) -> None:
    rule = COMPETITIONS[name]
    assert (rule.low, rule.high, rule.modulus, rule.machine_shape) == (0, high, modulus, shape)
    assert rule.hardware.startswith(hardware) and rule.time_limit_s == hours * 3600
    assert rule.per_call_limit_s == per_call_s
    assert rule.max_problem_s == (None if per_call_s is None else per_call_s - PER_CALL_MARGIN_S)
    assert rule.kaggle_slug.startswith("ai-mathematical-olympiad-") and rule.submission_file.startswith("submission.")
    assert (rule.server_module is None) == (name == "aimo1")
    assert rule.accepts(rule.fallback) and rule.reduce(rule.fallback) == rule.fallback


def test_general_rule_keeps_text_and_is_not_on_kaggle() -> None:
    rule = COMPETITIONS[GENERAL]
    assert not rule.integer and rule.fallback == "" and rule.kaggle_slug is None
    assert KAGGLE_COMPETITIONS == ["aimo1", "aimo2", "aimo3"]
    assert to_competition_answer("  \\frac12 ", GENERAL) == "\\frac12"
    assert to_competition_answer("   ", GENERAL) is None


@pytest.mark.parametrize(
    ("name", "answer", "accepted"),
    [
        ("aimo1", 999, True),
        ("aimo1", 1000, False),
        ("aimo3", 1000, True),
        ("aimo2", -1, False),
        ("aimo2", True, False),
        ("aimo2", "7", False),
        ("aimo2", 7.0, False),
    ],
)
def test_accepts_only_ints_in_range(name, answer, accepted) -> None:
    assert COMPETITIONS[name].accepts(answer) is accepted


def test_accepts_numpy_integers() -> None:
    import numpy as np

    assert COMPETITIONS["aimo1"].accepts(np.int64(7))


def test_describe_states_the_rule() -> None:
    assert COMPETITIONS["aimo1"].describe() == "AIMO-1: an integer in 0..999, reduced mod 1000"
    assert COMPETITIONS["aimo2"].describe() == "AIMO-2: an integer in 0..999, larger ones rejected"


def test_unknown_names_are_input_errors() -> None:
    assert to_competition_answer("1234") == 234  # the default rule is aimo1
    with pytest.raises(InputError, match="unknown competition 'aimo9'"):
        to_competition_answer("1", "aimo9")
    with pytest.raises(InputError, match="use one of aimo1, aimo2, aimo3$"):
        competition_rule(GENERAL, kaggle=True)
