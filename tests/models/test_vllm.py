"""numina_kit.models.vllm: the engine arguments chosen for the machine (T4: float16, Triton attention, tensor
parallel, the Marlin GPTQ kernel; vLLM's CPU build: float32), quantization read from the checkpoint and checked, and
the T4 start-up order: nothing asks torch about CUDA before vLLM's engine starts, and its workers are spawned.

The last tests hand those arguments to the real vLLM (`EngineArgs`, its quantization and attention-backend names) and
start `VLLMGenerator` through `load_generator` with a recording `LLM`; they are marked `vllm` and skip where vLLM is
not installed (`make test-vllm` runs them in .venv-vllm).
"""

import importlib.util
import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest

from numina_kit.errors import InputError
from numina_kit.models import vllm as vllm_backend
from numina_kit.models.demo import save_demo_model
from numina_kit.models.load import load_generator
from numina_kit.models.vllm import VLLMGenerator, marlin_compatible, vllm_engine_args
from numina_kit.testing import VLLM_MISSING


TEXTS = ["### Problem: What is 2+3?\n### Solution: ```python\nprint(2+3)\n```\n```output\n5\n```\n$\\boxed{5}$"] * 8
GPTQ8 = {"quant_method": "gptq", "bits": 8, "group_size": 128, "desc_act": False, "sym": True}
T4X2 = [(7, 5), (7, 5)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_demo_model(tmp_path_factory.mktemp("tiny") / "model", TEXTS, vocab_size=280, hidden_size=64)


@pytest.fixture
def real_vllm():
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_MISSING)
    import vllm

    return vllm


def with_config(model_dir: Path, target: Path, **changes) -> Path:
    shutil.copytree(model_dir, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


T4_ARGS = {
    "dtype": "float16",
    "tensor_parallel_size": 2,
    "quantization": None,
    "max_model_len": 2048,
    "enable_prefix_caching": True,
    "attention_backend": "TRITON_ATTN",
    "disable_custom_all_reduce": True,
}


def test_t4_pair_gets_float16_triton_attention_and_both_gpus(model_dir: Path) -> None:
    args = vllm_engine_args(model_dir, gpus=T4X2)
    assert args == {"model": str(model_dir), "tokenizer": str(model_dir), **T4_ARGS}


@pytest.mark.parametrize(
    ("gpus", "dtype", "backend", "tensor_parallel"),
    [
        ([(7, 5)], "float16", "TRITON_ATTN", 1),
        ([(7, 5), (7, 5)], "float16", "TRITON_ATTN", 2),
        ([(8, 0)], "auto", None, 1),
        ([(9, 0)] * 3, "auto", None, 2),  # 4 heads do not split over 3 GPUs: use 2
        ([(9, 0)] * 4, "auto", None, 4),
    ],
)
def test_engine_args_follow_the_gpus(model_dir: Path, gpus, dtype, backend, tensor_parallel) -> None:
    args = vllm_engine_args(model_dir, gpus=gpus)
    assert args["dtype"] == dtype and args["tensor_parallel_size"] == tensor_parallel
    assert args.get("attention_backend") == backend


def test_bfloat16_refused_on_t4_allowed_on_ampere(model_dir: Path) -> None:
    with pytest.raises(InputError, match="bfloat16 needs a GPU of compute capability 8.0.*use dtype='float16'"):
        vllm_engine_args(model_dir, gpus=T4X2, dtype="bfloat16")
    assert vllm_engine_args(model_dir, gpus=[(8, 0)], dtype="bfloat16")["dtype"] == "bfloat16"


def test_no_gpu_needs_vllms_cpu_build(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: False)
    with pytest.raises(InputError, match="vLLM needs a CUDA GPU .* use backend='hf'"):
        vllm_engine_args(model_dir, gpus=[])
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: True)
    args = vllm_engine_args(model_dir, gpus=[], max_num_seqs=8)
    assert args["dtype"] == "float32" and args["kv_cache_memory_bytes"] == vllm_backend.CPU_KV_CACHE_BYTES
    assert "tensor_parallel_size" not in args and "attention_backend" not in args and args["max_num_seqs"] == 8


@pytest.mark.parametrize(
    ("record", "gpus", "requested", "expected"),
    [
        (GPTQ8, T4X2, "auto", "gptq_marlin"),  # Marlin runs on compute capability 7.5
        (GPTQ8, T4X2, "int8", "gptq_marlin"),
        (GPTQ8, T4X2, "gptq", "gptq"),  # asked for: the legacy (Exllama) kernel
        (GPTQ8, [(7, 0)], "auto", "gptq"),  # below Marlin's minimum capability
        ({**GPTQ8, "desc_act": None}, T4X2, "auto", "gptq"),  # vLLM converts only when desc_act is recorded
        ({**GPTQ8, "sym": False}, T4X2, "auto", "gptq"),
        ({**GPTQ8, "bits": 3}, T4X2, "auto", "gptq"),
        ({"quant_method": "awq", "bits": 4, "group_size": 128}, T4X2, "auto", "awq"),
        (None, T4X2, "auto", None),
    ],
)
def test_quantization_kernel_for_the_checkpoint(
    model_dir: Path, tmp_path: Path, record, gpus, requested: str, expected
) -> None:
    path = with_config(model_dir, tmp_path / "model", **({"quantization_config": record} if record else {}))
    assert vllm_engine_args(path, gpus=gpus, quantization=requested)["quantization"] == expected


def test_quantization_is_read_from_the_checkpoint_not_its_name(model_dir: Path, tmp_path: Path) -> None:
    gptq = with_config(model_dir, tmp_path / "numina-7b-awq", quantization_config=GPTQ8)  # misleading name
    plain = with_config(model_dir, tmp_path / "numina-7b-gptq-8bit")
    assert vllm_engine_args(gptq, gpus=T4X2)["quantization"] == "gptq_marlin"
    assert vllm_engine_args(plain, gpus=T4X2)["quantization"] is None


@pytest.mark.parametrize(
    ("quantization_config", "requested", "message"),
    [
        (GPTQ8, "awq", "does not match"),
        (GPTQ8, "gptq_bitblas", "does not match"),  # a kernel vLLM 0.19 no longer has
        (GPTQ8, "none", "cannot serve them unquantized"),
        ({**GPTQ8, "bits": 4}, "int8", "4-bit gptq"),
        (None, "int8", "cannot make 8-bit weights while loading"),
        (None, "gptq", "has no quantization_config"),
    ],
)
def test_quantization_mismatches_are_input_errors(
    model_dir: Path, tmp_path: Path, quantization_config, requested: str, message: str
) -> None:
    changes = {"quantization_config": quantization_config} if quantization_config else {}
    path = with_config(model_dir, tmp_path / "model", **changes)
    with pytest.raises(InputError, match=message):
        vllm_engine_args(path, gpus=[(7, 5)], quantization=requested)


def test_marlin_compatibility_follows_vllms_rule() -> None:
    assert marlin_compatible(GPTQ8) and marlin_compatible({**GPTQ8, "bits": 4, "group_size": -1})
    assert not marlin_compatible({**GPTQ8, "group_size": 100}) and not marlin_compatible({**GPTQ8, "sym": None})


def test_max_model_len_comes_from_the_config_capped(model_dir: Path, tmp_path: Path) -> None:
    long = with_config(model_dir, tmp_path / "long", max_position_embeddings=16384)
    short = with_config(model_dir, tmp_path / "short", max_position_embeddings=1024)
    assert vllm_engine_args(long, gpus=[(7, 5)])["max_model_len"] == 4096
    assert vllm_engine_args(long, gpus=[(7, 5)], max_model_len_cap=8192)["max_model_len"] == 8192
    assert vllm_engine_args(short, gpus=[(7, 5)])["max_model_len"] == 1024


# --- against the real vLLM ----------------------------------------------------------------------------------------


@pytest.mark.vllm
def test_t4_arguments_are_real_engine_arguments(real_vllm, model_dir: Path, tmp_path: Path) -> None:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    gptq = with_config(model_dir, tmp_path / "gptq", quantization_config=GPTQ8)
    for path in (model_dir, gptq):
        args = vllm_engine_args(path, gpus=T4X2)
        EngineArgs(**args)  # an unknown or renamed argument is a TypeError here
        assert args["quantization"] is None or args["quantization"] in QUANTIZATION_METHODS
        assert AttentionBackendEnum[args["attention_backend"]].name == "TRITON_ATTN"
    assert "gptq_bitblas" not in QUANTIZATION_METHODS and {"gptq", "gptq_marlin"} <= set(QUANTIZATION_METHODS)


class RecordingLLM:
    """Stands in for `vllm.LLM` in the start-up test: records its arguments and the environment it started in."""

    started: list[tuple[dict, str | None]] = []

    def __init__(self, **kwargs) -> None:
        RecordingLLM.started.append((kwargs, os.environ.get("VLLM_WORKER_MULTIPROC_METHOD")))
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(max_model_len=kwargs["max_model_len"])
        )

    def get_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(RecordingLLM.started[-1][0]["tokenizer"])


def fake_nvml(capabilities: list[tuple[int, int]]) -> types.ModuleType:
    """`pynvml` reporting these GPUs, as nvidia-ml-py does on Kaggle's T4 pair."""
    module = types.ModuleType("pynvml")
    module.nvmlInit = lambda: None
    module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: len(capabilities)
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetCudaComputeCapability = lambda handle: capabilities[handle]
    return module


@pytest.mark.vllm
@pytest.mark.parametrize("backend", ["vllm", "auto"])
def test_load_generator_asks_torch_nothing_about_cuda_before_the_engine_starts(
    real_vllm, model_dir: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    import torch

    calls: list[str] = []
    for name in ("is_available", "device_count", "get_device_capability", "init", "_lazy_init", "current_device"):
        monkeypatch.setattr(torch.cuda, name, lambda *args, _name=name, **kwargs: calls.append(_name))
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(T4X2))
    monkeypatch.setattr(real_vllm, "LLM", RecordingLLM)
    for variable in ("VLLM_WORKER_MULTIPROC_METHOD", "PYTORCH_NVML_BASED_CUDA_CHECK", "VLLM_USE_FLASHINFER_SAMPLER"):
        monkeypatch.delenv(variable, raising=False)
    RecordingLLM.started.clear()

    generator = load_generator(model_dir, backend=backend)

    assert calls == [], f"torch.cuda was asked {calls} before vLLM started"
    assert isinstance(generator, VLLMGenerator)
    [(kwargs, method)] = RecordingLLM.started
    assert method == "spawn" and os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    assert os.environ["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
    assert kwargs == generator.engine_args == {"model": str(model_dir), "tokenizer": str(model_dir), **T4_ARGS}


@pytest.mark.vllm
def test_a_worker_method_set_by_the_user_is_kept(real_vllm, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([(8, 0)]))
    monkeypatch.setattr(real_vllm, "LLM", RecordingLLM)
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "fork")
    RecordingLLM.started.clear()
    load_generator(model_dir, backend="vllm")
    assert RecordingLLM.started[0][1] == "fork"


def test_sampling_params_carry_the_protocols_settings_and_a_per_prompt_seed():
    from numina_kit.models.base import SamplingParams
    from numina_kit.models.vllm import sampling_params

    fake = types.SimpleNamespace(SamplingParams=dict)
    params = SamplingParams(
        temperature=1.0, min_p=0.02, stop=("<|call|>",), skip_special_tokens=False, logprobs=5, seed=7
    )
    built = sampling_params(fake, params, seed=9)
    assert built["seed"] == 9 and sampling_params(fake, params)["seed"] == 7
    assert (built["min_p"], built["stop"], built["skip_special_tokens"], built["logprobs"]) == (
        0.02,
        ["<|call|>"],
        False,
        5,
    )
    assert built["include_stop_str_in_output"] is True
