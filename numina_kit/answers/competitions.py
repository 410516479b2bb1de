"""Every competition numina_kit answers for, in one table: its answer rule, fallback, Kaggle API, hardware and limits.

The facts, from each competition's Kaggle pages and the `kaggle_evaluation` package in its data:

- AIMO-1 (2024, kaggle.com/competitions/ai-mathematical-olympiad-prize): answers are integers 0..999, reported
  modulo 1000; 2x T4, 9 hours for 50 problems; the `aimo` loop API writes `submission.csv`.
- AIMO-2 (2025, ...-progress-prize-2): "a single integer between 0 and 999, inclusive"; each problem states its own
  reduction; 4x L4, 5 hours; `kaggle_evaluation` 0.3.0, whose gateway fails the whole run when a `predict` call
  after the first takes more than 30 minutes (`set_response_timeout_seconds(60 * 30)`).
- AIMO-3 (2026, ...-progress-prize-3): integers 0..99999, each problem states its own modulus; 1x H100, 5 hours;
  `kaggle_evaluation` 0.9.0, no practical limit per call.
- "general": MATH-style answers, any LaTeX, compared by `numina_kit.answers.equivalence.is_equivalent`; not a
  Kaggle competition (evaluation and training data use it).

`to_competition_answer` turns a written answer into what a rule submits. Negative answers are never submitted: no
AIMO answer is negative, and mapping `-1` (a common "no answer" sentinel) to 999 would turn noise into a vote.
"""

from dataclasses import dataclass
from numbers import Integral

from numina_kit.answers.numbers import parse_integer
from numina_kit.errors import InputError


__all__ = [
    "COMPETITIONS",
    "GENERAL",
    "KAGGLE_COMPETITIONS",
    "Competition",
    "competition_rule",
    "to_competition_answer",
]

GENERAL = "general"
PER_CALL_MARGIN_S = 60.0  # kept back from a per-call limit for `predict`'s own work and the gateway's round trip


@dataclass(frozen=True)
class Competition:
    """One competition's facts. Integer rules have `low`/`high`; the general rule has neither.

    `fallback` is what is submitted when no candidate gave a valid answer (in range, so the submission stays
    well-formed). The Kaggle fields are None for the general rule.
    """

    name: str
    title: str
    low: int | None = None
    high: int | None = None
    modulus: int | None = None  # every answer is reduced by it (AIMO-1); None: out-of-range answers are invalid
    fallback: int | str = 0
    kaggle_slug: str | None = None
    submission_file: str | None = None
    server_module: str | None = None  # kaggle_evaluation's inference server (AIMO-2/3); None: AIMO-1's `aimo` loop
    server_class: str | None = None
    hardware: str | None = None
    machine_shape: str | None = None  # kernel-metadata.json's accelerator id
    time_limit_s: float | None = None  # the whole notebook run
    per_call_limit_s: float | None = None  # one `predict` call (after the first)

    @property
    def integer(self) -> bool:
        return self.low is not None

    @property
    def max_problem_s(self) -> float | None:
        """The longest any one problem may be given: the per-call limit less `PER_CALL_MARGIN_S` (None: no limit)."""
        return None if self.per_call_limit_s is None else self.per_call_limit_s - PER_CALL_MARGIN_S

    def reduce(self, value: int) -> int | None:
        """The integer `value` as this competition accepts it, or None when it cannot be submitted."""
        if value < 0:
            return None
        if self.modulus is not None:
            value %= self.modulus
        return value if self.low <= value <= self.high else None

    def accepts(self, answer: object) -> bool:
        """Whether `answer` is a valid submission as it stands: an int (numpy's too, not bool) within the range."""
        return isinstance(answer, Integral) and not isinstance(answer, bool) and self.low <= answer <= self.high

    def describe(self) -> str:
        """The answer rule in words, as the notebook's introduction states it."""
        if not self.integer:
            return f"{self.title}: any answer, compared by equivalence"
        reduction = f", reduced mod {self.modulus}" if self.modulus else ", larger ones rejected"
        return f"{self.title}: an integer in {self.low}..{self.high}{reduction}"


COMPETITIONS: dict[str, Competition] = {
    "aimo1": Competition(
        "aimo1",
        "AIMO-1",
        low=0,
        high=999,
        modulus=1000,
        fallback=0,
        kaggle_slug="ai-mathematical-olympiad-prize",
        submission_file="submission.csv",
        hardware="2x NVIDIA T4 (16 GB each, no bfloat16)",
        machine_shape="NvidiaTeslaT4",
        time_limit_s=9 * 3600.0,
    ),
    "aimo2": Competition(
        "aimo2",
        "AIMO-2",
        low=0,
        high=999,
        fallback=0,
        kaggle_slug="ai-mathematical-olympiad-progress-prize-2",
        submission_file="submission.parquet",
        server_module="kaggle_evaluation.aimo_2_inference_server",
        server_class="AIMO2InferenceServer",
        hardware="4x NVIDIA L4 (24 GB each)",
        machine_shape="NvidiaL4",
        time_limit_s=5 * 3600.0,
        per_call_limit_s=30 * 60.0,
    ),
    "aimo3": Competition(
        "aimo3",
        "AIMO-3",
        low=0,
        high=99999,
        fallback=0,
        kaggle_slug="ai-mathematical-olympiad-progress-prize-3",
        submission_file="submission.parquet",
        server_module="kaggle_evaluation.aimo_3_inference_server",
        server_class="AIMO3InferenceServer",
        hardware="1x NVIDIA H100 (80 GB)",
        machine_shape="NvidiaH100",
        time_limit_s=5 * 3600.0,
    ),
    GENERAL: Competition(GENERAL, "MATH-style", fallback=""),
}
KAGGLE_COMPETITIONS = [name for name, rule in COMPETITIONS.items() if rule.kaggle_slug is not None]


def competition_rule(name: str, *, kaggle: bool = False) -> Competition:
    """The rule called `name`; with `kaggle`, only a Kaggle competition. `InputError` naming the choices otherwise."""
    names = KAGGLE_COMPETITIONS if kaggle else list(COMPETITIONS)
    if name not in names:
        raise InputError(f"unknown competition {name!r}: use one of {', '.join(names)}")
    return COMPETITIONS[name]


def to_competition_answer(answer: str | int | None, name: str = "aimo1") -> int | str | None:
    """What competition `name` submits for a written answer, or None when it cannot be submitted.

    Integer rules (aimo1..3):
    - non-integers (`12.5`, `\\sqrt2`, unparsable text) give None: they are wrong, and rounding them makes up votes
      for a value nobody computed;
    - negatives give None (see the module docstring);
    - too large: AIMO-1 reduces mod 1000 into 0..999, as its problems asked and Numina's notebook did; AIMO-2
      (0..999) and AIMO-3 (0..99999) give None: their problems state their own reduction, so an out-of-range value
      means the model did not apply it, and guessing one would be a guess.
    The general rule keeps the text (stripped; None when empty). Raises InputError for an unknown name.
    """
    rule = competition_rule(name)
    if not rule.integer:
        text = "" if answer is None else str(answer).strip()
        return text or None
    value = parse_integer(answer)
    return None if value is None else rule.reduce(value)
