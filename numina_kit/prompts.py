"""The text format of NuminaMath-7B-TIR, in one place: chat template, code and output fences, stop string.

Training renders examples with `CHAT_TEMPLATE` and inference builds prompts with `render_prompt`, so the two cannot
drift apart. The format is ToRA's, as NuminaMath-TIR uses it:

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
ends with the tokenizer's EOS so that a trained model learns to stop (numina.md §1, §7.8).
"""

import re


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
