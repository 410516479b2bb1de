"""Tests for training/recipes and the scripts' command line: every recipe parses through TRL's parser without a
FutureWarning, trains with our chat template, and the 7B recipes state NuminaMath's global batch, learning rate,
schedule, sequence length, packing strategy and KTO's vLLM limits; every bad input is a one-line error."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml


pytest.importorskip("trl")  # the training extra; absent from the vLLM test environment
REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
RECIPES = TRAINING / "recipes"
sys.path.insert(0, str(TRAINING))

import components  # noqa: E402
import kto  # noqa: E402
import kto_sample  # noqa: E402
import sft  # noqa: E402

from numina_kit.protocols.tora import CHAT_TEMPLATE  # noqa: E402


TRAINING_RECIPES = [p for folder in ("deepseek-math-7b", "tiny") for p in sorted((RECIPES / folder).glob("*.yaml"))]
SFT_RECIPES = [p for p in TRAINING_RECIPES if not p.stem.startswith("kto")]
KTO_RECIPES = [p for p in TRAINING_RECIPES if p.stem.startswith("kto")]
SEVEN_B = sorted((RECIPES / "deepseek-math-7b").glob("*.yaml"))
GPUS = 8


def parse(script, recipe: Path, *extra: str):
    # use_cpu: transformers refuses bf16 recipes on a machine without a GPU (CI); every other key is the recipe's.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated key (gradient_checkpointing) in a recipe
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
        assert args.packing_strategy == "wrapped" and not args.padding_free  # keeps every token; any attention
        assert args.completion_only_loss is False  # Numina's loss covered the prompt too
    assert args.activation_checkpointing


def test_seven_b_kto_recipe_states_its_sampling_limits():
    recipe = RECIPES / "deepseek-math-7b" / "kto.yaml"
    _, args, _, sampling = parse(kto, recipe)
    assert sampling.sampling_backend == "vllm" and sampling.sampling_tensor_parallel_size == 1
    assert 0 < sampling.sampling_gpu_memory_utilization <= 0.9
    assert sampling.answer_rule == "general"
    assert kto_sample.sampling_config(sampling, args.max_length).max_context_tokens == args.max_length
    text = recipe.read_text()
    for fact in ("kto_sample.py", "tensor_parallel", "gpu_memory_utilization", "resumes", "max_length"):
        assert fact in text, f"kto.yaml does not state {fact}"


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


def test_script_without_arguments_prints_usage_naming_the_recipes():
    """The real command line, once (the other scripts share its entry point: see the in-process tests below)."""
    done = subprocess.run(
        [sys.executable, str(TRAINING / "sft.py")], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 2 and done.stdout.startswith("usage: python training/sft.py")
    assert "training/recipes/tiny/sft.yaml" in done.stdout and "kto.yaml" not in done.stdout


@pytest.mark.parametrize("script", [kto_sample, kto], ids=["kto_sample", "kto"])
def test_kto_scripts_without_arguments_print_usage_naming_the_recipes(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [f"{script.__name__}.py"])
    with pytest.raises(SystemExit) as exit_:
        components.run_script(script.main, script.make_parser(), script.USAGE)
    out = capsys.readouterr().out
    assert exit_.value.code == 2 and out.startswith(f"usage: python training/{script.__name__}.py")
    assert "training/recipes/tiny/kto.yaml" in out and "deepseek-math-7b/kto.yaml" in out


@pytest.mark.parametrize("script", [sft, kto_sample, kto], ids=["sft", "kto_sample", "kto"])
def test_help_lists_config(script):
    text = script.make_parser().format_help()  # what `--help` prints
    assert "--config RECIPE" in text and "--learning_rate" in text and text.count("usage: python training/") == 1


# ---------------------------------------------------------------------------------------------------------------------
# Bad input, through the scripts' entry point in-process (the subprocess tests above show it is the real one)
# ---------------------------------------------------------------------------------------------------------------------

TINY_SFT = ["--config", str(RECIPES / "tiny" / "sft.yaml"), "--synthetic_size", "8"]
TINY_KTO = ["--config", str(RECIPES / "tiny" / "kto.yaml")]


def error_line(script, argv: list[str], monkeypatch, capsys) -> str:
    """Run `script` as `python training/<script>.py argv...`; its one stderr line (it must exit with status 2)."""
    monkeypatch.setattr(sys, "argv", [f"{script.__name__}.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        components.run_script(script.main, script.make_parser(), "usage")
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("script", [sft, kto_sample, kto], ids=["sft", "kto_sample", "kto"])
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--config", "{bad_recipe}"], "learning_rat"),
        (["--config", "{recipe}", "--learning_rat", "3"], "learning_rat"),  # no prefix match for --learning_rate
    ],
)
def test_bad_recipe_or_key_is_one_line(script, extra, message, tmp_path, monkeypatch, capsys):
    recipe = RECIPES / "tiny" / ("sft.yaml" if script is sft else "kto.yaml")
    bad_recipe = tmp_path / "bad.yaml"
    bad_recipe.write_text(recipe.read_text().replace("learning_rate:", "learning_rat:"))
    argv = [arg.format(recipe=recipe, bad_recipe=bad_recipe) for arg in extra]
    assert message in error_line(script, argv, monkeypatch, capsys)


@pytest.mark.parametrize("script", [sft, kto_sample, kto], ids=["sft", "kto_sample", "kto"])
def test_malformed_yaml_is_one_line(script, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("learning_rate: 1e-3\nmodel_name_or_path: [models/tiny\nseed: 1\n")
    line = error_line(script, ["--config", str(broken)], monkeypatch, capsys)
    assert str(broken) in line and "not valid YAML" in line


def test_unknown_dataset_is_one_line(monkeypatch, capsys):
    line = error_line(sft, [*TINY_SFT, "--dataset_name", "no-such-org/no-such-dataset"], monkeypatch, capsys)
    assert "dataset 'no-such-org/no-such-dataset'" in line


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        (sft, [*TINY_SFT, "--from_scratch", "false"]),
        (kto_sample, TINY_KTO),
        (kto, [*TINY_KTO, "--samples_path", "{samples}"]),
    ],
    ids=["sft", "kto_sample", "kto"],
)
def test_missing_model_folder_is_one_line(script, argv, tmp_path, monkeypatch, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"prompt": "p", "completion": "c", "label": true}\n')
    missing = tmp_path / "models" / "missing"
    argv = [arg.format(samples=samples) for arg in argv] + ["--model_name_or_path", str(missing)]
    line = error_line(script, argv, monkeypatch, capsys)
    assert str(missing) in line and ("no such folder" in line or "not found" in line)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from_scratch", "false", "--model_name_or_path", "m", "--load_in_4bit", "true"], "set use_peft true"),
        (["--use_peft", "true"], "set from_scratch false"),
    ],
)
def test_adapter_settings_that_cannot_train_are_one_line(argv, message, monkeypatch, capsys):
    assert message in error_line(sft, [*TINY_SFT, *argv], monkeypatch, capsys)
