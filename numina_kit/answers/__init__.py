"""Answers: extraction from a model's text, exact numbers, competition rules and LaTeX equivalence."""

from numina_kit.answers.extract import (
    COMPETITIONS,
    CompetitionRule,
    extract_answer,
    extract_boxed,
    is_equivalent,
    parse_integer,
    to_competition_answer,
)


__all__ = [
    "COMPETITIONS",
    "CompetitionRule",
    "extract_answer",
    "extract_boxed",
    "is_equivalent",
    "parse_integer",
    "to_competition_answer",
]
