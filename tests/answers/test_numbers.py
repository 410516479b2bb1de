"""Tests for numina_kit.answers.numbers: exact integers from answer strings (non-integers rejected, not rounded),
ints and other types, and a bounded cost on huge input. Table cases live in tests/cases/answers.json."""

import json
import time
from pathlib import Path

import pytest

from numina_kit.answers.numbers import exact_value, parse_integer


CASES = json.loads((Path(__file__).parents[1] / "cases" / "answers.json").read_text())


def _ids(cases: list[list]) -> list[str]:
    return [case[-1] for case in cases]


@pytest.mark.parametrize(("answer", "expected", "why"), CASES["parse_integer"], ids=_ids(CASES["parse_integer"]))
def test_parse_integer(answer: str, expected: int | None, why: str) -> None:
    assert parse_integer(answer) == expected


def test_parse_integer_passes_ints_and_rejects_other_types() -> None:
    assert parse_integer(17) == 17
    assert parse_integer(None) is None
    assert parse_integer(True) is None


def test_parse_integer_is_fast_on_huge_input() -> None:
    start = time.perf_counter()
    assert parse_integer("9" * 1_000_000) is None
    assert parse_integer("2^{" + "9" * 50 + "}") is None
    assert time.perf_counter() - start < 0.5


def test_exact_value_is_exact() -> None:
    assert exact_value("\\frac{1}{3}") * 3 == 1
    assert exact_value("0.1") + exact_value("0.2") == exact_value("0.3")
    assert exact_value("\\sqrt{2}") is None
