"""Tests for training/recipes: every recipe parses through TRL's parser, trains with our chat template, and the 7B
recipes state NuminaMath's global batch, learning rate, schedule and sequence length."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml


REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
RECIPES = TRAINING / "recipes"
sys.path.insert(0, str(TRAINING))

import components  # noqa: E402
import kto  # noqa: E402
import sft  # noqa: E402

from numina_kit.prompts import CHAT_TEMPLATE  # noqa: E402


TRAINING_RECIPES = [p for folder in ("deepseek-math-7b", "tiny") for p in sorted((RECIPES / folder).glob("*.yaml"))]
SFT_RECIPES = [p for p in TRAINING_RECIPES if not p.stem.startswith("kto")]
KTO_RECIPES = [p for p in TRAINING_RECIPES if p.stem.startswith("kto")]
SEVEN_B = sorted((RECIPES / "deepseek-math-7b").glob("*.yaml"))
GPUS = 8


def parse(script, recipe: Path, *extra: str):
    # use_cpu: transformers refuses bf16 recipes on a machine without a GPU (CI); every other key is the recipe's.
    return script.make_parser().parse_args_and_config(["--config", str(recipe), "--use_cpu", "true", *extra])


def test_recipes_are_found():
    assert {p.stem for p in SFT_RECIPES} >= {"stage1_cot", "stage2_tir", "sft"}
    assert {p.parent.name for p in KTO_RECIPES} == {"deepseek-math-7b", "tiny"}


@pytest.mark.parametrize("recipe", SFT_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sft_recipe_parses_and_trains_with_the_inference_template(recipe):
    data_args, training_args, model_args, scratch = parse(sft, recipe)
    assert data_args.dataset_name
    assert components.resolve_chat_template(training_args.chat_template_path) == CHAT_TEMPLATE
    assert scratch.from_scratch or model_args.model_name_or_path


@pytest.mark.parametrize("recipe", KTO_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_kto_recipe_parses(recipe):
    data_args, training_args, model_args, sampling = parse(kto, recipe)
    assert model_args.model_name_or_path and data_args.dataset_name
    assert sampling.num_samples == 4
    assert training_args.chat_template_path is None if hasattr(training_args, "chat_template_path") else True


@pytest.mark.parametrize("script", [sft, kto], ids=["sft", "kto"])
def test_misspelt_recipe_key_fails(script, tmp_path):
    recipe = SFT_RECIPES[0] if script is sft else KTO_RECIPES[0]
    text = recipe.read_text().replace("learning_rate:", "learnig_rate:")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    with pytest.raises(ValueError, match="learnig_rate"):
        parse(script, broken)


@pytest.mark.parametrize("stale", ["warmup_ratio: 0.1", "max_seq_length: 1024", "torch_dtype: bfloat16"])
def test_keys_removed_from_trl_and_transformers_fail(stale, tmp_path):
    broken = tmp_path / "stale.yaml"
    broken.write_text((RECIPES / "deepseek-math-7b" / "stage2_tir.yaml").read_text() + f"\n{stale}\n")
    with pytest.raises(ValueError, match=stale.split(":")[0]):
        parse(sft, broken)


def test_command_line_overrides_the_recipe():
    _, training_args, _, _ = parse(sft, RECIPES / "tiny" / "sft.yaml", "--learning_rate", "3e-4", "--max_steps", "7")
    assert training_args.learning_rate == 3e-4 and training_args.max_steps == 7


@pytest.mark.parametrize("recipe", SEVEN_B, ids=lambda p: p.name)
def test_seven_b_recipes_state_numina_hyperparameters(recipe):
    _, args, model_args, _ = parse(kto if "kto" in recipe.stem else sft, recipe)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * GPUS == 32
    assert args.lr_scheduler_type == "cosine" and args.bf16
    assert args.max_length in (1024, 2048)
    comments = recipe.read_text()
    for fact in ("global batch 32", "learning rate", "cosine", "sequence length"):
        assert fact in comments, f"{recipe.name} comments do not state {fact}"
    if "stage2" in recipe.stem:
        assert (
            model_args.model_name_or_path == parse(sft, RECIPES / "deepseek-math-7b" / "stage1_cot.yaml")[1].output_dir
        )
    if "stage" in recipe.stem:
        assert args.learning_rate == 2e-5 and args.packing


def test_stage_warmups_follow_numina_final_configs():
    stage1 = parse(sft, RECIPES / "deepseek-math-7b" / "stage1_cot.yaml")[1]
    stage2 = parse(sft, RECIPES / "deepseek-math-7b" / "stage2_tir.yaml")[1]
    assert (stage1.warmup_steps, stage2.warmup_steps) == (0.0, 0.1)
    assert (stage1.num_train_epochs, stage2.num_train_epochs) == (3, 4)


@pytest.mark.parametrize("name", ["zero3.yaml", "zero3_multinode.yaml"])
def test_accelerate_configs_are_zero3_on_h100_nodes(name):
    config = yaml.safe_load((RECIPES / "accelerate_configs" / name).read_text())
    assert config["distributed_type"] == "DEEPSPEED" and config["deepspeed_config"]["zero_stage"] == 3
    assert config["num_processes"] == 8 * config["num_machines"]
    assert config["mixed_precision"] == "bf16"


@pytest.mark.parametrize("script", ["sft.py", "kto.py"])
def test_script_without_arguments_prints_usage_naming_the_recipes(script):
    done = subprocess.run(
        [sys.executable, str(TRAINING / script)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 2
    assert done.stdout.startswith(f"usage: python training/{script}")
    expected = "training/recipes/tiny/sft.yaml" if script == "sft.py" else "training/recipes/tiny/kto.yaml"
    assert expected in done.stdout


@pytest.mark.parametrize("script", ["sft.py", "kto.py"])
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--config", "{bad_recipe}"], "learning_rat"),
        (["--config", "{recipe}", "--learning_rat", "3"], "learning_rat"),  # no prefix match for --learning_rate
    ],
)
def test_bad_recipe_or_key_is_a_one_line_error(script, extra, message, tmp_path):
    recipe = RECIPES / "tiny" / ("sft.yaml" if script == "sft.py" else "kto.yaml")
    bad_recipe = tmp_path / "bad.yaml"
    bad_recipe.write_text(recipe.read_text().replace("learning_rate:", "learning_rat:"))
    argv = [arg.format(recipe=recipe, bad_recipe=bad_recipe) for arg in extra]
    done = subprocess.run(
        [sys.executable, str(TRAINING / script), *argv], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == errors[0] and message in errors[0]


def test_balanced_weights_give_both_classes_equal_mass():
    desirable, undesirable = kto.balanced_weights(10, 30)
    assert desirable * 10 == pytest.approx(undesirable * 30)
    assert kto.balanced_weights(30, 10) == (1.0, 3.0)
    with pytest.raises(ValueError, match="both desirable and undesirable"):
        kto.balanced_weights(0, 5)


@pytest.mark.parametrize(
    ("row", "expected"),
    [({"answer": "42"}, "42"), ({"solution": "so $\\boxed{7}$"}, "7"), ({"problem": "p"}, None)],
    ids=["answer-column", "numinamath-tir-solution", "nothing"],
)
def test_kto_reference_answer(row, expected):
    assert kto.reference_answer(row) == expected
