"""Tool solutions made honest: run every code block in the sandbox and put what it printed in its output block.

A written tool solution carries ```output blocks that its writer *claims* the code printed. JiuZhang3.0's released
PT-Tool data kept those claims (replayed here, most blocks do not print what is recorded: docs/benchmarks.md); we
never do. `verify_tool_solution` runs the blocks in order (in one interpreter per solution when the sandbox is
stateful, so a block may use an earlier one's variables), replaces every claimed output by the real one (or
inserts it where none was written), and rejects the solution when:

- a block fails (`code error`) or runs out of time (`code timeout`): the prose after it was written for an output
  that did not happen;
- the final `\\boxed{}` answer disagrees with the last output (`\\boxed disagrees with the output`): it appears
  there as a whole token, or the boxed decimal is a printed number rounded, or the answer judge
  (`numina_kit.answers.judge`, general rule) accepts it against the last printed line;
- no block printed anything (`no output`), so the answer cannot be checked.
"""

import re
from dataclasses import dataclass

from numina_kit.answers import GENERAL, extract_boxed, judge
from numina_kit.data.stages import Rejected, split_blocks
from numina_kit.protocols.tora import CODE_END, CODE_START, OUTPUT_START, render_output
from numina_kit.sandbox.pool import Sandbox


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WITH_UNIT = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:\\[,;!% ]|%|\s|\\(?:text|mathrm)\{[^{}]*\}|[a-zA-Z]+)+")


@dataclass
class Verified:
    """A tool solution whose outputs are the sandbox's, and what changed: claims that differed or were missing."""

    solution: str
    blocks: int
    claims_wrong: int  # written output blocks whose text differed from what the code printed
    claims_missing: int  # code blocks without a written output block


def verify_tool_solution(
    solution: str, sandbox: Sandbox | None, *, key: str = "", answer_timeout: float = 2.0
) -> Verified:
    """Run `solution`'s code blocks under interpreter `key` and return it with real outputs; `Rejected` otherwise.

    With `sandbox=None` the solution came out of the TIR loop (`numina_kit.sctir.loop.solve`), whose output blocks
    are the sandbox's already: only their presence and the boxed answer are checked, and a block that failed stays,
    with its error, as the model saw it and went on (as in NuminaMath-TIR).
    """
    pieces = split_blocks(solution)
    if sandbox is None:
        return _check_executed(solution, pieces, answer_timeout)
    parts: list[str] = []
    outputs: list[str] = []
    wrong = missing = 0
    try:
        for index, (kind, text) in enumerate(pieces):
            if kind == "prose":
                parts.append(text)
            elif kind == "code":
                result = sandbox.run(text, key=key)
                if result.status == "timeout":
                    raise Rejected("code timeout")
                if result.status != "ok":
                    raise Rejected("code error")
                claimed = (
                    pieces[index + 1][1] if index + 1 < len(pieces) and pieces[index + 1][0] == "output" else None
                )
                if claimed is None:
                    missing += 1
                elif claimed.strip() != result.output.strip():
                    wrong += 1
                outputs.append(result.output)
                parts.append(f"{CODE_START}{text}{CODE_END}{OUTPUT_START}{render_output(result.output.strip())}")
    finally:
        sandbox.forget(key)
    _check_answer(solution, [output for output in outputs if output.strip()], answer_timeout)
    return Verified("".join(parts).strip(), len(outputs), wrong, missing)


def _check_executed(solution: str, pieces: list[tuple[str, str]], answer_timeout: float) -> Verified:
    kinds = [kind for kind, _ in pieces]
    if any(kind == "code" and kinds[i + 1 : i + 2] != ["output"] for i, kind in enumerate(kinds)):
        raise Rejected("code without output")
    outputs = [text for kind, text in pieces if kind == "output"]
    _check_answer(solution, [o for o in outputs if o.strip()], answer_timeout)
    return Verified(solution.strip(), len(outputs), 0, 0)


def _check_answer(solution: str, printed: list[str], answer_timeout: float) -> None:
    if not printed:
        raise Rejected("no output")
    boxed = extract_boxed(solution)
    if not boxed:
        raise Rejected("no \\boxed answer")
    if not answer_agrees(boxed, printed[-1], timeout=answer_timeout):
        raise Rejected("\\boxed disagrees with the output")


def answer_agrees(boxed: str, output: str, *, timeout: float = 2.0) -> bool:
    """Whether a boxed answer says what `output` printed (see the module docstring for the three ways)."""
    value = boxed.strip().strip("$").strip().rstrip(".").replace("{,}", "").replace(",", "")
    if not value:
        return False
    text = output.replace(",", "")
    if re.search(rf"(?<![\w.]){re.escape(value)}(?![\w]|\.\d)", text):
        return True
    unit = _WITH_UNIT.fullmatch(value)  # "27.73 \\, \\text{s}", "40.73\\%": the number is the answer
    if unit:
        value = unit.group(1)
    if _NUMBER.fullmatch(value):
        decimals = len(value.split(".")[1]) if "." in value and "e" not in value.lower() else 0
        # a boxed 0.49 may round a printed 0.4934; a boxed integer must be printed as that integer (or 3.0 for 3)
        tolerance = 0.5 * 10**-decimals if decimals else 1e-9 * max(1.0, abs(float(value)))
        if any(abs(float(number) - float(value)) <= tolerance for number in _NUMBER.findall(text)):
            return True
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    return bool(last) and len(last) <= 200 and judge(last, value, GENERAL, timeout=timeout)
