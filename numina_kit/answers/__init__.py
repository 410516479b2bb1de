"""Answers: extraction from a model's text, exact numbers, LaTeX equivalence, the competition table and the judge.

`extract` (text -> answer string), `numbers` (answer -> exact value or integer), `equivalence` (two LaTeX answers
-> same or not), `competitions` (every competition's rule and Kaggle facts), `judge` (right or wrong).
"""

from numina_kit.answers.competitions import (
    COMPETITIONS,
    GENERAL,
    KAGGLE_COMPETITIONS,
    Competition,
    competition_rule,
    to_competition_answer,
)
from numina_kit.answers.equivalence import is_equivalent
from numina_kit.answers.extract import extract_answer, extract_boxed, strip_math
from numina_kit.answers.judge import judge
from numina_kit.answers.numbers import exact_value, parse_integer


__all__ = [
    "COMPETITIONS",
    "GENERAL",
    "KAGGLE_COMPETITIONS",
    "Competition",
    "competition_rule",
    "exact_value",
    "extract_answer",
    "extract_boxed",
    "is_equivalent",
    "judge",
    "parse_integer",
    "strip_math",
    "to_competition_answer",
]
