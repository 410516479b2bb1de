"""Education-stage prompts: ask a teacher (or the distilled synthesis model) for a problem and solution about a text.

The shape follows JiuZhang3.0 (Zhou et al. 2024, arXiv 2405.14365; prompts in the RUCAIBox/JiuZhang3.0 repository):
an instruction naming the audience, the text under `## Math Content`, guidelines asking for a `[Problem]` and a
`[Solution]`, and `## New Problem` where the reply starts. The wording here is our own. There are eight
chain-of-thought stages (grade school to AIME) and two tool stages (grade school, secondary school) whose solutions
interleave ```python blocks with their ```output and end in `\\boxed{}`. One stage is drawn uniformly per text;
texts whose kind is a definition or a theorem get every chain-of-thought stage, as the paper did for ProofWiki.

`parse_reply` is strict: a reply is kept only as `[Problem]` text then `[Solution]` text with a `\\boxed{}` answer
(and, for a tool stage, well-formed code fences with at least one code block); anything else raises `Rejected`
with a short reason that the pipeline counts. `render_question` is the prompt a *final* model is trained on: the
project's ToRA format (`numina_kit.protocols.tora.render_prompt`, what SC-TIR inference sends) or JiuZhang's released
format (`## Question ... ## Solution` / `## Code Solution`).
"""

import random
import re
from dataclasses import dataclass

from numina_kit.answers import extract_boxed
from numina_kit.data.corpus import Text
from numina_kit.errors import InputError
from numina_kit.protocols.tora import CODE_START, OUTPUT_START, render_prompt


PROBLEM_TAG = "[Problem]"
SOLUTION_TAG = "[Solution]"
ALL_STAGES_KINDS = ("definition", "theorem")  # texts that get every chain-of-thought stage
MODES = ("cot", "tool", "all")
STYLES = ("tora", "jiuzhang")


class Rejected(ValueError):
    """A reply or solution that cannot be kept; `reason` is a short fixed phrase, counted by the pipeline."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Stage:
    """One education stage: who the problem is for, how hard, and whether its solution uses Python."""

    name: str
    audience: str
    difficulty: str
    tool: bool = False
    solution_length: str = "about 250 to 350 words"


COT_STAGES = (
    Stage(
        "grade_school",
        "a grade-school pupil (ages 6 to 11)",
        "Use whole numbers, simple fractions and everyday situations; one or two steps of arithmetic.",
        solution_length="about 100 to 200 words",
    ),
    Stage(
        "middle_school",
        "a middle-school student (ages 11 to 14)",
        "Use ratios, percentages, simple equations, basic geometry or counting; a few steps of reasoning.",
    ),
    Stage(
        "high_school",
        "a high-school student",
        "Use algebra, functions, trigonometry, sequences, probability or analytic geometry.",
    ),
    Stage(
        "college",
        "an undergraduate mathematics student",
        "Use calculus, linear algebra, number theory, combinatorics or abstract algebra at course level.",
    ),
    Stage(
        "amc8",
        "a contestant of the AMC 8 competition",
        "Make it a short contest problem with one exact answer that rewards insight over long computation.",
    ),
    Stage(
        "amc10",
        "a contestant of the AMC 10 competition",
        "Make it a contest problem for strong students up to grade 10, with one exact answer.",
    ),
    Stage(
        "amc12",
        "a contestant of the AMC 12 competition",
        "Make it a contest problem using the whole high-school curriculum, with one exact answer.",
    ),
    Stage(
        "aime",
        "a contestant of the AIME",
        "Make it a hard olympiad-style problem whose answer is an integer from 0 to 999.",
    ),
)
TOOL_STAGES = (
    Stage(
        "grade_school_tool",
        "a grade-school pupil (ages 6 to 11)",
        "Use whole numbers and an everyday setting; numbers large enough that a computer helps.",
        tool=True,
        solution_length="a few short steps",
    ),
    Stage(
        "secondary_school_tool",
        "a middle- or high-school student",
        "Use algebra, number theory, counting or geometry; a computation code does better than hand work.",
        tool=True,
        solution_length="a few short steps",
    ),
)
STAGES = {stage.name: stage for stage in (*COT_STAGES, *TOOL_STAGES)}

_INSTRUCTION = (
    "Write a new math problem for {audience}, with its solution, based on the math content below. The problem must "
    "make sense without the content.\n\n## Math Content\n{text}\n\n## Guidelines\n- {difficulty}\n"
    f"- Write `{PROBLEM_TAG}` and the problem, then `{SOLUTION_TAG}` and the solution; nothing else.\n"
)
_COT_GUIDELINES = "- Reason step by step in {length}, in LaTeX; end with the answer in \\boxed{{}}.\n"
_TOOL_GUIDELINES = (
    "- Reason in {length}, computing with Python in ```python blocks, each followed by the ```output it prints; "
    "end with the printed answer in \\boxed{{}}.\n"
)


def render_request(stage: Stage, text: str) -> str:
    """The prompt that asks for a problem and solution about `text` at `stage` (it ends where the reply starts)."""
    guidelines = (_TOOL_GUIDELINES if stage.tool else _COT_GUIDELINES).format(length=stage.solution_length)
    head = _INSTRUCTION.format(audience=stage.audience, text=text.strip(), difficulty=stage.difficulty)
    return f"{head}{guidelines}\n## New Problem\n"


def render_reply(problem: str, solution: str) -> str:
    """A reply in the form `parse_reply` accepts: what the synthesis model is trained to write."""
    return f"{PROBLEM_TAG}\n{problem.strip()}\n\n{SOLUTION_TAG}\n{solution.strip()}"


def choose_stages(text: Text, mode: str, seed: int) -> list[Stage]:
    """The stages `text` is written at: one drawn uniformly from `mode`'s stages (the same on every run for the
    same seed and text id), or every chain-of-thought stage for a definition or theorem."""
    if mode not in MODES:
        raise InputError(f"stage mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "tool" and text.kind.lower() in ALL_STAGES_KINDS:
        return list(COT_STAGES)
    pool = {"cot": COT_STAGES, "tool": TOOL_STAGES, "all": (*COT_STAGES, *TOOL_STAGES)}[mode]
    return [random.Random(f"{seed}/{text.id}").choice(pool)]


def parse_reply(reply: str, stage: Stage) -> tuple[str, str]:
    """(problem, solution) from a reply to `render_request`; raises `Rejected` with the reason it is malformed."""
    text = reply.strip()
    for tag in (PROBLEM_TAG, SOLUTION_TAG):
        count = text.count(tag)
        if count != 1:
            raise Rejected(f"{'no' if count == 0 else 'repeated'} {tag}")
    if not text.startswith(PROBLEM_TAG):
        raise Rejected(f"text before {PROBLEM_TAG}")
    problem, solution = (part.strip() for part in text[len(PROBLEM_TAG) :].split(SOLUTION_TAG))
    if not problem:
        raise Rejected("empty problem")
    if not solution:
        raise Rejected("empty solution")
    if "```" in problem:
        raise Rejected("code in the problem")
    if not extract_boxed(solution):
        raise Rejected("no \\boxed answer")
    if stage.tool:
        blocks = split_blocks(solution)
        if not any(kind == "code" for kind, _ in blocks):
            raise Rejected("no python block")
    elif CODE_START in solution:
        raise Rejected("code in a chain-of-thought solution")
    return problem, solution


_FENCE = re.compile(r"```python\n(.*?)```\n?|```output\n(.*?)```\n?", re.DOTALL)


def split_blocks(solution: str) -> list[tuple[str, str]]:
    """A tool solution as ("prose" | "code" | "output", text) pieces; `Rejected` for malformed fences.

    Malformed: a fence that is not a closed ```python or ```output block, or an output block that does not follow
    a code block (only blank space may lie between them).
    """
    pieces: list[tuple[str, str]] = []
    position = 0
    for match in _FENCE.finditer(solution):
        prose = solution[position : match.start()]
        if "```" in prose:
            raise Rejected("malformed code fences")
        if match.group(1) is not None:
            pieces.append(("prose", prose))
            pieces.append(("code", match.group(1)))
        else:
            if not pieces or pieces[-1][0] != "code" or prose.strip():
                raise Rejected("output block without code")
            pieces.append(("output", match.group(2)))
        position = match.end()
    tail = solution[position:]
    if "```" in tail:
        raise Rejected("malformed code fences")
    pieces.append(("prose", tail))
    return [(kind, text) for kind, text in pieces if kind != "prose" or text]


def render_question(problem: str, *, tool: bool, style: str = "tora") -> str:
    """The training prompt of a final model for `problem`: ToRA's (SC-TIR's) or JiuZhang3.0's released format."""
    if style == "tora":
        return render_prompt(problem)
    if style == "jiuzhang":
        return f"## Question\n{problem.strip()}\n\n## {'Code Solution' if tool else 'Solution'}\n"
    raise InputError(f"question style must be one of {', '.join(STYLES)}, got {style!r}")


def is_tool_solution(solution: str) -> bool:
    """Whether a solution holds code (JiuZhang's PT-Tool rows, our tool stages)."""
    return CODE_START in solution or OUTPUT_START in solution
