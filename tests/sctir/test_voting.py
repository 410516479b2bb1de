"""Tests for numina_kit.sctir.voting: majority_vote (None answers, ties, weights, equivalence groups, bad weights) and
ConsistencyRule (k agree, k of the last n, None answers, validation, loading from a YAML mapping) and is_decided."""

import dataclasses

import pytest
import yaml

from numina_kit.answers import is_equivalent
from numina_kit.errors import InputError
from numina_kit.sctir.voting import ConsistencyRule, VoteResult, is_decided, majority_vote


@pytest.mark.parametrize(
    ("answers", "weights", "winner", "table", "num_valid"),
    [
        pytest.param([], None, None, {}, 0, id="empty"),
        pytest.param([None, None], None, None, {}, 0, id="only-none"),
        pytest.param([7], None, 7, {7: 1}, 1, id="single"),
        pytest.param([3, 5, 5, None, 3, 5], None, 5, {5: 3, 3: 2}, 5, id="majority-ignores-none"),
        pytest.param([3, 5, 5, 3], None, 3, {3: 2, 5: 2}, 4, id="tie-earliest-first-vote"),
        pytest.param([None, 9, 4, 4, 9], None, 9, {9: 2, 4: 2}, 4, id="tie-earliest-after-none"),
        pytest.param([1, 2, 3], None, 1, {1: 1, 2: 1, 3: 1}, 3, id="all-different"),
        pytest.param([2, 2.0, 3], None, 2, {2: 2, 3: 1}, 3, id="equal-values-one-entry"),
        pytest.param([3, 5, 5], [3.0, 1.0, 1.0], 3, {3: 3.0, 5: 2.0}, 3, id="weights-beat-count"),
        pytest.param([3, 5, 5], [2.0, 1.0, 1.0], 5, {5: 2.0, 3: 2.0}, 3, id="weight-tie-more-candidates"),
        pytest.param([3, 5], [1.0, 1.0], 3, {3: 1.0, 5: 1.0}, 2, id="weight-tie-earliest"),
        pytest.param([3, None, 5], [0.5, 100.0, 0.7], 5, {5: 0.7, 3: 0.5}, 2, id="weight-of-none-ignored"),
        pytest.param([3, 5], [0.0, 0.0], 3, {3: 0.0, 5: 0.0}, 2, id="zero-weights"),
    ],
)
def test_majority_vote(answers: list, weights: list | None, winner: object, table: dict, num_valid: int) -> None:
    result = majority_vote(answers, weights=weights)
    assert result.winner == winner
    assert result.table == table
    assert list(result.table) == list(table)  # ranked: best first, in tie-break order
    assert result.num_valid == num_valid


def test_majority_vote_counts_and_result_shape() -> None:
    result = majority_vote([4, 4, 8], weights=[0.1, 0.1, 0.5])
    assert result == VoteResult(winner=8, table={8: 0.5, 4: pytest.approx(0.2)}, num_valid=3, counts={8: 1, 4: 2})
    assert dataclasses.is_dataclass(result)


def test_majority_vote_with_equivalence_groups_strings() -> None:
    answers = ["\\frac{1}{2}", "0.5", "\\dfrac12", "2", None, "2.0", "\\sqrt{2}"]
    result = majority_vote(answers, equivalent=is_equivalent)
    assert result.winner == "\\frac{1}{2}"  # the group's earliest member names it
    assert result.table == {"\\frac{1}{2}": 3, "2": 2, "\\sqrt{2}": 1}
    assert result.num_valid == 6


def test_majority_vote_calls_equivalent_once_per_distinct_pair_at_most() -> None:
    calls: list[tuple] = []

    def same_parity(a: int, b: int) -> bool:
        calls.append((a, b))
        return a % 2 == b % 2

    answers = [1, 2, 1, 3, 2, 4, 5, 1]
    result = majority_vote(answers, equivalent=same_parity)
    assert result.table == {1: 5, 2: 3}
    assert len(calls) == len(set(calls))
    assert len(calls) <= 5 * 2  # distinct answers x groups


def test_majority_vote_tie_break_does_not_depend_on_hashing() -> None:
    answers = ["b", "a", "a", "b", "c"]
    assert majority_vote(answers).winner == "b"
    assert majority_vote(list(reversed(answers))).winner == "b"  # c b a a b: b and a tie, b came first
    assert majority_vote(["c", "b", "b", "c"]).winner == "c"


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "2 answers"),
        ([1.0, -1.0], "non-negative"),
        ([1.0, float("nan")], "finite"),
        ([1.0, float("inf")], "finite"),
    ],
)
def test_majority_vote_rejects_bad_weights(weights: list[float], message: str) -> None:
    with pytest.raises(InputError, match=message):
        majority_vote([1, 2], weights=weights)


@pytest.mark.parametrize(
    ("agree", "window", "answers", "expected"),
    [
        pytest.param(4, None, [1, 1, 1], False, id="three-of-four"),
        pytest.param(4, None, [1, 2, 1, 3, 1, 1], True, id="four-anywhere"),
        pytest.param(4, None, [1, None, 1, None, 1, None], False, id="none-do-not-count"),
        pytest.param(4, 5, [1, 1, 2, 3, 1, 1], False, id="four-of-last-five-missing"),
        pytest.param(4, 5, [2, 1, 1, 3, 1, 1], True, id="four-of-last-five"),
        pytest.param(4, 5, [1, 1, 1, 2, 3, 4, 1], False, id="old-votes-leave-the-window"),
        pytest.param(4, 5, [1, 1, None, 1, None, 2, 1], True, id="window-skips-none"),
        pytest.param(3, 3, [5, 5, 5], True, id="k-of-first-k"),
        pytest.param(3, 3, [5, 5, 6], False, id="k-of-first-k-broken"),
        pytest.param(3, 3, [5, 6, 7, 7, 7], True, id="k-in-a-row-later"),
        pytest.param(1, None, [None, 8], True, id="one-answer"),
        pytest.param(1, None, [None], False, id="no-answer"),
        pytest.param(2, None, [], False, id="empty"),
    ],
)
def test_consistency_rule(agree: int, window: int | None, answers: list, expected: bool) -> None:
    assert ConsistencyRule(agree, window).is_met(answers) is expected


@pytest.mark.parametrize(
    "kwargs", [{"agree": 0}, {"agree": 4, "window": 3}, {"agree": "4"}, {"agree": 2.5}, {"agree": True}]
)
def test_consistency_rule_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(InputError, match="ConsistencyRule"):
        ConsistencyRule(**kwargs)


def test_consistency_rule_loads_from_yaml_and_is_frozen() -> None:
    rule = ConsistencyRule(**yaml.safe_load("agree: 4\nwindow: 5\n"))
    assert rule == ConsistencyRule(4, 5)
    assert ConsistencyRule(**yaml.safe_load("agree: 3\n")) == ConsistencyRule(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.agree = 2  # type: ignore[misc]
    assert hash(rule) == hash(ConsistencyRule(4, 5))


@pytest.mark.parametrize(
    ("answers", "remaining", "decided"),
    [
        ([7, 7, 3], 0, True),
        ([7, 7, 3], 1, False),  # one more 3 would tie 2 to 2: not settled
        ([7, 7, 7, 3], 1, True),
        ([7, None, None], 0, True),
        ([None], 3, False),
        ([], 0, False),
        ([5, 5, 5, 5], 3, True),
    ],
)
def test_is_decided(answers, remaining, decided):
    assert is_decided(answers, remaining) is decided
