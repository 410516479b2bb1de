"""Tests for training/data.py and what SFTTrainer makes of it: stage 1/2 packing keeps every token of an over-long
example, the loss covers the prompt unless `completion_only_loss` is set, rows render exactly as the chat template,
and decontamination drops or refuses rows that overlap given evaluation files (a planted overlap)."""

import json
import sys
from pathlib import Path

import pytest


pytest.importorskip("trl")  # the training extra; absent from the vLLM test environment
REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
RECIPES = TRAINING / "recipes"
sys.path.insert(0, str(TRAINING))

import data  # noqa: E402
import sft  # noqa: E402

from numina_kit.data.problems import synthetic_problems  # noqa: E402
from numina_kit.errors import InputError  # noqa: E402
from numina_kit.protocols.tora import CHAT_TEMPLATE, render_messages  # noqa: E402


MAX_LENGTH = 64


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    """A tokenizer trained on a few synthetic solutions and a one-layer model for it."""
    from numina_kit.models.demo import build_model, train_tokenizer
    from numina_kit.protocols.tora import render_example

    problems = synthetic_problems(8, seed=3)
    tokenizer = train_tokenizer([render_example(p.problem, p.solution, "<eos>") for p in problems], vocab_size=300)
    return problems, tokenizer, build_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2)


def rendered(problems, tokenizer):
    from datasets import Dataset

    return data.render_prompt_completion(Dataset.from_list([p.to_row() for p in problems]), tokenizer.eos_token)


def prepared(recipe: Path, tiny, tmp_path, *extra: str):
    """SFTTrainer's training set for `recipe` at max_length 64 (every example is longer), and the rendered rows."""
    from trl import SFTTrainer

    problems, tokenizer, model = tiny
    argv = ["--config", str(recipe), "--use_cpu", "true", "--max_length", str(MAX_LENGTH), "--report_to", "none",
            "--eval_strategy", "no", "--output_dir", str(tmp_path), *extra]  # fmt: skip
    _, args, _, _ = sft.make_parser().parse_args_and_config(argv)
    if args.completion_only_loss is None:
        args.completion_only_loss = False  # as sft.main does
    rows = rendered(problems, tokenizer)
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    return trainer.train_dataset, rows


@pytest.mark.parametrize("stage", ["stage1_cot.yaml", "stage2_tir.yaml"])
def test_stage_packing_keeps_every_token_of_over_long_examples(stage, tiny, tmp_path):
    from collections import Counter

    tokenizer = tiny[1]
    recipe = RECIPES / "deepseek-math-7b" / stage
    # In file order, the packed blocks are the examples' tokens end to end, cut every 64 tokens.
    packed, rows = prepared(recipe, tiny, tmp_path, "--shuffle_dataset", "false")
    examples = [tokenizer(row["prompt"] + row["completion"])["input_ids"] for row in rows]
    assert min(map(len, examples)) > MAX_LENGTH  # every example must be split across blocks
    assert all(example[-1] == tokenizer.eos_token_id for example in examples)
    blocks = packed["input_ids"]
    assert max(map(len, blocks)) == MAX_LENGTH
    stream = [token for block in blocks for token in block]
    assert stream == [token for example in examples for token in example]
    assert [token for block in packed["labels"] for token in block] == stream  # the loss covers every token
    # As the recipe runs it (examples shuffled before packing, blocks after), the same tokens are all there.
    shuffled, _ = prepared(recipe, tiny, tmp_path)
    assert Counter(token for block in shuffled["input_ids"] for token in block) == Counter(stream)


def test_trl_default_bfd_packing_would_cut_over_long_examples(tiny, tmp_path):
    """The strategy matters: TRL's default keeps only the first max_length tokens of each example."""
    packed, rows = prepared(
        RECIPES / "deepseek-math-7b" / "stage2_tir.yaml", tiny, tmp_path, "--packing_strategy", "bfd"
    )
    assert sum(map(len, packed["input_ids"])) == MAX_LENGTH * len(rows)


def test_completion_only_loss_masks_the_prompt(tiny, tmp_path):
    unpacked = ("--max_length", "512")  # whole examples: the tiny recipe does not pack
    packed, rows = prepared(RECIPES / "tiny" / "sft.yaml", tiny, tmp_path, *unpacked, "--completion_only_loss", "true")
    tokenizer = tiny[1]
    prompt_tokens = len(tokenizer(rows[0]["prompt"])["input_ids"])
    labels = packed[0]["labels"]
    assert labels[:prompt_tokens] == [-100] * prompt_tokens
    assert -100 not in labels[prompt_tokens:]

    whole, _ = prepared(RECIPES / "tiny" / "sft.yaml", tiny, tmp_path, *unpacked)  # the recipes': prompt included
    assert whole[0]["labels"] == whole[0]["input_ids"]


def test_prompt_and_completion_are_the_chat_template(tiny):
    problems, tokenizer, _ = tiny
    tokenizer.chat_template = CHAT_TEMPLATE
    row = rendered(problems[:1], tokenizer)[0]
    expected = tokenizer.apply_chat_template(
        render_messages(problems[0].problem, problems[0].solution), tokenize=False
    )
    assert row["prompt"] + row["completion"] == expected
    assert row["completion"].endswith(tokenizer.eos_token)


# ---------------------------------------------------------------------------------------------------------------------
# Decontamination
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path, str]:
    """A training file of 6 problems and an evaluation file whose one problem is a reworded copy of training row 2."""
    problems = synthetic_problems(6, seed=11)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(p.to_row()) + "\n" for p in problems))
    evaluation = tmp_path / "aime.jsonl"
    copied = problems[2].problem.upper().replace("$", " ")  # case, spacing and LaTeX do not hide an overlap
    rows = [{"id": "a", "problem": copied, "answer": "1"}, {"id": "b", "problem": "An unrelated question?"}]
    evaluation.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return train, evaluation, problems[2].problem


def parse_data(*argv: str) -> data.DataArguments:
    return sft.make_parser().parse_args_and_config(
        ["--config", str(RECIPES / "tiny" / "sft.yaml"), "--use_cpu", "true", *argv]
    )[0]


def test_decontamination_drops_the_planted_row(planted):
    train, evaluation, copied = planted
    rows = data.load_rows(parse_data("--dataset_name", str(train), "--decontaminate_against", str(evaluation)))[
        "train"
    ]
    assert len(rows) == 5 and copied not in [data.problem_text(row) for row in rows]
    assert len(data.load_rows(parse_data("--dataset_name", str(train)))["train"]) == 6


def test_decontamination_can_refuse(planted):
    train, evaluation, _ = planted
    args = parse_data("--dataset_name", str(train), "--decontaminate_against", str(evaluation),
                      "--contaminated_rows", "refuse")  # fmt: skip
    with pytest.raises(InputError, match="1 train rows overlap the evaluation files"):
        data.load_rows(args)


def test_decontamination_covers_synthetic_data(planted):
    _, evaluation, _ = planted
    problems = synthetic_problems(40, seed=1)
    evaluation.write_text(json.dumps({"problem": problems[5].problem}) + "\n")
    args = parse_data("--synthetic_size", "40", "--decontaminate_against", str(evaluation))
    kept = [data.problem_text(row) for row in data.load_rows(args)["train"]]
    assert problems[5].problem not in kept and len(kept) < 40


def test_missing_evaluation_file_is_an_input_error(planted):
    train, _, _ = planted
    with pytest.raises(InputError, match="not found"):
        data.load_rows(parse_data("--dataset_name", str(train), "--decontaminate_against", "missing.jsonl"))
