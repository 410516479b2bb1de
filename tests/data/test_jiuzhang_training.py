"""Tests for JiuZhang's training side: the recipes' numbers, `input`/`output` rows in training/sft.py, the WSD schedule.

Covers: the 7B synthesis-model recipe (the authors' lr, epochs, global batch, schedule, weight decay, length) and
the final-model recipe (warmup-stable-decay 3% / 85% / 0.1x linear, 1 epoch, lr 1e-5, packing 2048 in order) parse
through TRL's parser; the LESS recipes; raw rows become TRL prompt/completion pairs (no chat template, loss on the
completion) and from-scratch tokenizer text; the decay fraction becomes steps and shapes the learning rate;
JiuZhang3.0's released samples load as they are (skipped without ../shared/data); the final mix keeps PT first.
"""

import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "training" / "recipes" / "jiuzhang"
sys.path.insert(0, str(REPO / "training"))

import data  # noqa: E402
import jiuzhang_select  # noqa: E402
import jiuzhang_write  # noqa: E402
import sft  # noqa: E402

from numina_kit.data.jsonl import read_jsonl, write_jsonl  # noqa: E402
from numina_kit.data.problems import example_text  # noqa: E402


GPUS = 8


def parse(script, name: str, *extra: str):
    return script.make_parser().parse_args_and_config(["--config", str(RECIPES / name), "--use_cpu", "true", *extra])


def test_synthesis_model_recipe_is_the_authors():
    data, args, model, scratch = parse(sft, "synthesis_7b.yaml")
    assert model.model_name_or_path == "deepseek-ai/deepseek-math-7b-rl" and not scratch.from_scratch
    assert args.learning_rate == 1e-5 and args.num_train_epochs == 5 and args.weight_decay == 0.1
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * GPUS == 32
    assert args.lr_scheduler_type == "cosine" and args.warmup_steps == 0 and args.max_length == 2048 and args.bf16
    assert args.completion_only_loss
    assert data.dataset_name.endswith(".jsonl")


def test_final_model_recipe_is_warmup_stable_decay_in_order():
    _, args, model, _ = parse(sft, "final_7b.yaml")
    assert args.lr_scheduler_type == "warmup_stable_decay" and args.warmup_steps == 0.03
    assert args.lr_scheduler_kwargs == {"decay_ratio": 0.15, "decay_type": "linear", "min_lr_ratio": 0.1}
    assert args.num_train_epochs == 1 and args.learning_rate == 1e-5 and args.max_length == 2048
    assert args.completion_only_loss
    assert args.packing and args.packing_strategy == "wrapped" and args.train_sampling_strategy == "sequential"
    assert model.model_name_or_path


@pytest.mark.parametrize("name", ["select_7b.yaml", "select_tiny.yaml"])
def test_selection_recipes(name):
    selection, args, model = parse(jiuzhang_select, name)
    assert model.use_peft and set(model.lora_target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert args.save_strategy == "epoch" and not args.save_only_model and not args.gradient_checkpointing
    assert selection.projection_dim == 8192 and selection.warmup_share == 0.05 and args.logging_steps == 1
    if name == "select_7b.yaml":  # LESS's warmup
        assert (model.lora_r, model.lora_alpha, args.num_train_epochs, args.learning_rate) == (128, 512, 4, 2e-5)
        assert selection.budget == 4000


@pytest.mark.parametrize("name", ["base_tiny.yaml", "synthesis_tiny.yaml", "final_tiny.yaml"])
def test_tiny_recipes_parse(name):
    _, args, model, scratch = parse(sft, name)
    assert args.use_cpu and (scratch.from_scratch or model.model_name_or_path)


def test_raw_rows_become_prompt_completion_pairs():
    from datasets import Dataset

    rows = Dataset.from_list(
        [{"input": "## Question\nQ\n\n## Solution\n", "output": "A", "text_id": "t", "stage": "s"}]
    )
    rendered = data.render_prompt_completion(rows, "<eos>")
    assert rendered.column_names == ["prompt", "completion"] and rendered[0] == {
        "prompt": "## Question\nQ\n\n## Solution\n",
        "completion": "A<eos>",
    }
    assert data.problem_text(rows[0]) == "## Question\nQ\n\n## Solution\n"  # what decontamination compares
    assert example_text({"input": "x", "output": "y"}, "<eos>") == "xy<eos>"
    assert example_text({"problem": "p", "solution": "s"}, "<eos>") == "### Problem: p\n### Solution: s<eos>"


def test_decay_ratio_becomes_steps(tmp_path):
    from datasets import Dataset
    from schedules import SFTTrainer
    from trl import SFTConfig

    from numina_kit.models.demo import build_model, train_tokenizer

    tokenizer = train_tokenizer(["a b c"] * 5, vocab_size=280)
    args = SFTConfig(
        output_dir=str(tmp_path), learning_rate=1.0, lr_scheduler_type="warmup_stable_decay", warmup_steps=0.03,
        lr_scheduler_kwargs={"decay_ratio": 0.15, "decay_type": "linear", "min_lr_ratio": 0.1}, use_cpu=True,
        report_to="none",
    )  # fmt: skip
    data = Dataset.from_list([{"prompt": "a", "completion": "b"}])
    trainer = SFTTrainer(model=build_model(tokenizer, hidden_size=16, num_layers=1, num_heads=2), args=args,
                         train_dataset=data, processing_class=tokenizer)  # fmt: skip
    trainer.create_optimizer()
    scheduler = trainer.create_scheduler(num_training_steps=100)
    rates = []
    for _ in range(101):
        rates.append(scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        scheduler.step()
    assert rates[0] < rates[2] < rates[3] == 1.0  # 3 warmup steps
    assert rates[3] == rates[50] == rates[85] == 1.0 and rates[86] < 1.0  # stable to 85%
    assert rates[100] == pytest.approx(0.1) and rates[90] == pytest.approx(1 - 0.9 * 5 / 15)  # linear to 0.1x


def test_released_samples_load_for_training(shared_data):
    for name in ("pt_cot_sample.jsonl", "pt_tool_sample.jsonl", "sft_sample.jsonl"):
        rows = data.load_rows(data.DataArguments(dataset_name=str(shared_data / "jiuzhang3" / name)))
        rendered = data.render_prompt_completion(rows["train"], "<eos>")
        assert rendered.num_rows >= 700 and rendered.column_names == ["prompt", "completion"]
        assert rendered[0]["prompt"].startswith("## Question\n")


def test_final_mix_puts_pretraining_rows_first(tmp_path):
    pt = write_jsonl([{"input": f"p{i}", "output": "x", "text_id": "t"} for i in range(20)], tmp_path / "pt.jsonl")
    sft_rows = write_jsonl([{"input": f"s{i}", "output": "y"} for i in range(5)], tmp_path / "sft.jsonl")
    summary = jiuzhang_write.mix([str(pt)], [str(sft_rows)], str(tmp_path / "mix.jsonl"), seed=1)
    mixed = read_jsonl(tmp_path / "mix.jsonl")
    assert summary == {"pretraining_rows": 20, "sft_rows": 5}
    assert [r["input"][0] for r in mixed] == ["p"] * 20 + ["s"] * 5 and set(mixed[0]) == {"input", "output"}
    assert [r["input"] for r in mixed[:20]] != [f"p{i}" for i in range(20)]  # shuffled within the part
