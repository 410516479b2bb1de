"""The Numina/ToRA protocol: NuminaMath-7B-TIR's text format (chat template, code and output fences, stop string).

Training renders examples with `CHAT_TEMPLATE` and inference builds prompts with `render_prompt`, so the two cannot
drift apart; `ToRA` is the same format as a `ToolProtocol`, the default of SC-TIR. The format is ToRA's, as
NuminaMath-TIR uses it:

    ### Problem: {problem}
    ### Solution: {prose}
    ```python
    {code}
    ```
    ```output
    {output}
    ```
    {prose ending in \\boxed{answer}}<eos>

Generation stops at `STOP` (the opening of an output block, kept in the text); the harness runs the last code block
and appends `render_output(result)`, and the model continues from there. Unlike Numina's template, an assistant turn
ends with the tokenizer's EOS so that a trained model learns to stop. Every block runs alone in fresh globals, as
ToRA's traces were made; an answer counts only after the model has seen code output.
"""

import re

from numina_kit.protocols.base import ToolCall, ToolProtocol, Turn


PROBLEM_PREFIX = "### Problem: "
SOLUTION_PREFIX = "### Solution: "
CODE_START = "```python\n"
CODE_END = "```\n"
OUTPUT_START = "```output\n"
OUTPUT_END = "```\n"
STOP = OUTPUT_START

# Jinja template for `tokenizer.chat_template`. System messages are dropped (Numina rendered them as ""); the
# assistant turn is closed by EOS. BOS is left to the tokenizer, as DeepSeek's adds it itself.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '### Problem: ' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Solution: ' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Solution: ' }}{% endif %}"
)

_CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def render_prompt(problem: str) -> str:
    """The generation prompt for a problem: what `CHAT_TEMPLATE` gives for one user turn plus the generation prompt."""
    return f"{PROBLEM_PREFIX}{problem}\n{SOLUTION_PREFIX}"


def render_output(output: str) -> str:
    """The text appended after `STOP` once the code has run: the output and the closing fence."""
    return f"{output}\n{OUTPUT_END}"


def render_messages(problem: str, solution: str) -> list[dict[str, str]]:
    """A problem and its solution as chat messages, the schema of NuminaMath-CoT and NuminaMath-TIR."""
    return [{"role": "user", "content": problem}, {"role": "assistant", "content": solution}]


def render_example(problem: str, solution: str, eos_token: str) -> str:
    """A whole training example as text, identical to `CHAT_TEMPLATE` applied to `render_messages`."""
    return render_prompt(problem) + solution + eos_token


def extract_code_blocks(text: str) -> list[str]:
    """Every closed ```python block in `text`, in order, without its fences."""
    return _CODE_BLOCK.findall(text)


def last_code_block(text: str) -> str | None:
    """The last closed ```python block, the one the harness runs after `STOP`; None when there is none."""
    blocks = extract_code_blocks(text)
    return blocks[-1] if blocks else None


class FencedCode:
    """ToRA's fences as a mixin of `ToolProtocol`s: stop at an output fence, run the last closed code block of the
    attempt, append its output block. `missing_block`: the error shown when the fence follows no closed block (None:
    no call at all, Numina's behaviour)."""

    missing_block: str | None = None

    @property
    def stop(self) -> tuple[str, ...]:
        return (STOP,)

    def parse(self, history: str, text: str, finish_reason: str) -> Turn:
        if text.endswith(STOP):
            code = last_code_block(history + text)
            if code is not None:
                return Turn(calls=(ToolCall(code),))
            return Turn(calls=(ToolCall("", error=self.missing_block),) if self.missing_block else ())
        return Turn(final=text, cut_off=finish_reason == "length")

    def render_results(self, turn: Turn, outputs: list[str]) -> str:
        return "".join(render_output(output) for output in outputs)

    def ran_code(self, text: str) -> bool:
        return OUTPUT_START in text


class ToRA(FencedCode, ToolProtocol):
    """NuminaMath-7B-TIR's format as a protocol: stop at an output fence, run the last code block, append its output.

    `parse` and the checks keep Numina's loop byte for byte: a completion that stops at `STOP` runs the last closed
    code block of the whole attempt; an answer is the last `\\boxed{}` (else an "answer is" phrase) of the new text,
    and counts only when the attempt holds a code block and an output block; a cut-off turn is not resumed.
    """

    name = "tora"
    stateful = False
    requires_code = True
    resume_cut_off = False
    boxed_only = False

    def __init__(self, *, eos_token: str = "", boxed_only: bool = False, stateful: bool = False) -> None:
        self.eos_token, self.boxed_only, self.stateful = eos_token, boxed_only, stateful

    def render_prompt(self, problem: str) -> str:
        return render_prompt(problem)

    @property
    def end_of_turn(self) -> str:
        return self.eos_token

    def wrote_code(self, text: str) -> bool:
        return last_code_block(text) is not None
