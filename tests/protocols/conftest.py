"""Tokenizers of the real families (gpt-oss, Qwen3): real special tokens and the real chat template text."""

import pytest

from numina_kit.models.families import train_family_tokenizer
from numina_kit.testing import CHAT_TEMPLATES, TOOL_PROBLEM, TOOL_TURNS


@pytest.fixture(scope="session")
def gpt_oss_tokenizer():
    template = (CHAT_TEMPLATES / "gpt-oss.jinja").read_text()
    return train_family_tokenizer("gpt-oss", [TOOL_PROBLEM, *TOOL_TURNS["harmony"]] * 2, template, vocab_size=600)


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    template = (CHAT_TEMPLATES / "qwen3.jinja").read_text()
    return train_family_tokenizer("qwen3", [TOOL_PROBLEM, *TOOL_TURNS["qwen3"]] * 2, template, vocab_size=600)
