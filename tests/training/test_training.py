"""End-to-end tests of training/sft.py, kto_sample.py and kto.py on CPU with a tiny model (slow: run with --runslow).

SFT trains a small Llama from scratch on synthetic TIR problems for a few dozen steps, with no FutureWarning; the loss
must fall, and the saved model must reload through numina_kit.models.load.load_generator, stop at EOS, and sample at
the requested temperature when served by `transformers serve`. KTO samples SC-TIR completions from that model as its
own resumable step, then trains a few steps on labelled samples; its loss must fall below the untrained 0.5. A LoRA
run on 4-bit weights (bitsandbytes on CPU) trains its adapters and saves a merged model.
"""

import json
import shutil
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest


pytest.importorskip("trl")
REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
sys.path.insert(0, str(TRAINING))

import kto  # noqa: E402
import sft  # noqa: E402

from numina_kit.protocols.tora import CHAT_TEMPLATE, render_prompt  # noqa: E402
from numina_kit.testing import free_port  # noqa: E402


pytestmark = pytest.mark.slow
HELD_OUT = REPO / "tests" / "fixtures" / "demo_problems.jsonl"
TINY_SFT = TRAINING / "recipes" / "tiny" / "sft.yaml"
TINY_KTO = TRAINING / "recipes" / "tiny" / "kto.yaml"


def losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory) -> tuple[Path, list[warnings.WarningMessage]]:
    """The tiny SFT model, and the warnings its run raised."""
    out = tmp_path_factory.mktemp("sft")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = sft.make_parser().parse_args_and_config(
            [
                "--config", str(TINY_SFT),
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
        model = sft.main(*args)
    return model, caught


@pytest.fixture(scope="module")
def sft_model(sft_run) -> Path:
    return sft_run[0]


def test_sft_loss_goes_down_and_the_template_is_saved(sft_model):
    curve = losses(sft_model)
    assert len(curve) >= 5
    assert curve[-1] < 0.5 * curve[0]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sft_model)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_a_tiny_run_raises_no_future_warning(sft_run):
    future = [f"{w.filename}:{w.lineno}: {w.message}" for w in sft_run[1] if issubclass(w.category, FutureWarning)]
    assert future == []


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


def run_script(script: str, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(TRAINING / script), *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_kto_samples_as_its_own_resumable_step_then_trains(sft_model, tmp_path):
    out = tmp_path / "kto"
    common = ["--config", str(TINY_KTO), "--model_name_or_path", str(sft_model), "--output_dir", str(out)]
    run_script("kto_sample.py", *common, "--num_problems", "3")
    samples = out / "samples.jsonl"
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(lines) == 3 and all(line["samples"] for line in lines)
    assert any("```output\n" in s["completion"] for line in lines for s in line["samples"]), "no candidate ran code"
    for line in lines:
        assert all(
            s["label"] == (s["answer"] is not None and s["answer"] == line["reference"]) for s in line["samples"]
        )
    # Run again with more problems: the three done are kept as they are, one more is sampled.
    done = run_script("kto_sample.py", *common, "--num_problems", "4")
    assert "3 already in" in done.stderr and "1 to sample" in done.stderr
    assert samples.read_text().splitlines()[:3] == [json.dumps(line, ensure_ascii=False) for line in lines]

    # The barely trained model is rarely right, so relabel: completions of the first two problems are desirable.
    for number, line in enumerate(lines):
        for sample in line["samples"]:
            sample["label"] = number < 2
    relabelled = tmp_path / "relabelled.jsonl"
    relabelled.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = kto.make_parser().parse_args_and_config(
        [
            *common,
            "--samples_path", str(relabelled),
            "--balance_weights", "false",  # weights 1 and 1: every sample's loss starts at 0.5
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


def test_lora_on_4bit_weights_trains_on_cpu_and_saves_a_merged_model(sft_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "qlora"
    args = sft.make_parser().parse_args_and_config(
        [
            "--config", str(TINY_SFT),
            "--from_scratch", "false",
            "--model_name_or_path", str(sft_model),
            "--output_dir", str(out),
            "--synthetic_size", "64",
            "--use_peft", "true",
            "--lora_r", "8",
            "--load_in_4bit", "true",
            "--learning_rate", "1e-2",
            "--max_steps", "12",
            "--logging_steps", "2",
        ]
    )  # fmt: skip
    _, training_args, model_args, _ = args
    import components

    assert components.model_init_kwargs(model_args, training_args)["quantization_config"].load_in_4bit
    sft.main(*args)
    curve = losses(out)
    assert curve[-1] < curve[0]
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["base_model_name_or_path"] == str(sft_model)
    merged, base = load_file(out / "model.safetensors"), load_file(sft_model / "model.safetensors")
    changed = [name for name in base if not torch.equal(base[name], merged[name])]
    assert changed and all("proj" in name for name in changed)  # LoRA moved the attention/MLP projections only
    from numina_kit.models.load import load_generator

    assert load_generator(out, backend="hf").count_tokens("abc") > 0


def test_sft_on_one_local_file_with_eval_switched_on_trains_without_eval(tmp_path, caplog):
    """Stage 2 evaluates every epoch on a `test` split; a single JSONL (generate_tir's output) has only `train`."""
    from numina_kit.data.jsonl import write_jsonl
    from numina_kit.data.problems import synthetic_problems
    from numina_kit.protocols.tora import render_messages

    rows = [
        {"problem": p.problem, "solution": p.solution, "messages": render_messages(p.problem, p.solution)}
        for p in synthetic_problems(32, seed=5)
    ]
    data = tmp_path / "tir.jsonl"
    write_jsonl(rows, data)
    out = tmp_path / "model"
    args = sft.make_parser().parse_args_and_config(
        [
            "--config", str(TINY_SFT),
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


# ---------------------------------------------------------------------------------------------------------------------
# Served by `transformers serve`
# ---------------------------------------------------------------------------------------------------------------------


def serve(model: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """Start `transformers serve` on `model` (CPU) and wait until it answers; (process, base URL)."""
    port = free_port()
    command = [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve", str(model),
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"transformers serve exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(1)
    server.kill()
    raise AssertionError("transformers serve did not start in 300 s")


def complete(url: str, model: Path, temperature: float) -> str:
    body = {"model": str(model), "prompt": render_prompt("What is 12 times 34?"), "max_tokens": 16,
            "temperature": temperature}  # fmt: skip
    request = urllib.request.Request(
        f"{url}/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["choices"][0]["text"]


def test_served_model_samples_at_the_requested_temperature(sft_model, tmp_path):
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("transformers serve needs the serving extras (fastapi, uvicorn): pip install -e '.[train]'")
    assert json.loads((sft_model / "generation_config.json").read_text())["do_sample"] is True
    greedy_copy = tmp_path / "greedy"  # the same model as saved before: no do_sample in its generation config
    shutil.copytree(sft_model, greedy_copy)
    config = json.loads((greedy_copy / "generation_config.json").read_text())
    del config["do_sample"]
    (greedy_copy / "generation_config.json").write_text(json.dumps(config))

    texts = {}
    for name, model in (("saved", sft_model), ("greedy", greedy_copy)):
        server, url = serve(model, tmp_path / f"{name}.log")
        try:
            texts[name] = {complete(url, model, temperature=1.5) for _ in range(4)}
            texts[name + " at 0"] = {complete(url, model, temperature=0.0) for _ in range(2)}
        finally:
            server.terminate()
            server.wait(timeout=60)
    assert len(texts["saved"]) > 1, texts  # sampled: four requests, several answers
    assert len(texts["greedy"]) == 1, texts  # without do_sample the server ignored the temperature
    assert len(texts["saved at 0"]) == 1  # temperature 0 is still greedy
