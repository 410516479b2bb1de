"""Tests for numina_kit.data.stages: the education-stage requests, the stage draw, the strict reply parser.

Covers: a request holds the text and asks for [Problem]/[Solution] (tool stages: python and output blocks, \\boxed);
eight chain-of-thought and two tool stages; the draw is uniform-ish, reproducible and gives theorems every CoT stage;
every malformed reply is rejected with its reason, a good one parsed (table-driven); fence splitting; final-model
prompt formats (ToRA, JiuZhang's released format).
"""

from collections import Counter

import pytest

from numina_kit.data.corpus import Text
from numina_kit.data.stages import (
    COT_STAGES,
    STAGES,
    TOOL_STAGES,
    Rejected,
    choose_stages,
    parse_reply,
    render_question,
    render_reply,
    render_request,
    split_blocks,
)
from numina_kit.errors import InputError


TOOL = STAGES["secondary_school_tool"]
COT = STAGES["amc10"]
CODE = "```python\nprint(2 + 2)\n```\n```output\n4\n```\n"


def test_stage_sets():
    assert [s.name for s in COT_STAGES] == [
        "grade_school", "middle_school", "high_school", "college", "amc8", "amc10", "amc12", "aime",
    ]  # fmt: skip
    assert [s.name for s in TOOL_STAGES] == ["grade_school_tool", "secondary_school_tool"]
    assert all(s.tool for s in TOOL_STAGES) and not any(s.tool for s in COT_STAGES)


@pytest.mark.parametrize("stage", [*COT_STAGES, *TOOL_STAGES], ids=lambda s: s.name)
def test_request_shape(stage):
    request = render_request(stage, "  Fermat's little theorem: a^p = a mod p.  ")
    assert "## Math Content\nFermat's little theorem: a^p = a mod p.\n\n## Guidelines" in request
    assert request.endswith("## New Problem\n") and "`[Problem]`" in request and "`[Solution]`" in request
    assert stage.audience in request and "\\boxed{}" in request
    assert ("```python" in request) == stage.tool


def test_stage_draw_is_uniform_reproducible_and_theorems_get_every_cot_stage():
    texts = [Text(f"t{i}", "x") for i in range(1600)]
    draws = Counter(choose_stages(t, "cot", seed=3)[0].name for t in texts)
    assert set(draws) == {s.name for s in COT_STAGES} and max(draws.values()) < 1.4 * min(draws.values())
    assert [choose_stages(t, "all", 3) for t in texts[:50]] == [choose_stages(t, "all", 3) for t in texts[:50]]
    assert choose_stages(Text("thm", "x", kind="Theorem"), "all", 0) == list(COT_STAGES)
    assert choose_stages(Text("thm", "x", kind="theorem"), "tool", 0)[0].tool
    with pytest.raises(InputError):
        choose_stages(texts[0], "both", 0)


@pytest.mark.parametrize(
    ("reply", "stage", "reason"),
    [
        ("[Problem]\nWhat is 2+2?\n\n[Solution]\nIt is $\\boxed{4}$.", COT, None),
        ("  [Problem]\nP\n[Solution]\n" + CODE + "So $\\boxed{4}$.\n", TOOL, None),
        ("Sure! [Problem]\nP\n[Solution]\n$\\boxed{4}$", COT, "text before [Problem]"),
        ("[Solution]\n$\\boxed{4}$", COT, "no [Problem]"),
        ("[Problem]\nP\n$\\boxed{4}$", COT, "no [Solution]"),
        ("[Problem]\nP\n[Problem]\nQ\n[Solution]\n$\\boxed{4}$", COT, "repeated [Problem]"),
        ("[Problem]\n\n[Solution]\n$\\boxed{4}$", COT, "empty problem"),
        ("[Problem]\nP\n[Solution]\n  ", COT, "empty solution"),
        ("[Problem]\nP\n[Solution]\nThe answer is 4.", COT, "no \\boxed answer"),
        ("[Problem]\n```python\nx\n```\n[Solution]\n$\\boxed{4}$", COT, "code in the problem"),
        ("[Problem]\nP\n[Solution]\nJust $\\boxed{4}$.", TOOL, "no python block"),
        ("[Problem]\nP\n[Solution]\n" + CODE + "$\\boxed{4}$", COT, "code in a chain-of-thought solution"),
        ("[Problem]\nP\n[Solution]\n```python\nprint(4)\n$\\boxed{4}$", TOOL, "malformed code fences"),
        ("[Problem]\nP\n[Solution]\n```output\n4\n```\n$\\boxed{4}$", TOOL, "output block without code"),
        ("[Solution]\nS\n[Problem]\nP $\\boxed{1}$", COT, "text before [Problem]"),
    ],
)
def test_parse_reply(reply, stage, reason):
    if reason is None:
        problem, solution = parse_reply(reply, stage)
        assert problem and "\\boxed" in solution and "[" not in problem
        assert parse_reply(render_reply(problem, solution), stage) == (problem, solution)
    else:
        with pytest.raises(Rejected) as rejected:
            parse_reply(reply, stage)
        assert rejected.value.reason == reason


def test_split_blocks():
    solution = "Add.\n```python\nprint(1)\n```\n```output\n1\n```\nThen.\n```python\nprint(2)\n```\nSo $\\boxed{2}$."
    assert split_blocks(solution) == [
        ("prose", "Add.\n"),
        ("code", "print(1)\n"),
        ("output", "1\n"),
        ("prose", "Then.\n"),
        ("code", "print(2)\n"),
        ("prose", "So $\\boxed{2}$."),
    ]


def test_render_question_styles():
    assert render_question("P?", tool=True) == "### Problem: P?\n### Solution: "
    assert render_question("P?", tool=True, style="jiuzhang") == "## Question\nP?\n\n## Code Solution\n"
    assert render_question("P?", tool=False, style="jiuzhang") == "## Question\nP?\n\n## Solution\n"
    with pytest.raises(InputError):
        render_question("P?", tool=False, style="alpaca")
