"""Opening a model folder as a `Generator`: checking the folder, choosing the backend, the precision and 8-bit path.

`load_generator` is the one entry point. Everything it decides is read from the machine (which GPUs, which compute
capability, whether vLLM and bitsandbytes work) and from the checkpoint's own files (`config.json` and its
`quantization_config`), never from the folder's name. Anything a user can get wrong (a missing path, a folder that is
not a model, a backend or precision this machine cannot run) raises a one-line `InputError`.
"""

import functools
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

from numina_kit.errors import InputError
from numina_kit.models.base import Generator, HFGenerator, VLLMGenerator


logger = logging.getLogger(__name__)

BACKENDS = ("auto", "vllm", "hf", "transformers")
DEFAULT_MAX_MODEL_LEN = 4096  # DeepSeekMath's context; Numina served 4096 tokens.
HF_OPTIONS = ("dtype", "device", "batch_size", "max_model_len")
# Packages transformers needs to read a checkpoint quantized with each method.
_HF_QUANT_PACKAGES = {"gptq": "gptqmodel", "awq": "gptqmodel", "compressed-tensors": "compressed_tensors"}
# vLLM kernel names that read a checkpoint of another method's format.
_VLLM_QUANT_FAMILY = {"gptq_marlin": "gptq", "gptq_bitblas": "gptq", "awq_marlin": "awq"}
_DTYPES = {
    "float32": "float32",
    "float": "float32",
    "fp32": "float32",
    "float16": "float16",
    "half": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def load_generator(
    model_path: str | Path, *, backend: str = "auto", quantization: str | None = "auto", **engine_args: Any
) -> Generator:
    """Open `model_path` (a Hugging Face model folder) with vLLM or transformers and return its `Generator`.

    backend: "auto" picks vLLM when it is installed and a CUDA GPU is visible, else transformers ("hf").
    quantization: "auto" serves the checkpoint as it is (its `quantization_config`, or full precision); "none"
    insists on full precision; "int8" asks for 8-bit weights (bitsandbytes on load for transformers; an 8-bit
    checkpoint for vLLM); a vLLM method name such as "gptq_marlin" picks that kernel for a matching checkpoint.
    engine_args: vLLM `LLM(...)` arguments, or for transformers `dtype`, `device`, `batch_size`, `max_model_len`.
    """
    read_model_config(model_path)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    chosen = backend
    if backend == "auto":
        chosen = "vllm" if vllm_installed() and cuda_capabilities() else "hf"
        logger.info("backend 'auto' chose %s", chosen)
    if chosen == "vllm":
        return VLLMGenerator(model_path, quantization=quantization, **engine_args)
    unknown = sorted(set(engine_args) - set(HF_OPTIONS))
    if unknown and backend == "auto":
        logger.warning("ignoring options the transformers backend does not take: %s", ", ".join(unknown))
    elif unknown:
        raise InputError(f"the transformers backend takes {', '.join(HF_OPTIONS)}; got {', '.join(unknown)}")
    options = {key: value for key, value in engine_args.items() if key in HF_OPTIONS}
    return load_hf_generator(model_path, quantization=quantization, **options)


def read_model_config(model_path: str | Path) -> dict:
    """The checkpoint's `config.json`, after checking the folder holds a model: config, tokenizer and weights."""
    path = Path(model_path)
    if not path.exists():
        raise InputError(f"model path not found: {path}")
    hint = "expected a Hugging Face model folder with config.json, tokenizer files and *.safetensors weights"
    if not path.is_dir():
        raise InputError(f"{path} is a file, not a model folder ({hint})")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise InputError(f"{path} is not a model folder: no config.json ({hint})")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{config_file} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise InputError(f"{config_file} has no model_type: not a transformers model config")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise InputError(f"{path} is not a model folder: no weights (*.safetensors or *.bin) ({hint})")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise InputError(f"{path} is not a model folder: no tokenizer files ({hint})")
    return config


def checkpoint_quantization(model_path: str | Path, config: dict | None = None) -> dict | None:
    """The checkpoint's own quantization record: `config.json`'s `quantization_config`, or AutoGPTQ's
    `quantize_config.json`; None when the weights are not quantized. `quant_method` is always set, lower case."""
    path = Path(model_path)
    config = read_model_config(path) if config is None else config
    record = config.get("quantization_config")
    if not record and (path / "quantize_config.json").is_file():
        record = json.loads((path / "quantize_config.json").read_text(encoding="utf-8"))
        record.setdefault("quant_method", "gptq")  # the file AutoGPTQ writes; it names no method
    if not record:
        return None
    if "quant_method" not in record:
        raise InputError(f"{path}/config.json has a quantization_config without quant_method")
    return {**record, "quant_method": str(record["quant_method"]).lower()}


def weight_bits(record: dict) -> int | None:
    """Bits per weight in a quantization record (8 for bitsandbytes int8, GPTQ bits=8, compressed-tensors W8)."""
    method = record["quant_method"]
    if method == "bitsandbytes":
        return 8 if record.get("load_in_8bit") else 4 if record.get("load_in_4bit") else None
    if method in ("gptq", "awq"):
        return record.get("bits") or record.get("w_bit")
    if method == "compressed-tensors":
        bits = {group.get("weights", {}).get("num_bits") for group in record.get("config_groups", {}).values()}
        return bits.pop() if len(bits) == 1 else None
    if method in ("fp8", "fbgemm_fp8"):
        return 8
    return record.get("bits")


def cuda_capabilities() -> list[tuple[int, int]]:
    """Compute capability of each visible CUDA GPU, e.g. [(7, 5), (7, 5)] on Kaggle's 2x T4; [] without a GPU.

    NVML is asked first so that CUDA is not initialised in this process before vLLM starts its workers.
    """
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    indices = [int(i) for i in visible.split(",")] if visible and visible.replace(",", "").isdigit() else None
    try:
        import pynvml  # nvidia-ml-py, which vLLM installs

        pynvml.nvmlInit()
        indices = indices if indices is not None else list(range(count))
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices[:count]]
        return [tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)) for handle in handles]
    except Exception:
        return [torch.cuda.get_device_capability(i) for i in range(count)]


def vllm_installed() -> bool:
    """Whether `import vllm` can be tried (the package is on the path)."""
    return importlib.util.find_spec("vllm") is not None


def import_vllm() -> Any:
    """`import vllm`, turning its absence or a broken install into a one-line `InputError`."""
    if not vllm_installed():
        raise InputError(
            "backend 'vllm' asked for but vLLM is not installed: pip install 'numina_kit[vllm]' on a CUDA machine, "
            "or use backend='hf'"
        )
    try:
        import vllm
    except ImportError as error:
        raise InputError(f"vLLM is installed but does not import: {str(error).splitlines()[0]}") from None
    return vllm


@functools.cache
def bitsandbytes_problem(device: str) -> str | None:
    """Why bitsandbytes int8 cannot run on `device` ("cpu", "cuda"), found by running one int8 layer; None if it can."""
    try:
        import bitsandbytes as bnb
        import torch
    except ImportError:
        return "bitsandbytes is not installed (pip install bitsandbytes)"
    try:
        layer = bnb.nn.Linear8bitLt(64, 32, bias=False, has_fp16_weights=False).to(device)
        dtype = torch.float32 if device == "cpu" else torch.float16
        layer(torch.randn(2, 64, device=device, dtype=dtype))
    except Exception as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        return f"bitsandbytes {getattr(bnb, '__version__', '?')} cannot run int8 on {device}: {first}"
    return None


def context_length(config: dict, cap: int | None = DEFAULT_MAX_MODEL_LEN) -> int:
    """The model's context window from its config (capped at `cap`), for vLLM's `max_model_len`."""
    names = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")
    length = next((config[name] for name in names if isinstance(config.get(name), int)), None)
    length = length or cap or DEFAULT_MAX_MODEL_LEN
    return min(length, cap) if cap else length


def vllm_engine_args(
    model_path: str | Path,
    *,
    quantization: str | None = "auto",
    gpus: list[tuple[int, int]] | None = None,
    max_model_len_cap: int = DEFAULT_MAX_MODEL_LEN,
    **overrides: Any,
) -> dict[str, Any]:
    """vLLM `LLM(...)` arguments for this checkpoint on these GPUs (default: the visible ones).

    On GPUs without bfloat16 (compute capability < 8, e.g. T4): float16 and Triton attention (FlashAttention needs
    sm80; FlashInfer misbehaves on T4). Always: tensor parallel over the GPUs, prefix caching (candidates of one
    problem share their prompt's KV cache), `max_model_len` from the config, the checkpoint's own quantization.
    """
    config = read_model_config(model_path)
    gpus = cuda_capabilities() if gpus is None else gpus
    if not gpus:
        raise InputError("vLLM needs a CUDA GPU and none is visible: use backend='hf'")
    has_bf16 = min(gpus) >= (8, 0)
    dtype = _dtype_name(overrides.pop("dtype", None) or ("auto" if has_bf16 else "float16"))
    if dtype == "bfloat16" and not has_bf16:
        raise InputError(_no_bf16_message(min(gpus)))
    heads = config.get("num_attention_heads") or 1
    tensor_parallel = overrides.pop("tensor_parallel_size", None) or max(
        n for n in range(1, len(gpus) + 1) if heads % n == 0
    )
    args: dict[str, Any] = {
        "model": str(model_path),
        "tokenizer": str(model_path),
        "dtype": dtype,
        "tensor_parallel_size": tensor_parallel,
        "quantization": _vllm_quantization(model_path, config, quantization),
        "max_model_len": context_length(config, max_model_len_cap),
        "enable_prefix_caching": True,
    }
    if not has_bf16:
        args["attention_backend"] = "TRITON_ATTN"
        if tensor_parallel > 1:
            args["disable_custom_all_reduce"] = True  # T4s sit on PCIe; NCCL all-reduce is the safe path
    args.update(overrides)
    return args


def load_hf_generator(
    model_path: str | Path,
    *,
    quantization: str | None = "auto",
    dtype: str | None = None,
    device: str | None = None,
    batch_size: int = 64,
    max_model_len: int | None = None,
) -> HFGenerator:
    """An `HFGenerator` over `model_path`: full precision (float32 on CPU) or bitsandbytes int8 (on CPU or CUDA)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    config = read_model_config(model_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but no CUDA GPU is visible: use device='cpu'")
    plan = _hf_quantization(model_path, config, quantization)
    if plan is not None and (problem := bitsandbytes_problem(device.split(":")[0])):
        raise InputError(f"8-bit weights need bitsandbytes, which cannot run here: {problem}")
    torch_dtype = getattr(torch, _hf_dtype(dtype, device))
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if plan == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if plan is not None:
        kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError) as error:
        raise InputError(f"{model_path}: cannot load the model ({str(error).splitlines()[0]})") from None
    if plan is None:
        model = model.to(device)
    return HFGenerator(model, tokenizer, batch_size=batch_size, max_model_len=max_model_len)


def _hf_quantization(model_path: str | Path, config: dict, requested: str | None) -> str | None:
    """What transformers must do: None (full precision), "int8" (quantize on load) or "checkpoint" (load as is)."""
    record = checkpoint_quantization(model_path, config)
    method = record["quant_method"] if record else None
    requested = "none" if requested is None else requested
    if requested == "none":
        if method:
            raise InputError(f"{model_path} holds {method}-quantized weights; it cannot be loaded in full precision")
        return None
    if requested == "int8":
        if method is None:
            return "int8"
        if method == "bitsandbytes" and weight_bits(record) == 8:
            return "checkpoint"
        raise InputError(f"{model_path} holds {weight_bits(record)}-bit {method} weights, not bitsandbytes int8")
    if requested != "auto":
        raise InputError(
            f"quantization {requested!r} is not a transformers option: use 'auto', 'none' or 'int8' "
            "(vLLM method names need backend='vllm')"
        )
    if method is None:
        return None
    if method == "bitsandbytes":
        return "checkpoint"
    package = _HF_QUANT_PACKAGES.get(method)
    if package and importlib.util.find_spec(package) is None:
        raise InputError(
            f"{model_path} holds {method} weights, which transformers reads only with {package} installed: "
            "serve it with backend='vllm' or install that package"
        )
    return "checkpoint"


def _vllm_quantization(model_path: str | Path, config: dict, requested: str | None) -> str | None:
    """The `quantization` argument for vLLM, checked against the checkpoint's own `quantization_config`."""
    record = checkpoint_quantization(model_path, config)
    method = record["quant_method"] if record else None
    requested = "none" if requested is None else requested
    if requested == "auto":
        return method
    if requested == "none":
        if method:
            raise InputError(f"{model_path} holds {method}-quantized weights; vLLM cannot serve them unquantized")
        return None
    if requested == "int8":
        if method is None:
            raise InputError(
                f"{model_path} is not quantized and vLLM cannot make 8-bit weights while loading: write an 8-bit "
                "checkpoint with `python training/quantize.py --method gptq` and serve that"
            )
        if weight_bits(record) != 8:
            raise InputError(f"{model_path} holds {weight_bits(record)}-bit {method} weights, not 8-bit")
        return method
    if method is None:
        raise InputError(
            f"quantization {requested!r} asked for but {model_path}/config.json has no quantization_config"
        )
    if _VLLM_QUANT_FAMILY.get(requested, requested) != method:
        raise InputError(f"quantization {requested!r} does not match the checkpoint's {method!r} weights")
    return requested


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).removeprefix("torch.")
    if name == "auto":
        return name
    if name not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use auto, float16, bfloat16 or float32")
    return _DTYPES[name]


def _hf_dtype(dtype: str | None, device: str) -> str:
    name = _dtype_name(dtype or "auto")
    if device == "cpu":
        return "float32" if name == "auto" else name
    capability = _torch_capability(device)
    if name == "bfloat16" and capability < (8, 0):
        raise InputError(_no_bf16_message(capability))
    if name == "auto":
        return "bfloat16" if capability >= (8, 0) else "float16"
    return name


def _torch_capability(device: str) -> tuple[int, int]:
    import torch

    return tuple(torch.cuda.get_device_capability(torch.device(device)))


def _no_bf16_message(capability: tuple[int, int]) -> str:
    major, minor = capability
    return (
        f"bfloat16 needs a GPU of compute capability 8.0 or newer and this one is {major}.{minor} (e.g. a T4): "
        "use dtype='float16'"
    )
