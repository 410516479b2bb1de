"""Tests for numina_kit.data.problems's training side: dataset rows to chat messages, and the synthetic TIR problems."""

import subprocess
import sys

import pytest

from numina_kit.answers.extract import extract_answer
from numina_kit.data.jsonl import write_jsonl
from numina_kit.data.problems import SYNTHETIC_KINDS, load_problems, synthetic_problems, to_messages
from numina_kit.errors import InputError
from numina_kit.protocols.tora import CHAT_TEMPLATE, extract_code_blocks, render_example, render_prompt


COT_ROW = {
    "source": "amc_aime",
    "problem": "What is $1+1$?",
    "solution": "It is $\\boxed{2}$.",
    "messages": [
        {"role": "user", "content": "What is $1+1$?"},
        {"role": "assistant", "content": "It is $\\boxed{2}$."},
    ],
}
TIR_ROW = {
    "problem": "What is $2^{10}$?",
    "solution": "```python\nprint(2**10)\n```\n```output\n1024\n```\n$\\boxed{1024}$",
    "messages": [
        {"role": "system", "content": ""},
        {"role": "user", "content": "What is $2^{10}$?"},
        {"role": "assistant", "content": "```python\nprint(2**10)\n```\n```output\n1024\n```\n$\\boxed{1024}$"},
    ],
}


@pytest.mark.parametrize(
    ("row", "problem", "solution"),
    [
        (COT_ROW, COT_ROW["problem"], COT_ROW["solution"]),
        (TIR_ROW, TIR_ROW["problem"], TIR_ROW["solution"]),
        ({"problem": "p", "solution": "s"}, "p", "s"),
    ],
    ids=["numinamath-cot", "numinamath-tir-with-system", "problem-solution-only"],
)
def test_to_messages_gives_one_user_and_one_assistant_turn(row, problem, solution):
    assert to_messages(row) == [{"role": "user", "content": problem}, {"role": "assistant", "content": solution}]


@pytest.mark.parametrize(
    "row",
    [
        {"problem": "p"},
        {"solution": "s"},
        {"problem": " ", "solution": "s"},
        {"messages": [{"role": "user", "content": "p"}]},
        {"messages": [{"role": "assistant", "content": "s"}, {"role": "user", "content": "p"}]},
        {"messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": None}]},
    ],
    ids=["no-solution", "no-problem", "blank-problem", "no-assistant", "wrong-order", "non-text"],
)
def test_to_messages_rejects_malformed_rows(row):
    with pytest.raises(InputError):
        to_messages(row)


def test_rendered_messages_match_the_inference_format():
    from jinja2 import Template

    messages = to_messages(TIR_ROW)
    text = Template(CHAT_TEMPLATE).render(messages=messages, eos_token="<eos>", add_generation_prompt=False)
    assert text == render_example(TIR_ROW["problem"], TIR_ROW["solution"], "<eos>")
    assert text.startswith(render_prompt(TIR_ROW["problem"]))


PROBLEMS = synthetic_problems(100, seed=3)


def test_synthetic_problems_cover_every_kind_with_aimo_answers():
    assert {p.kind for p in PROBLEMS} == set(SYNTHETIC_KINDS)
    assert all(0 <= p.answer <= 999 for p in PROBLEMS)
    assert len({p.problem for p in PROBLEMS}) == len(PROBLEMS)


@pytest.mark.parametrize("problem", PROBLEMS[:10], ids=lambda p: p.kind)
def test_synthetic_solution_output_is_what_its_code_prints(problem):
    blocks = extract_code_blocks(problem.solution)
    assert blocks == [problem.code + "\n"]
    printed = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=10).stdout
    assert f"```output\n{printed.strip()}\n```\n" in problem.solution
    assert printed.strip() == str(problem.answer)
    assert extract_answer(problem.solution) == str(problem.answer)


def test_synthetic_problems_are_reproducible_and_exclusion_holds():
    again = synthetic_problems(100, seed=3)
    assert [p.problem for p in again] == [p.problem for p in PROBLEMS]
    held_out = {p.problem for p in PROBLEMS[:50]}
    fresh = synthetic_problems(200, seed=3, exclude=held_out)
    assert not held_out & {p.problem for p in fresh}


def test_unknown_synthetic_kind_is_an_input_error():
    with pytest.raises(InputError, match="unknown synthetic kind"):
        synthetic_problems(3, kinds=("product", "calculus"))


def test_synthetic_rows_round_trip_through_load_problems(tmp_path):
    path = write_jsonl([p.to_row() for p in PROBLEMS[:5]], tmp_path / "set.jsonl")
    loaded = load_problems(path)
    assert [(p.problem, p.answer) for p in loaded] == [(p.problem, str(p.answer)) for p in PROBLEMS[:5]]


def test_demo_fixture_is_held_out_from_the_tiny_training_set():
    from pathlib import Path

    fixture = Path(__file__).parents[1] / "fixtures" / "demo_problems.jsonl"
    demo = load_problems(fixture)
    assert len(demo) == 50 and all(p.answer is not None for p in demo)
    train = synthetic_problems(6000, seed=1, exclude={p.problem for p in demo})
    assert not {p.problem for p in demo} & {p.problem for p in train}


def test_prompt_tokens_are_a_prefix_of_the_training_example_tokens():
    """The prompt inference sends must tokenize as the start of what training saw (no space glued to a word)."""
    from numina_kit.models.demo import EOS, train_tokenizer

    tokenizer = train_tokenizer([render_example(p.problem, p.solution, EOS) for p in PROBLEMS])
    for p in PROBLEMS[:20]:
        prompt = tokenizer(render_prompt(p.problem)).input_ids
        full = tokenizer(render_example(p.problem, p.solution, EOS)).input_ids
        assert full[: len(prompt)] == prompt
        assert full[-1] == tokenizer.eos_token_id
