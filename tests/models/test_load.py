"""numina_kit.models.load, .checkpoint and .devices: checking a model folder, choosing the backend and the precision, and the one-line
`InputError` for each bad input (missing path, a folder that is not a model, vLLM asked for but absent, bfloat16 on a
GPU without it, 8-bit where bitsandbytes cannot run, mismatched quantization), and the backend "auto" picks.
The GPUs are read through NVML, never torch (`devices.cuda_capabilities`).
"""

import json
import sys
from pathlib import Path

import pytest

from numina_kit.errors import InputError
from numina_kit.models import devices, hf, load
from numina_kit.models import vllm as vllm_backend
from numina_kit.models.checkpoint import checkpoint_quantization, context_length, read_model_config, weight_bits
from numina_kit.models.demo import save_demo_model
from numina_kit.models.hf import HFGenerator
from numina_kit.models.load import load_generator
from numina_kit.models.vllm import VLLMGenerator


TEXTS = ["### Problem: What is 2+3?\n### Solution: ```python\nprint(2+3)\n```\n```output\n5\n```\n$\\boxed{5}$"] * 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_demo_model(tmp_path_factory.mktemp("tiny") / "model", TEXTS, vocab_size=280, hidden_size=32)


@pytest.fixture
def vllm_present(monkeypatch: pytest.MonkeyPatch) -> list:
    """vLLM reported installed, with `VLLMGenerator` replaced by a recorder (the real engine: tests/models/test_vllm.py)."""
    started: list = []

    class Recorder(VLLMGenerator):
        def __init__(self, model_path, **options) -> None:
            started.append((model_path, options))

    for module in (load, vllm_backend):
        monkeypatch.setattr(module, "vllm_installed", lambda: True)
    monkeypatch.setattr(load, "VLLMGenerator", Recorder)
    for variable in ("VLLM_WORKER_MULTIPROC_METHOD", "PYTORCH_NVML_BASED_CUDA_CHECK"):
        monkeypatch.delenv(variable, raising=False)
    return started


@pytest.fixture
def fresh_bnb_probe():
    devices.bitsandbytes_problem.cache_clear()
    yield
    devices.bitsandbytes_problem.cache_clear()


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message and len(message) < 300
    return message


def make_folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


CONFIG = json.dumps({"model_type": "llama", "num_attention_heads": 4})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no config.json"),
        ({"config.json": "{not json"}, "not valid JSON"),
        ({"config.json": "{}"}, "has no model_type"),
        ({"config.json": CONFIG, "tokenizer.json": "{}"}, "no weights"),
        ({"config.json": CONFIG, "model.safetensors": ""}, "no tokenizer files"),
    ],
)
def test_a_folder_that_is_not_a_model_is_one_line_error(tmp_path: Path, files: dict, message: str) -> None:
    folder = make_folder(tmp_path / "folder", files)
    with pytest.raises(InputError) as error:
        load_generator(folder)
    assert message in one_line(error)


def test_a_missing_path_or_a_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_generator(tmp_path / "nowhere")
    assert "model path not found" in one_line(error)
    (tmp_path / "weights.bin").write_text("")
    with pytest.raises(InputError) as error:
        load_generator(tmp_path / "weights.bin")
    assert "is a file, not a model folder" in one_line(error)


def test_unknown_backend_and_options(model_dir: Path) -> None:
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="tensorrt")
    assert "unknown backend" in one_line(error)
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="hf", gpu_memory_utilization=0.9)
    assert "gpu_memory_utilization" in one_line(error)
    # backend "auto" may land on transformers on a laptop: vLLM-only options are then ignored, not fatal.
    assert isinstance(load_generator(model_dir, gpu_memory_utilization=0.9), HFGenerator)


def test_vllm_asked_for_but_not_installed(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm fails, as where it is not installed
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="vllm")
    assert "vLLM is not installed" in one_line(error)


def test_vllm_installed_but_no_gpu(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_capabilities", lambda: [])
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: False)
    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: True)
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="vllm")
    assert "needs a CUDA GPU" in one_line(error)


@pytest.mark.parametrize(
    ("vllm_installed", "gpus", "expected"),
    [(True, [(7, 5), (7, 5)], VLLMGenerator), (True, [], HFGenerator), (False, [(7, 5)], HFGenerator)],
)
def test_auto_backend_picks_vllm_only_with_vllm_and_a_gpu(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, model_dir: Path, vllm_installed, gpus, expected
) -> None:
    if vllm_installed:
        request.getfixturevalue("vllm_present")
    else:
        monkeypatch.setitem(sys.modules, "vllm", None)
        monkeypatch.setattr(load, "vllm_installed", lambda: False)
    monkeypatch.setattr(devices, "cuda_capabilities", lambda: gpus)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # the transformers path stays on this CPU
    assert isinstance(load_generator(model_dir), expected)


def test_bfloat16_on_a_gpu_without_it(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_capabilities", lambda: [(7, 5), (7, 5)])
    monkeypatch.setattr(vllm_backend, "vllm_installed", lambda: True)
    with pytest.raises(InputError) as error:  # refused before vLLM is imported
        load_generator(model_dir, backend="vllm", dtype="bfloat16")
    assert "bfloat16 needs a GPU of compute capability 8.0" in one_line(error)
    # The transformers backend on such a GPU refuses it the same way, before loading anything.
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr(hf, "torch_capability", lambda device: (7, 5))
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="hf", dtype="bfloat16", device="cuda")
    assert "use dtype='float16'" in one_line(error)


def test_visible_devices_pick_the_nvml_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    nvml = types.ModuleType("pynvml")
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetCount = lambda: 3
    nvml.nvmlDeviceGetHandleByIndex = lambda index: index
    nvml.nvmlDeviceGetCudaComputeCapability = lambda handle: [(7, 5), (8, 0), (9, 0)][handle]
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert devices.cuda_capabilities() == [(9, 0), (7, 5)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.cuda_capabilities() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.cuda_capabilities() == [(7, 5), (8, 0), (9, 0)]


def test_cuda_device_without_a_gpu(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="hf", device="cuda")
    assert "no CUDA GPU" in one_line(error)


def test_8bit_where_bitsandbytes_is_missing(fresh_bnb_probe, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="hf", quantization="int8")
    assert "bitsandbytes is not installed" in one_line(error)


def test_8bit_where_bitsandbytes_cannot_run(fresh_bnb_probe, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bitsandbytes = pytest.importorskip("bitsandbytes")

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image for this device\nsecond line of a long CUDA error")

    monkeypatch.setattr(bitsandbytes.nn, "Linear8bitLt", broken)
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="hf", quantization="int8")
    assert "cannot run int8 on cpu: no kernel image for this device" in one_line(error)


def test_bitsandbytes_runs_int8_on_this_cpu(fresh_bnb_probe) -> None:
    pytest.importorskip("bitsandbytes")
    assert devices.bitsandbytes_problem("cpu") is None


def with_quantization(model_dir: Path, target: Path, record: dict | None, extra_file: dict | None = None) -> Path:
    import shutil

    shutil.copytree(model_dir, target)
    config = json.loads((target / "config.json").read_text())
    if record:
        config["quantization_config"] = record
    (target / "config.json").write_text(json.dumps(config))
    if extra_file:
        (target / "quantize_config.json").write_text(json.dumps(extra_file))
    return target


@pytest.mark.parametrize(
    ("record", "requested", "message"),
    [
        ({"quant_method": "gptq", "bits": 8}, "none", "cannot be loaded in full precision"),
        ({"quant_method": "gptq", "bits": 8}, "int8", "not bitsandbytes int8"),
        (None, "gptq", "not a transformers option"),
        ({"quant_method": "gptq", "bits": 8}, "auto", "transformers reads only with gptqmodel installed"),
    ],
)
def test_transformers_quantization_mismatches(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record, requested: str, message: str
) -> None:
    monkeypatch.setitem(sys.modules, "gptqmodel", None)
    path = with_quantization(model_dir, tmp_path / "model", record)
    with pytest.raises(InputError) as error:
        load_generator(path, backend="hf", quantization=requested)
    assert message in one_line(error)


def test_checkpoint_quantization_reads_config_then_autogptq_file(model_dir: Path, tmp_path: Path) -> None:
    assert checkpoint_quantization(model_dir) is None
    record = checkpoint_quantization(with_quantization(model_dir, tmp_path / "a", {"quant_method": "GPTQ", "bits": 8}))
    assert record["quant_method"] == "gptq" and weight_bits(record) == 8
    autogptq = with_quantization(model_dir, tmp_path / "b", None, {"bits": 8, "group_size": 128, "desc_act": False})
    assert checkpoint_quantization(autogptq)["quant_method"] == "gptq"


@pytest.mark.parametrize(
    ("record", "bits"),
    [
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, 8),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, 4),
        ({"quant_method": "gptq", "bits": 8}, 8),
        ({"quant_method": "awq", "w_bit": 4}, 4),
        ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8}}}}, 8),
        ({"quant_method": "fp8"}, 8),
    ],
)
def test_weight_bits(record: dict, bits: int) -> None:
    assert weight_bits(record) == bits


@pytest.mark.parametrize(
    ("config", "cap", "expected"),
    [
        ({"max_position_embeddings": 4096}, 4096, 4096),
        ({"max_position_embeddings": 131072}, 4096, 4096),
        ({"n_positions": 1024}, 4096, 1024),
        ({}, 4096, 4096),
        ({"max_position_embeddings": 8192}, None, 8192),
    ],
)
def test_context_length(config: dict, cap: int | None, expected: int) -> None:
    assert context_length(config, cap) == expected


def test_int8_checkpoint_loads_back_on_cpu(model_dir: Path, tmp_path: Path) -> None:
    import torch

    pytest.importorskip("bitsandbytes")

    generator = load_generator(model_dir, backend="hf", quantization="int8")
    generator.model.save_pretrained(tmp_path / "int8")
    generator.tokenizer.save_pretrained(tmp_path / "int8")
    assert checkpoint_quantization(tmp_path / "int8")["quant_method"] == "bitsandbytes"
    reloaded = load_generator(tmp_path / "int8", backend="hf")  # "auto" quantization serves it as saved
    assert reloaded.model.model.layers[0].mlp.up_proj.weight.dtype == torch.int8
    with pytest.raises(InputError):
        load_generator(tmp_path / "int8", backend="hf", quantization="none")


def test_read_model_config_returns_the_config(model_dir: Path) -> None:
    assert read_model_config(model_dir)["model_type"] == "llama"


def test_no_gpu_here_means_no_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert devices.cuda_capabilities() == []
