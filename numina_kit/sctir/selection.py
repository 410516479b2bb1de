"""Selection: choose one answer among the candidates' answers from the evidence each candidate carries.

Every selector is a weighted vote (`numina_kit.sctir.voting.majority_vote`) whose weights come from a few lines over
a candidate's evidence (`numina_kit.sctir.candidates.Candidate`): plain majority weighs every candidate 1; the others
are the rules AIMO teams used to pick better than a plain majority:

- `confidence`: 1 / (the candidate's mean top-k token entropy), the AIMO-3 public baseline's weight (needs
  `SCTIRConfig.logprobs`); `tail_confidence` uses the median entropy of the last tokens instead.
- `logprob`: the candidate's mean token probability, exp(mean log-probability).
- `code`: an answer printed by the candidate's last code run counts fully, one that is not counts `unverified`;
  with a sandbox, the last code of the leading answers' candidates is run again (the AIMO-3 baseline's verifier).
- `prior`: answers a model falls back on when lost (small numbers, multiples of 100) are weighed down, as AIMO-2's
  second place did; the rule is configurable.

Selectors combine by multiplying their weights: `make_selector("confidence+code")`. `numina_kit.sctir.genselect`
adds the model-as-judge selector. `numina_kit.sctir.selection_eval` scores them all on the same stored candidates.
"""

import math
import re
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from numina_kit.errors import InputError
from numina_kit.sctir.voting import VoteResult, majority_vote


if TYPE_CHECKING:  # candidates.py votes through this module
    from numina_kit.sandbox.pool import Sandbox
    from numina_kit.sctir.candidates import Candidate


__all__ = [
    "SELECTORS",
    "AnswerPrior",
    "CodeVerified",
    "Combined",
    "Confidence",
    "LogprobWeighted",
    "Majority",
    "Selector",
    "make_selector",
    "printed_in",
]

Equivalent = Callable[[Hashable, Hashable], bool]


class Selector(Protocol):
    """Picks the answer of a problem from its voted candidates, given in the order they finished."""

    name: str

    def select(self, candidates: "Sequence[Candidate]", *, equivalent: Equivalent | None = None) -> VoteResult: ...


class WeightedVote:
    """A selector that is a weighted majority vote: subclasses say how much each candidate's vote weighs."""

    name = "weighted"

    def weights(self, candidates: "Sequence[Candidate]") -> list[float]:
        raise NotImplementedError

    def select(self, candidates: "Sequence[Candidate]", *, equivalent: Equivalent | None = None) -> VoteResult:
        answers = [c.answer for c in candidates]
        return majority_vote(answers, weights=self.weights(candidates), equivalent=equivalent)


@dataclass(frozen=True)
class Majority(WeightedVote):
    """One candidate, one vote (Numina's AIMO-1 rule)."""

    name: str = "majority"

    def weights(self, candidates: "Sequence[Candidate]") -> list[float]:
        return [1.0] * len(candidates)


@dataclass(frozen=True)
class Confidence(WeightedVote):
    """Each vote weighs 1 / the candidate's token entropy: `mean_entropy` (all its tokens) or `tail_entropy` (the
    median of the last tokens, where the answer is written). Entropies are floored at `floor` nats; a candidate
    without logprobs weighs as the mean of the others, and all weigh 1 when none has them (plain majority)."""

    measure: str = "mean_entropy"
    floor: float = 0.01
    name: str = "confidence"

    def __post_init__(self) -> None:
        if self.measure not in ("mean_entropy", "tail_entropy"):
            raise InputError(f"Confidence.measure must be mean_entropy or tail_entropy, got {self.measure!r}")

    def weights(self, candidates: "Sequence[Candidate]") -> list[float]:
        entropies = [getattr(c, self.measure) for c in candidates]
        return _fill([None if e is None else 1.0 / max(e, self.floor) for e in entropies])


@dataclass(frozen=True)
class LogprobWeighted(WeightedVote):
    """Each vote weighs the candidate's mean token probability, exp(mean log-probability of its sampled tokens)."""

    name: str = "logprob"

    def weights(self, candidates: "Sequence[Candidate]") -> list[float]:
        return _fill([None if c.mean_logprob is None else math.exp(c.mean_logprob) for c in candidates])


@dataclass(frozen=True)
class CodeVerified(WeightedVote):
    """A vote counts 1 when the candidate's answer is printed by its last code run, else `unverified`.

    Without `executor` the evidence is the one the engine recorded (`Candidate.from_code`). With a sandbox, the
    last code of the candidates behind the `leaders` most voted answers is run again in a fresh interpreter and the
    answer looked for in the new output: that catches outputs that do not reproduce (randomness, timeouts, state
    left by earlier calls). Other candidates keep the recorded evidence.
    """

    unverified: float = 0.25
    leaders: int = 2
    executor: "Sandbox | None" = field(default=None, compare=False, repr=False)
    name: str = "code"

    def __post_init__(self) -> None:
        if not 0 <= self.unverified <= 1:
            raise InputError(f"CodeVerified.unverified must be in [0, 1], got {self.unverified}")

    def weights(self, candidates: "Sequence[Candidate]") -> list[float]:
        verified = [c.from_code for c in candidates]
        if self.executor is not None:
            leading = set(list(majority_vote([c.answer for c in candidates]).table)[: self.leaders])
            rerun = [i for i, c in enumerate(candidates) if c.answer in leading and c.last_code and c.raw_answer]
            results = self.executor.run_many([candidates[i].last_code for i in rerun]) if rerun else []
            for i, result in zip(rerun, results, strict=True):
                verified[i] = result.ok and printed_in(candidates[i].raw_answer, result.output)
        return [1.0 if ok else self.unverified for ok in verified]


@dataclass(frozen=True)
class AnswerPrior(WeightedVote):
    """Weigh answers down that a lost model falls back on: below `small_below` by `small`, multiples of
    `round_unit` (0 included) by `round`; `overrides` maps particular answers to their weight. Non-integer answers
    weigh 1."""

    small_below: int = 10
    small: float = 0.5
    round_unit: int = 100
    round: float = 0.7
    overrides: tuple[tuple[int, float], ...] = ()
    name: str = "prior"

    def prior(self, answer: Hashable) -> float:
        overrides = dict(self.overrides)
        if answer in overrides:
            return overrides[answer]
        if not isinstance(answer, int) or isinstance(answer, bool):
            return 1.0
        weight = self.small if abs(answer) < self.small_below else 1.0
        if self.round_unit and answer % self.round_unit == 0:
            weight *= self.round
        return weight

    def weights(self, candidates: "Sequence[Candidate]") -> list[float]:
        return [self.prior(c.answer) for c in candidates]


@dataclass(frozen=True)
class Combined(WeightedVote):
    """The product of its parts' weights (e.g. confidence x code verification)."""

    parts: tuple[WeightedVote, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if not self.parts:
            raise InputError("Combined needs at least one selector")
        if not self.name:
            object.__setattr__(self, "name", "+".join(part.name for part in self.parts))

    def weights(self, candidates: "Sequence[Candidate]") -> list[float]:
        weights = [1.0] * len(candidates)
        for part in self.parts:
            weights = [w * v for w, v in zip(weights, part.weights(candidates), strict=True)]
        return weights


def _fill(weights: list[float | None]) -> list[float]:
    """Missing weights take the mean of the others (all 1 when none is known)."""
    known = [w for w in weights if w is not None]
    default = statistics.fmean(known) if known else 1.0
    return [default if w is None else w for w in weights]


SELECTORS: dict[str, Callable[[], WeightedVote]] = {
    "majority": Majority,
    "confidence": Confidence,
    "tail_confidence": lambda: Confidence(measure="tail_entropy", name="tail_confidence"),
    "logprob": LogprobWeighted,
    "code": CodeVerified,
    "prior": AnswerPrior,
}


def make_selector(spec: str | WeightedVote, *, executor: "Sandbox | None" = None) -> WeightedVote:
    """A selector from its name in `SELECTORS`, or names joined by `+` for their product ("confidence+code");
    `executor` lets `code` re-run the leading candidates' code. A selector object is returned as it is."""
    if not isinstance(spec, str):
        return spec
    names = [name.strip() for name in spec.split("+")]
    unknown = [name for name in names if name not in SELECTORS]
    if unknown or not spec.strip():
        raise InputError(f"unknown selector {spec!r}; choose from {', '.join(SELECTORS)}, joined by '+'")
    parts = [CodeVerified(executor=executor) if name == "code" else SELECTORS[name]() for name in names]
    return parts[0] if len(parts) == 1 else Combined(tuple(parts))


def printed_in(raw: str, output: str) -> bool:
    """Whether the answer `raw` is printed in `output` as a whole token (so `12` does not match `123`)."""
    value = raw.strip().rstrip(".")
    if value.endswith(".0"):
        value = value[:-2]
    return bool(value) and re.search(rf"(?<![\w.]){re.escape(value)}(?![\w]|\.\d)", output) is not None
