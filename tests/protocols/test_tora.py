"""numina_kit.protocols.tora (Numina's ToRA fences): the chat template, the prompt and output rendering, and code-block
extraction.

Run: pytest tests/protocols/test_tora.py
"""

import pytest

from numina_kit.models.demo import train_tokenizer
from numina_kit.protocols import tora as prompts


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["### Problem: x\n### Solution: ```python\nprint(1)\n```\n```output\n1\n```\n"] * 5)


def test_template_generation_prompt_equals_render_prompt(tokenizer):
    messages = [{"role": "user", "content": "What is $1+1$?"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == prompts.render_prompt("What is $1+1$?") == "### Problem: What is $1+1$?\n### Solution: "


def test_template_training_example_ends_with_eos(tokenizer):
    messages = prompts.render_messages("Find x.", "It is $\\boxed{2}$.")
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == prompts.render_example("Find x.", "It is $\\boxed{2}$.", tokenizer.eos_token)
    assert rendered.endswith("$\\boxed{2}$." + tokenizer.eos_token)
    assert tokenizer.eos_token != tokenizer.pad_token


def test_system_message_is_dropped(tokenizer):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q"}]
    assert tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == prompts.render_prompt("Q")


def test_stop_string_and_output_block_round_trip():
    step = "Compute.\n```python\nprint(6*7)\n```\n" + prompts.STOP
    assert step.endswith("```output\n")
    full = step + prompts.render_output("42") + "So $\\boxed{42}$."
    assert "```output\n42\n```\nSo" in full


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("no code", []),
        ("```python\nx = 1\n```\n", ["x = 1\n"]),
        ("```python\na\n```\n```output\n1\n```\n```python\nb\n```\n```output\n", ["a\n", "b\n"]),
        ("```python\nunclosed = True\n", []),
        ("```py\nnot python fence\n```", []),
    ],
)
def test_extract_code_blocks(text, blocks):
    assert prompts.extract_code_blocks(text) == blocks
    assert prompts.last_code_block(text) == (blocks[-1] if blocks else None)
