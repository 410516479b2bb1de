"""Tests for numina_kit.answers.judge: the one "is this answer right?" rule shared by evaluation, KTO labelling and
data synthesis, under every competition rule."""

import pytest

from numina_kit.answers import GENERAL, judge
from numina_kit.errors import InputError


@pytest.mark.parametrize(
    ("reference", "answer", "rule", "right"),
    [
        ("\\frac12", "\\frac{1}{2}", GENERAL, True),
        ("\\frac12", "0.5", GENERAL, True),
        ("0.5", "\\dfrac12", GENERAL, True),
        ("-3", "-3", GENERAL, True),  # negatives are answers in MATH
        ("12", "12.0", GENERAL, True),
        ("12", "12.0000001", GENERAL, False),  # an integer reference is compared exactly, not rounded
        ("5", "\\sqrt{25}", GENERAL, True),  # not a plain number: equivalence decides
        ("5", "x = 5", GENERAL, True),
        ("(1,2)", "(1, 2)", GENERAL, True),
        ("7", "", GENERAL, False),
        ("7", None, GENERAL, False),
        ("178", "8178", "aimo1", True),  # AIMO-1 reduces mod 1000
        ("8178", "178", "aimo1", True),
        ("8178", "178", "aimo2", False),  # out-of-range reference: never matched
        ("42", 42, "aimo3", True),  # an answer already reduced
        ("\\frac12", "\\frac12", "aimo3", False),  # no integer: not an AIMO answer
        ("-3", "-3", "aimo3", False),
        ("142.0", "142", "aimo2", True),
        ("142.0", 142, "aimo1", True),
        ("-4", 0, "aimo1", False),  # negative references are not valid AIMO answers
        ("2,125", 2125, "aimo3", True),
        ("\\frac{14}{3}", "\\dfrac{14}{3}", GENERAL, True),
        ("\\frac{14}{3}", "4.67", GENERAL, False),
    ],
)
def test_judge(reference, answer, rule, right) -> None:
    assert judge(reference, answer, rule, timeout=10.0) is right


def test_unknown_rule_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown competition"):
        judge("1", "1", "aimo9")
