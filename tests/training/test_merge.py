"""Tests for training/merge.py and its recipes (training/recipes/merge/): every recipe resolves to valid mergekit
configurations; merges of tiny in-test models are the arithmetic they claim (linear is the mean, WARP's two stages
are SFT plus a fraction of the spherical average of the two runs' updates) and load as models with the tokenizer of
`tokenizer_from`; a recipe naming a missing model, mismatched architectures or an unknown stage is one line and
writes nothing.

The slow tests are the issue's end to end: an SFT model and two KTO runs trained with the project's scripts, merged by
every method; the parents and a merge scored on the demo suite by `python -m numina_kit validate`, killed mid-run and
resumed;
every merge quantizes to int8 with training/quantize.py and its int8 copy runs in the submission notebook.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml


pytest.importorskip("mergekit")  # the `merge` extra
REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
MERGE_RECIPES = sorted((TRAINING / "recipes" / "merge").glob("*/*.yaml"))
sys.path.insert(0, str(TRAINING))

import merge  # noqa: E402

from numina_kit.errors import InputError  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def parents(tmp_path_factory) -> dict[str, Path]:
    """Three models of one architecture and tokenizer (sft, kto, kto_b) and one of another (wide)."""
    from numina_kit.models.demo import build_model, train_tokenizer

    tokenizer = train_tokenizer(["### Problem: 1+1\n### Solution: ```python\nprint(1+1)\n```"] * 8, vocab_size=280)
    folders = {}
    for seed, (name, hidden) in enumerate([("sft", 32), ("kto", 32), ("kto_b", 32), ("wide", 48)]):
        folder = tmp_path_factory.mktemp("parents") / name
        model = build_model(tokenizer, hidden_size=hidden, num_layers=1, num_heads=2, seed=seed)
        model.generation_config.do_sample = name == "sft"  # tells which model the generation config came from
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders


def recipe(name: str) -> Path:
    return TRAINING / "recipes" / "merge" / "tiny" / f"{name}.yaml"


def overrides(parents: dict[str, Path], *names: str) -> list[str]:
    return [f"{name}={parents[name]}" for name in names]


def merge_argv(name: str, out: Path, parents: dict[str, Path], *names: str) -> list[str]:
    """training/merge.py's command line: the tiny recipe `name`, its models replaced by `parents`' folders."""
    argv = ["--config", str(recipe(name)), "--output_dir", str(out)]
    for override in overrides(parents, *names):
        argv += ["--model", override]
    return argv


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_recipes_cover_every_method_and_resolve_to_mergekit_configurations(tmp_path):
    from mergekit.config import MergeConfiguration

    methods = set()
    for path in MERGE_RECIPES:
        loaded = merge.read_recipe(path)
        folders = {name: tmp_path / name for name in loaded.models}
        for name, config, _ in merge.resolve_stages(loaded, folders, tmp_path / "scratch"):
            MergeConfiguration.model_validate(config)
            methods.add(config["merge_method"])
            assert name
        assert loaded.tokenizer_from == "sft", path  # the merged model keeps our chat template and pad token
    assert {"linear", "slerp", "ties", "dare_ties", "nuslerp", "task_arithmetic"} <= methods
    assert {p.parent.name for p in MERGE_RECIPES} == {"tiny", "deepseek-math-7b"}


def test_linear_merge_is_the_mean_and_keeps_the_named_tokenizer(parents, tmp_path):
    out = tmp_path / "linear"
    assert merge.main(merge_argv("linear", out, parents, "sft", "kto")) == 0
    merged, sft, kto = tensors(out), tensors(parents["sft"]), tensors(parents["kto"])
    for key, value in merged.items():
        assert value.allclose((sft[key] + kto[key]) / 2, atol=1e-6), key
    assert (
        json.loads((out / "generation_config.json").read_text())["do_sample"] is True
    )  # sft's, as tokenizer_from says
    assert (out / "tokenizer.json").read_bytes() == (parents["sft"] / "tokenizer.json").read_bytes()
    used = yaml.safe_load((out / "merge_recipe.yaml").read_text())
    assert used["models"] == {"sft": str(parents["sft"]), "kto": str(parents["kto"])}
    assert not list(tmp_path.glob(".linear.*"))  # the scratch folder is gone


def test_warp_is_a_spherical_average_of_the_updates_then_a_step_back(parents, tmp_path):
    from mergekit.merge_methods.nuslerp import nuslerp

    out = tmp_path / "warp"
    assert merge.main(merge_argv("warp", out, parents, "sft", "kto", "kto_b")) == 0
    merged, sft, kto, kto_b = (tensors(p) for p in (out, parents["sft"], parents["kto"], parents["kto_b"]))
    for key in merged:
        expected = sft[key] + 0.6 * nuslerp(0.5, kto[key] - sft[key], kto_b[key] - sft[key], flatten=True)
        assert merged[key].allclose(expected, atol=1e-5), key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kto": "missing"}, "model kto: model path not found"),
        ({"kto": "wide"}, "models sft and kto differ in architecture (hidden_size 32 vs 48)"),
    ],
)
def test_a_missing_model_or_another_architecture_is_one_line_and_nothing_is_written(
    parents, tmp_path, capsys, change, message
):
    folders = {**parents, "missing": tmp_path / "no-such-model"}
    argv = ["--config", str(recipe("ties")), "--output_dir", str(tmp_path / "out" / "merged")]
    argv += ["--model", f"sft={parents['sft']}", "--model", f"kto={folders[change['kto']]}"]
    assert merge.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and message in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("edit", "argv", "message"),
    [
        (lambda r: r["stages"][0].update(base_model="base"), [], "stage ties names model 'base', which is neither"),
        (lambda r: r.update(tokenizer_from="other"), [], "tokenizer_from 'other' is not one of the models"),
        (lambda r: r.update(colour="red"), [], "unknown key(s) colour"),
        (lambda r: r["stages"][0].update(merge_method="no_such_method"), [], "stage ties: not a valid mergekit"),
        (lambda r: None, ["--model", "sft"], "--model takes NAME=PATH"),
        (lambda r: None, ["--model", "rl=x"], "the recipe has no model 'rl'"),
    ],
)
def test_recipe_mistakes_are_one_line(parents, tmp_path, capsys, edit, argv, message):
    data = yaml.safe_load(recipe("ties").read_text())
    data["models"] = {"sft": str(parents["sft"]), "kto": str(parents["kto"])}
    edit(data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    assert merge.main(["--config", str(path), "--output_dir", str(tmp_path / "out"), *argv]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / "out").exists()


def test_an_output_folder_with_files_is_refused(parents, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    loaded = merge.read_recipe(
        recipe("linear"), output_dir=str(tmp_path / "out"), models=overrides(parents, "sft", "kto")
    )
    with pytest.raises(InputError, match="already exists and is not empty"):
        merge.merge(loaded)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


# --- the end to end (slow): trained parents, every merge, the suite killed and resumed, int8, notebook ---


def _run(*command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny SFT model (training/sft.py) and two KTO runs from it with different seeds (training/kto.py)."""
    import kto
    import kto_sample
    import sft

    root = tmp_path_factory.mktemp("trained")
    sft.main(
        *sft.make_parser().parse_args_and_config(
            [
                "--config",
                str(TRAINING / "recipes" / "tiny" / "sft.yaml"),
                "--output_dir",
                str(root / "sft"),
                "--synthetic_size",
                "128",
                "--hidden_size",
                "64",
                "--num_hidden_layers",
                "2",
                "--num_attention_heads",
                "4",
                "--per_device_train_batch_size",
                "16",
                "--learning_rate",
                "3e-3",
                "--max_steps",
                "120",
                "--warmup_steps",
                "0",
            ]
        )  # fmt: skip
    )
    common = ["--config", str(TRAINING / "recipes" / "tiny" / "kto.yaml"), "--model_name_or_path", str(root / "sft")]
    sampled = ["--output_dir", str(root / "kto"), "--num_problems", "4"]
    samples = kto_sample.main(*kto_sample.make_parser().parse_args_and_config([*common, *sampled]))
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    for number, line in enumerate(lines):  # the barely trained model is rarely right: make both labels appear
        for sample in line["samples"]:
            sample["label"] = number % 2 == 0
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for name, seed in (("kto", "1"), ("kto_b", "2")):
        kto.main(
            *kto.make_parser().parse_args_and_config(
                [
                    *common,
                    "--output_dir",
                    str(root / name),
                    "--samples_path",
                    str(samples),
                    "--seed",
                    seed,
                    "--learning_rate",
                    "1e-3",
                    "--num_train_epochs",
                    "2",
                    "--per_device_train_batch_size",
                    "4",
                    "--balance_weights",
                    "false",
                ]
            )  # fmt: skip
        )
    return {"sft": root / "sft", "kto": root / "kto", "kto_b": root / "kto_b"}


@pytest.fixture(scope="module")
def merged(trained, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merged")
    folders = {}
    for name in ("linear", "slerp", "ties", "dare_ties", "warp"):
        names = ("sft", "kto", "kto_b") if name == "warp" else ("sft", "kto")
        assert merge.main(merge_argv(name, root / name, trained, *names)) == 0
        folders[name] = root / name
    return folders


@pytest.mark.slow
def test_suite_over_parents_and_a_merge_is_killed_resumed_and_compared(trained, merged, tmp_path):
    suite = yaml.safe_load((REPO / "configs" / "suites" / "demo.yaml").read_text())
    for entry in suite["sets"]:
        entry["subset"] = 4
    suite["sctir"] = {"num_candidates": 2, "max_rounds": 2, "max_new_tokens": 48, "temperature": 0.8, "seed": 42}
    suite["models"] = [str(trained["sft"]), str(trained["kto"]), str(merged["ties"])]
    suite["baseline"] = "sft"
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "numina_kit", "validate", "--suite", str(path), "--out", str(out)]
    first_log = out / "runs" / "sft" / "remainders" / "solutions.jsonl"
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not (first_log.exists() and first_log.read_text().count("\n") >= 1) and time.monotonic() < deadline:
            assert process.poll() is None, "validate ended before it could be killed"
            time.sleep(0.2)
    finally:
        process.kill()  # SIGKILL: no cleanup runs
        process.wait()
    kept = first_log.read_text().splitlines()[:1]
    assert kept and not (out / "runs" / "ties" / "remainders" / "solutions.jsonl").exists()  # ties had not started
    _run(*command)
    rows = [json.loads(line) for line in first_log.read_text().splitlines()]
    assert rows[0] == json.loads(kept[0]) and len(rows) == 4  # the finished problem was kept, not redone
    assert len({row["id"] for row in rows}) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert {(s["model"], s["set"], s["n"]) for s in summary["scores"]} == {
        (model, s, 4) for model in ("sft", "kto", "ties") for s in ("remainders", "counting")
    }
    assert {(c["a"], c["b"]) for c in summary["comparisons"]} == {("kto", "sft"), ("ties", "sft")}
    assert all(c["n"] == (8 if c["set"] == "all sets" else 4) for c in summary["comparisons"])
    report = (out / "report.md").read_text()
    assert "| ties | sft | all sets | 8 |" in report  # the number of problems the comparison rests on
    assert (out / "suite.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["linear", "slerp", "ties", "dare_ties", "warp"])
def test_every_merge_quantizes_to_int8_and_runs_in_the_notebook(merged, method, tmp_path):
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("papermill")
    import quantize

    from numina_kit.__main__ import main as numina_main

    int8 = tmp_path / "int8"
    assert (
        quantize.main(["--model", str(merged[method]), "--out", str(int8), "--method", "bnb", "--device", "cpu"]) == 0
    )
    assert json.loads((int8 / "config.json").read_text())["quantization_config"]["load_in_8bit"] is True
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "p0", "problem": "What is 3 + 4?", "answer": "7"}) + "\n")
    out = tmp_path / "notebook"
    argv = ["notebook", "--model", str(int8), "--problems", str(problems), "--out", str(out), "--num-candidates", "2"]
    argv += ["--max-rounds", "2", "--max-new-tokens", "16", "--gateway", "stand-in", "--budget-s", "120"]
    assert numina_main([*argv, "--timeout", "300"]) == 0
    assert json.loads((out / "score.json").read_text())["total"] == 1
    assert (out / "submission.ipynb").exists()
