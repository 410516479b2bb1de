"""Opening a model folder as a `Generator`: `load_generator` checks the folder and picks the backend.

Everything it decides is read from the machine (which GPUs, which compute capability, whether vLLM and bitsandbytes
work: `numina_kit.models.devices`) and from the checkpoint's own files (`config.json` and its `quantization_config`:
`numina_kit.models.checkpoint`), never from the folder's name. Anything a user can get wrong (a missing path, a folder
that is not a model, a backend or precision this machine cannot run) raises a one-line `InputError`.

The checkpoint readers and machine checks are importable from here too, for scripts that open a model folder.
"""

import logging
from pathlib import Path
from typing import Any

from numina_kit.errors import InputError
from numina_kit.models import devices
from numina_kit.models.base import Generator
from numina_kit.models.checkpoint import (
    DEFAULT_MAX_MODEL_LEN,
    checkpoint_quantization,
    context_length,
    read_model_config,
    weight_bits,
)
from numina_kit.models.devices import bitsandbytes_problem, cuda_capabilities
from numina_kit.models.hf import load_hf_generator
from numina_kit.models.vllm import VLLMGenerator, prepare_start, vllm_engine_args, vllm_installed


__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_MODEL_LEN",
    "HF_OPTIONS",
    "bitsandbytes_problem",
    "checkpoint_quantization",
    "context_length",
    "cuda_capabilities",
    "load_generator",
    "read_model_config",
    "vllm_engine_args",
    "weight_bits",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "vllm", "hf", "transformers")
HF_OPTIONS = ("dtype", "device", "batch_size", "max_model_len")


def load_generator(
    model_path: str | Path,
    *,
    backend: str = "auto",
    quantization: str | None = "auto",
    streaming: bool = False,
    **engine_args: Any,
) -> Generator:
    """Open `model_path` (a Hugging Face model folder) with vLLM or transformers and return its `Generator`.

    backend: "auto" picks vLLM when it is installed and a CUDA GPU is visible, else transformers ("hf"); "vllm" also
    runs vLLM's CPU build on a machine without a GPU.
    quantization: "auto" serves the checkpoint as it is (its `quantization_config`, or full precision); "none"
    insists on full precision; "int8" asks for 8-bit weights (bitsandbytes on load for transformers; an 8-bit
    checkpoint for vLLM); a vLLM method name such as "gptq_marlin" picks that kernel for a matching checkpoint.
    streaming: with vLLM, start its `AsyncLLM` (`numina_kit.models.vllm_async.AsyncVLLMGenerator`): a batch
    `Generator` that also serves one request at a time, so SC-TIR's `engine="auto"` runs the async engine on it.
    engine_args: vLLM `LLM(...)` arguments, or for transformers `dtype`, `device`, `batch_size`, `max_model_len`.
    """
    read_model_config(model_path)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    chosen = backend
    if backend in ("auto", "vllm") and vllm_installed():
        prepare_start()  # before anything asks about GPUs, so vLLM's workers never inherit a CUDA context
    if backend == "auto":
        chosen = "vllm" if vllm_installed() and devices.cuda_capabilities() else "hf"
        logger.info("backend 'auto' chose %s", chosen)
    if chosen == "vllm" and streaming:
        from numina_kit.models.vllm_async import AsyncVLLMGenerator

        return AsyncVLLMGenerator(model_path, quantization=quantization, **engine_args)
    if chosen == "vllm":
        return VLLMGenerator(model_path, quantization=quantization, **engine_args)
    unknown = sorted(set(engine_args) - set(HF_OPTIONS))
    if unknown and backend == "auto":
        logger.warning("ignoring options the transformers backend does not take: %s", ", ".join(unknown))
    elif unknown:
        raise InputError(f"the transformers backend takes {', '.join(HF_OPTIONS)}; got {', '.join(unknown)}")
    options = {key: value for key, value in engine_args.items() if key in HF_OPTIONS}
    return load_hf_generator(model_path, quantization=quantization, **options)
