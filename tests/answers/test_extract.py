"""Tests for numina_kit.answers.extract: the last complete box, "answer is" phrases, a run-on new problem cut off,
the whole text read (not its tail). Table cases live in tests/cases/answers.json."""

import json
from pathlib import Path

import pytest

from numina_kit.answers.extract import extract_answer, extract_boxed


CASES = json.loads((Path(__file__).parents[1] / "cases" / "answers.json").read_text())


def _ids(cases: list[list]) -> list[str]:
    return [case[-1] for case in cases]


@pytest.mark.parametrize(("text", "expected", "why"), CASES["extract_boxed"], ids=_ids(CASES["extract_boxed"]))
def test_extract_boxed(text: str, expected: str | None, why: str) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(("text", "expected", "why"), CASES["extract_answer"], ids=_ids(CASES["extract_answer"]))
def test_extract_answer(text: str, expected: str | None, why: str) -> None:
    assert extract_answer(text) == expected


def test_extract_boxed_reads_the_whole_text_not_its_tail() -> None:
    text = "\\boxed{314} " + "and then a long explanation. " * 20
    assert extract_boxed(text) == "314"
