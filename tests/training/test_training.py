"""End-to-end tests of training/sft.py and training/kto.py on CPU with a tiny model (slow: run with --runslow).

SFT trains a small Llama from scratch on synthetic TIR problems for a few dozen steps; the loss must fall, and the
saved model must reload through numina_kit.models.load.load_generator and stop at EOS. KTO samples SC-TIR completions
from that model, then trains a few steps on labelled samples; its loss must fall below the untrained 0.5 (1 - sigmoid(0)).
"""

import json
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
sys.path.insert(0, str(TRAINING))

import kto  # noqa: E402
import sft  # noqa: E402

from numina_kit.prompts import CHAT_TEMPLATE, render_prompt  # noqa: E402


pytestmark = pytest.mark.slow
HELD_OUT = REPO / "tests" / "fixtures" / "demo_problems.jsonl"


def losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft")
    args = sft.make_parser().parse_args_and_config(
        [
            "--config", str(TRAINING / "recipes" / "tiny" / "sft.yaml"),
            "--output_dir", str(out),
            "--held_out_problems", str(HELD_OUT),
            "--synthetic_size", "128",
            "--hidden_size", "64",
            "--num_hidden_layers", "2",
            "--num_attention_heads", "4",
            "--per_device_train_batch_size", "16",
            "--learning_rate", "3e-3",
            "--max_steps", "150",
            "--warmup_steps", "0",
            "--logging_steps", "5",
        ]
    )  # fmt: skip
    return sft.main(*args)


def test_sft_loss_goes_down_and_the_template_is_saved(sft_model):
    curve = losses(sft_model)
    assert len(curve) >= 5
    assert curve[-1] < 0.5 * curve[0]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sft_model)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_sft_model_reloads_and_stops_at_eos(sft_model):
    """Given a held-out solution up to its last sentence, the model ends it and emits EOS (Numina's never did)."""
    from numina_kit.data.problems import synthetic_problems
    from numina_kit.models.base import SamplingParams
    from numina_kit.models.load import load_generator

    generator = load_generator(sft_model, backend="hf")
    problems = synthetic_problems(4, seed=99)
    prompts = [render_prompt(p.problem) + p.solution.removesuffix(".") for p in problems]
    completions = generator.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=32))
    for completion in completions:
        assert completion.finish_reason == "stop" and completion.stop_reason is None, completion.text
        assert completion.text == "." and completion.num_tokens <= 2


def test_kto_samples_on_policy_and_its_loss_goes_down(sft_model, tmp_path):
    from numina_kit.data.problems import synthetic_problems

    sampling = kto.SamplingArguments(
        num_samples=4,
        sampling_max_rounds=2,
        sampling_max_new_tokens=96,
        sampling_backend="hf",
        sampling_temperature=1.0,
    )
    problems = [{"id": p.id, "problem": p.problem, "answer": str(p.answer)} for p in synthetic_problems(4, seed=5)]
    rows = kto.sample_completions(problems, str(sft_model), sampling)
    assert len(rows) >= 8
    assert all(row["prompt"] == render_prompt(problems[0]["problem"]) for row in rows[:1])
    assert any("```output\n" in row["completion"] for row in rows), "no candidate ran code"
    for row in rows:
        assert row["label"] == (row["answer"] is not None and row["answer"] == row["reference"])

    # The barely trained model is rarely right, so relabel: completions of the first two problems are desirable.
    desirable = {problems[0]["id"], problems[1]["id"]}
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({**row, "label": row["id"] in desirable}) + "\n" for row in rows))
    out = tmp_path / "kto"
    args = kto.make_parser().parse_args_and_config(
        [
            "--config", str(TRAINING / "recipes" / "tiny" / "kto.yaml"),
            "--model_name_or_path", str(sft_model),
            "--output_dir", str(out),
            "--samples_from", str(samples),
            "--learning_rate", "1e-3",
            "--num_train_epochs", "4",
            "--per_device_train_batch_size", "4",
            "--logging_steps", "1",
        ]
    )  # fmt: skip
    kto.main(*args)
    curve = losses(out)
    assert curve[0] == pytest.approx(0.5, abs=0.05)  # policy == reference at the start: 1 - sigmoid(0)
    assert min(curve[-3:]) < curve[0] - 0.05
    from numina_kit.models.load import load_generator

    assert load_generator(out, backend="hf").count_tokens("abc") > 0


def test_sft_on_one_local_file_with_eval_switched_on_trains_without_eval(tmp_path, caplog):
    """Stage 2 evaluates every epoch on a `test` split; a single JSONL (generate_tir's output) has only `train`."""
    from numina_kit.data.jsonl import write_jsonl
    from numina_kit.data.problems import synthetic_problems
    from numina_kit.prompts import render_messages

    rows = [
        {"problem": p.problem, "solution": p.solution, "messages": render_messages(p.problem, p.solution)}
        for p in synthetic_problems(32, seed=5)
    ]
    data = tmp_path / "tir.jsonl"
    write_jsonl(rows, data)
    out = tmp_path / "model"
    args = sft.make_parser().parse_args_and_config(
        [
            "--config", str(TRAINING / "recipes" / "tiny" / "sft.yaml"),
            "--dataset_name", str(data),
            "--output_dir", str(out),
            "--held_out_problems", str(HELD_OUT),
            "--hidden_size", "32",
            "--num_hidden_layers", "1",
            "--num_attention_heads", "2",
            "--max_steps", "2",
            "--eval_strategy", "epoch",
        ]
    )  # fmt: skip
    with caplog.at_level("WARNING"):
        assert sft.main(*args) == out
    assert "evaluation is switched off" in caplog.text
    assert (out / "config.json").is_file()
