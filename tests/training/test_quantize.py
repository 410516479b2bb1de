"""training/quantize.py: argument handling, calibration data rendered with the project's chat template, the GPTQ
call sequence (against a recording stand-in for gptqmodel, which cannot be installed here), and a real bitsandbytes
int8 run on a tiny model: the checkpoint loads back through `load_generator` on CPU and its linear layers take at
most 30% of their float32 bytes.
"""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from numina_kit.models.base import SamplingParams
from numina_kit.models.demo import save_demo_model
from numina_kit.models.hf import HFGenerator
from numina_kit.models.load import checkpoint_quantization, load_generator
from numina_kit.protocols.tora import render_example


SCRIPT = Path(__file__).resolve().parents[2] / "training" / "quantize.py"
TEXTS = ["### Problem: What is 2+3?\n### Solution: ```python\nprint(2+3)\n```\n```output\n5\n```\n$\\boxed{5}$"] * 8


def load_script():
    spec = importlib.util.spec_from_file_location("quantize_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quantize = load_script()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_demo_model(tmp_path_factory.mktemp("tiny") / "model", TEXTS, vocab_size=280, hidden_size=64)


@pytest.fixture
def tir_file(tmp_path: Path) -> Path:
    rows = [
        {"problem": f"What is {i}+{i}?", "solution": f"```python\nprint({i}+{i})\n```\n```output\n{2 * i}\n```"}
        for i in range(10)
    ]
    rows += [{"messages": [{"role": "user", "content": "Name 7."}, {"role": "assistant", "content": "$\\boxed{7}$"}]}]
    rows += [{"id": "no-solution", "problem": "skipped"}]
    path = tmp_path / "tir.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_tir_rows_take_both_schemas_and_skip_rows_without_a_solution(tir_file: Path) -> None:
    rows = quantize.read_tir_rows(tir_file)
    assert len(rows) == 11 and rows[0] == ("What is 0+0?", "```python\nprint(0+0)\n```\n```output\n0\n```")
    assert rows[-1] == ("Name 7.", "$\\boxed{7}$")


def test_calibration_is_rendered_with_the_chat_template(tir_file: Path, model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = quantize.read_tir_rows(tir_file)
    texts = quantize.render_calibration(rows, tokenizer, 4, seed=42)
    assert len(texts) == 4 and texts == quantize.render_calibration(rows, tokenizer, 4, seed=42)
    assert texts != quantize.render_calibration(rows, tokenizer, 4, seed=1)
    rendered = {render_example(problem, solution, tokenizer.eos_token) for problem, solution in rows}
    assert set(texts) <= rendered and all(t.endswith(tokenizer.eos_token) for t in texts)
    assert len(quantize.render_calibration(rows, tokenizer, 256)) == len(rows)  # capped by the data


def test_calibration_from_the_shared_tir_traces(shared_data: Path, model_dir: Path) -> None:
    from transformers import AutoTokenizer

    rows = quantize.read_tir_rows(shared_data / "tir_traces_sample.jsonl")
    texts = quantize.render_calibration(rows, AutoTokenizer.from_pretrained(model_dir), 256)
    assert len(texts) == 256 and all(t.startswith("### Problem: ") and "### Solution: " in t for t in texts)


def test_gptq_settings_are_8bit_group_128_without_act_order() -> None:
    assert quantize.gptq_config() == {"bits": 8, "group_size": 128, "desc_act": False, "sym": True}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "gptq"], "needs --data"),
        (["--method", "gptq", "--data", "missing.jsonl"], "calibration data not found"),
        (["--method", "gptq", "--data", "{tir}", "--bits", "5"], "--bits one of"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    model_dir: Path, tmp_path: Path, tir_file: Path, capsys: pytest.CaptureFixture, extra: list, message: str
) -> None:
    argv = ["--model", str(model_dir), "--out", str(tmp_path / "out")] + [a.format(tir=tir_file) for a in extra]
    assert quantize.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_model_and_used_out_folder(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert quantize.main(["--model", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--method", "bnb"]) == 2
    assert "model path not found" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    assert quantize.main(["--model", str(model_dir), "--out", str(tmp_path / "used"), "--method", "bnb"]) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quantize.main(["--model", str(model_dir), "--out", str(tmp_path / "o"), "--method", "awq"])


def test_gptq_without_gptqmodel_says_where_to_run_it(
    model_dir: Path, tmp_path: Path, tir_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "gptqmodel", None)
    argv = ["--model", str(model_dir), "--out", str(tmp_path / "o"), "--method", "gptq", "--data", str(tir_file)]
    assert quantize.main(argv) == 2
    assert "gptqmodel is not installed" in capsys.readouterr().err


def test_gptq_calls_gptqmodel_as_documented(
    model_dir: Path, tmp_path: Path, tir_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GPTQModel.load(path, QuantizeConfig(...)) -> .quantize(texts, batch_size) -> .save(out), recorded by a fake."""
    calls = []

    class QuantizeConfig:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class Model:
        def quantize(self, texts, batch_size):
            calls.append(("quantize", len(texts), batch_size))

        def save(self, out):
            calls.append(("save", out))
            Path(out).mkdir(parents=True, exist_ok=True)
            config = {"model_type": "llama", "quantization_config": {"quant_method": "gptq", **self.config.kwargs}}
            (Path(out) / "config.json").write_text(json.dumps(config))

    class GPTQModel:
        @staticmethod
        def load(path, config):
            calls.append(("load", path, config.kwargs))
            model = Model()
            model.config = config
            return model

    monkeypatch.setitem(
        sys.modules, "gptqmodel", types.SimpleNamespace(GPTQModel=GPTQModel, QuantizeConfig=QuantizeConfig)
    )
    out = tmp_path / "gptq"
    argv = ["--model", str(model_dir), "--out", str(out), "--method", "gptq", "--data", str(tir_file)]
    assert quantize.main(argv + ["--num-samples", "5"]) == 0
    assert calls == [
        ("load", str(model_dir), {"bits": 8, "group_size": 128, "desc_act": False, "sym": True}),
        ("quantize", 5, 4),
        ("save", str(out)),
    ]
    assert checkpoint_quantization(out, json.loads((out / "config.json").read_text()))["bits"] == 8


def test_bnb_int8_checkpoint_loads_back_and_is_small(model_dir: Path, tmp_path: Path, capsys) -> None:
    import torch

    bnb = pytest.importorskip("bitsandbytes")
    out = tmp_path / "int8"
    assert quantize.main(["--model", str(model_dir), "--out", str(out), "--method", "bnb", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["linear_ratio"] <= 0.30
    assert report["linear_ratio"] < report["model_ratio"] < 1.0  # embeddings and norms stay in float32
    generator = load_generator(out, backend="hf")
    assert isinstance(generator, HFGenerator)
    linears = [m for m in generator.model.model.layers.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert len(linears) == 7 * 2 and all(m.weight.dtype == torch.int8 for m in linears)
    measured = quantize.weight_bytes(generator.model)
    assert measured.linear_ratio == pytest.approx(report["linear_ratio"])
    out_sizes = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    in_sizes = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    assert out_sizes < 0.5 * in_sizes
    [completion] = generator.generate(["### Problem: What is 2+3?\n### Solution: "], SamplingParams(max_new_tokens=4))
    assert completion.num_tokens <= 4
