"""Tests for numina_kit.data.verification: tool solutions re-run in the sandbox, claims replaced, bad ones rejected.

Covers: outputs replaced by what the code printed (claims counted wrong or missing); state carried across blocks
in a stateful sandbox; rejections for a failing block, a timeout, no output, a boxed answer the output contradicts;
the boxed/output agreement rule (tokens, rounding of decimals, equivalence), table-driven.
"""

import pytest

from numina_kit.data.stages import Rejected
from numina_kit.data.verification import answer_agrees, verify_tool_solution
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(ExecutorConfig(timeout=2.0, stateful=True, num_workers=1)) as shared:
        yield shared


def test_claims_are_replaced_by_real_outputs(sandbox):
    solution = (
        "First.\n```python\nx = 6 * 7\nprint(x)\n```\n```output\n41\n```\n"  # a wrong claim
        "Then.\n```python\nprint(x + 1)\n```\n"  # no claim; uses the first block's x
        "So $\\boxed{43}$."
    )
    verified = verify_tool_solution(solution, sandbox, key="a")
    assert verified.solution == (
        "First.\n```python\nx = 6 * 7\nprint(x)\n```\n```output\n42\n```\n"
        "Then.\n```python\nprint(x + 1)\n```\n```output\n43\n```\nSo $\\boxed{43}$."
    )
    assert (verified.blocks, verified.claims_wrong, verified.claims_missing) == (2, 1, 1)


@pytest.mark.parametrize(
    ("solution", "reason"),
    [
        ("```python\nprint(1 / 0)\n```\n```output\ninf\n```\n$\\boxed{1}$", "code error"),
        ("```python\nwhile True:\n    pass\n```\n$\\boxed{1}$", "code timeout"),
        ("```python\nx = 3\n```\n$\\boxed{3}$", "no output"),
        ("```python\nprint(6 * 7)\n```\n```output\n41\n```\nSo $\\boxed{41}$.", "\\boxed disagrees with the output"),
        ("```python\nprint(1)\n```\nNo answer.", "no \\boxed answer"),
    ],
)
def test_rejections(sandbox, solution, reason):
    with pytest.raises(Rejected) as rejected:
        verify_tool_solution(solution, sandbox, key="r")
    assert rejected.value.reason == reason


@pytest.mark.parametrize(
    ("boxed", "output", "agrees"),
    [
        ("42", "42", True),
        ("42", "The result is 42\n", True),
        ("12", "123", False),
        ("3", "3.0", True),
        ("3", "3.4", False),
        ("0.49", "0.4934802200544679", True),
        ("0.5", "0.4934802200544679", True),  # rounded to one decimal
        ("0.6", "0.4934802200544679", False),
        ("1{,}234", "1234", True),
        ("27.73 \\, \\text{s}", "27.72588722239781", True),  # a unit after the number
        ("40.73\\%", "40.7254", True),
        ("12 \\text{apples}", "13", False),
        ("\\frac{1}{2}", "1/2", True),
        ("\\frac{1}{3}", "0.5", False),
        ("", "1", False),
    ],
)
def test_answer_agrees(boxed, output, agrees):
    assert answer_agrees(boxed, output) is agrees
