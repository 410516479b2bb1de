"""The comparisons real-data tests and benchmarks both measure with: recorded vs extracted answers, rewritten
forms of an answer, and the executed code blocks of ToRA traces with their recorded outputs."""

import re
from pathlib import Path

from numina_kit.answers import is_equivalent, parse_integer
from numina_kit.data.jsonl import read_jsonl


# ---------------------------------------------------------------- answers: the comparisons the real-data figures use


def answers_agree(recorded: str, extracted: str | None) -> str | None:
    """How an extracted answer agrees with a recorded one: "same" text, same "integer" (`4.0` and `4`), or
    "equivalent" (`is_equivalent(recorded, extracted)`); None when it does not."""
    if extracted is None:
        return None
    if extracted == recorded:
        return "same"
    recorded_int = parse_integer(recorded)
    if recorded_int is not None and recorded_int == parse_integer(extracted):
        return "integer"
    if is_equivalent(recorded, extracted, timeout=5.0):
        return "equivalent"
    return None


def equivalent_forms(answer: str) -> dict[str, str]:
    """`answer` rewritten in forms that mean the same, by name: `$...$`, `\\boxed{}`, `\\frac` <-> `\\dfrac`,
    more and fewer spaces, `\\left(`/`\\right)` added or removed, `\\frac{a}{b}` as `(a)/(b)`."""
    forms = {"dollars": f"${answer}$", "boxed": f"\\boxed{{{answer}}}"}
    if "\\dfrac" in answer:
        forms["frac"] = answer.replace("\\dfrac", "\\frac")
    elif "\\frac" in answer:
        forms["frac"] = answer.replace("\\frac", "\\dfrac")
    spaced = re.sub(r"\s*([,+=])\s*", r"\1 ", answer).strip()
    if spaced != answer:
        forms["spaced"] = spaced
    tight = re.sub(r"(?<![a-zA-Z])\s+|\s+(?![a-zA-Z])", "", answer)  # keeps the space in `\cot x`
    if tight != answer:
        forms["tight"] = tight
    if "\\left" in answer:
        forms["left_right"] = re.sub(r"\\(?:left|right)(?![a-zA-Z])\s*", "", answer)
    elif sum(map(answer.count, "([")) == sum(map(answer.count, ")]")) > 0:
        closed = re.sub(r"[)\]]", lambda m: "\\right" + m.group(0), answer)
        forms["left_right"] = re.sub(r"[(\[]", lambda m: "\\left" + m.group(0), closed)
    slashed = re.sub(r"(?<![\d\s])\s*\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", answer)
    if slashed != answer and not re.search(r"\d\s*\\[dt]?frac", answer):  # `1\frac{4}{5}` is a mixed number
        forms["slash"] = slashed
    return forms


# ---- Executed code blocks of ToRA traces: the sandbox's fidelity replay (its test and its benchmark) ---------------

TRACE_BLOCK = re.compile(r"```python\n(.*?)```\n```output\n(.*?)\n```", re.DOTALL)


def load_trace_blocks(path: str | Path) -> list[tuple[str, int, str, str]]:
    """(trace id, block index, code, recorded output) for every executed block of a JSONL file of ToRA traces (one
    `{"id", "solution"}` object a line, each code block followed by the output the original executor printed)."""
    blocks = []
    for row in read_jsonl(path):
        for index, (code, output) in enumerate(TRACE_BLOCK.findall(row["solution"])):
            blocks.append((row["id"], index, code, output))
    return blocks


def reproduces(recorded: str, status: str, output: str) -> bool:
    """Whether a rerun's output matches the recorded one; errors compare on their last line only (ToRA recorded
    only the final exception line)."""
    if output.strip() == recorded.strip():
        return True
    if status != "ok":
        return output.strip().splitlines()[-1:] == recorded.strip().splitlines()[-1:]
    return False
