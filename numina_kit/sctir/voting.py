"""Voting: turn the answers of many candidates into one, and decide when enough of them agree to stop early.

`majority_vote` counts (or sums confidence weights of) equal answers, optionally grouping answers that an
`equivalent` callable says are the same, and breaks ties by a fixed documented rule. `ConsistencyRule` is the
early-stopping test the SC-TIR loop asks after each finished candidate ("4 agree", "4 of the last 5 agree", as the
AIMO-3 public baseline and NeMo-Skills' AIMO-2 notebook stop): time saved on an easy problem goes to the hard ones.
`is_decided` is the exact test: the leader cannot be caught by the candidates still running.
"""

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from numina_kit.errors import InputError


__all__ = ["ConsistencyRule", "VoteResult", "is_decided", "majority_vote"]


@dataclass(frozen=True)
class VoteResult:
    """The outcome of a vote.

    `winner` is None when no answer was valid. `table` maps each distinct answer (for a group of equivalent
    answers, its earliest member) to its votes (a count, or the sum of weights when the vote was weighted), best
    first in the tie-break order. `counts` gives the number of candidates behind each entry of `table`.
    `num_valid` is the number of non-None answers.
    """

    winner: Hashable | None
    table: dict[Hashable, float] = field(default_factory=dict)
    num_valid: int = 0
    counts: dict[Hashable, int] = field(default_factory=dict)


def majority_vote(
    answers: Sequence[Hashable | None],
    *,
    weights: Sequence[float] | None = None,
    equivalent: Callable[[Hashable, Hashable], bool] | None = None,
) -> VoteResult:
    """The answer with the most votes among `answers` (None entries are ignored).

    `weights` gives each candidate's vote a weight (a confidence such as an inverse entropy); it must have one
    finite, non-negative entry per answer. `equivalent(a, b)` merges distinct answers into one group, keyed by
    the group's earliest answer; each distinct answer is compared with the group keys only, so it is called at
    most (distinct answers x groups) times. Without it, answers are grouped by `==` (so `2` and `2.0` agree).

    Tie-break, in order: the larger total weight (the count when unweighted); then more candidates; then the
    answer whose first vote came earliest. Pass answers in the order candidates finished: in SC-TIR a candidate
    that finishes in fewer rounds made fewer wrong turns, and this is the order in which early stopping sees
    them, so the rule never contradicts a stop it allowed. It is independent of hashing and of dict order.
    """
    if weights is not None:
        if len(weights) != len(answers):
            raise InputError(f"majority_vote got {len(weights)} weights for {len(answers)} answers")
        if any(not math.isfinite(w) or w < 0 for w in weights):
            raise InputError("majority_vote weights must be finite and non-negative")
    totals: dict[Hashable, float] = {}
    counts: dict[Hashable, int] = {}
    first_seen: dict[Hashable, int] = {}
    num_valid = 0
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        num_valid += 1
        weight = 1 if weights is None else weights[index]
        if answer in totals:
            totals[answer] += weight
            counts[answer] += 1
        else:
            totals[answer], counts[answer], first_seen[answer] = weight, 1, index
    if equivalent is not None and len(totals) > 1:
        totals, counts = _merge_equivalent(totals, counts, equivalent)
    ranked = sorted(totals, key=lambda answer: (-totals[answer], -counts[answer], first_seen[answer]))
    return VoteResult(
        winner=ranked[0] if ranked else None,
        table={answer: totals[answer] for answer in ranked},
        num_valid=num_valid,
        counts={answer: counts[answer] for answer in ranked},
    )


def _merge_equivalent(
    totals: dict[Hashable, float], counts: dict[Hashable, int], equivalent: Callable[[Hashable, Hashable], bool]
) -> tuple[dict[Hashable, float], dict[Hashable, int]]:
    """Fold each distinct answer (in order of first appearance) into the first earlier group it is equivalent to."""
    merged_totals: dict[Hashable, float] = {}
    merged_counts: dict[Hashable, int] = {}
    for answer in totals:  # dicts keep insertion order: earliest first
        key = next((group for group in merged_totals if equivalent(group, answer)), answer)
        merged_totals[key] = merged_totals.get(key, 0) + totals[answer]
        merged_counts[key] = merged_counts.get(key, 0) + counts[answer]
    return merged_totals, merged_counts


@dataclass(frozen=True)
class ConsistencyRule:
    """Stop sampling once `agree` valid answers are equal, among the last `window` valid answers if set.

    - `ConsistencyRule(4)`: stop when any answer has 4 votes so far (the AIMO-3 baseline's rule).
    - `ConsistencyRule(4, window=5)`: stop when 4 of the last 5 valid answers agree.
    - `ConsistencyRule(k, window=k)`: the last k valid answers are all equal; checked after each answer, it
      fires at the k-th answer exactly when "k of the first k agree".
    None answers (candidates without a valid answer) are skipped and do not take a place in the window.
    Frozen and made of plain fields, so a YAML mapping `{agree: 4, window: 5}` loads as `ConsistencyRule(**d)`.
    """

    agree: int
    window: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.agree, bool) or not isinstance(self.agree, int) or self.agree < 1:
            raise InputError(f"ConsistencyRule.agree must be a positive integer, got {self.agree!r}")
        if self.window is not None and (
            isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < self.agree
        ):
            raise InputError(f"ConsistencyRule.window must be an integer >= agree ({self.agree}), got {self.window!r}")

    def is_met(self, answers: Sequence[Hashable | None]) -> bool:
        """Whether the answers so far (in the order they arrived) satisfy the rule."""
        valid = [answer for answer in answers if answer is not None]
        if self.window is not None:
            valid = valid[-self.window :]
        if len(valid) < self.agree:
            return False
        counts: dict[Hashable, int] = {}
        for answer in valid:
            counts[answer] = counts.get(answer, 0) + 1
            if counts[answer] >= self.agree:
                return True
        return False


def is_decided(answers: Sequence[Hashable | None], remaining: int) -> bool:
    """Whether the majority's winner is settled: even if all `remaining` candidates answered the runner-up, it
    would still have fewer votes than the leader (unweighted, answers grouped by `==`; None entries ignored).

    Stopping then loses nothing: the vote on all answers would pick the same winner.
    """
    counts: dict[Hashable, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return False
    first, second = ([*sorted(counts.values(), reverse=True), 0])[:2]
    return first > second + remaining
