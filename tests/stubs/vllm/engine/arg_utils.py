"""Stand-in for `vllm.engine.arg_utils`: `EngineArgs` with the field names of vLLM 0.19-0.33 and its checks on the
values numina_kit sets (dtype, quantization, attention backend)."""

from dataclasses import dataclass
from typing import Any


DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
# `vllm.model_executor.layers.quantization.QUANTIZATION_METHODS` (the methods a T4 or an H100 could meet).
QUANTIZATION_METHODS = (
    "awq",
    "awq_marlin",
    "bitsandbytes",
    "compressed-tensors",
    "experts_int8",
    "fbgemm_fp8",
    "fp8",
    "gguf",
    "gptq",
    "gptq_bitblas",
    "gptq_marlin",
    "inc",
    "modelopt",
    "moe_wna16",
    "mxfp4",
    "quark",
    "torchao",
)
# `AttentionBackendEnum` member names; `AttentionConfig` parses a string with `AttentionBackendEnum[value.upper()]`.
ATTENTION_BACKENDS = (
    "FLASH_ATTN",
    "TRITON_ATTN",
    "FLASHINFER",
    "FLEX_ATTENTION",
    "TREE_ATTN",
    "ROCM_ATTN",
    "ROCM_AITER_FA",
    "CPU_ATTN",
    "TORCH_SDPA",
)


@dataclass
class EngineArgs:
    """Arguments for the vLLM engine; `LLM(**kwargs)` lands here, so an unknown name raises TypeError."""

    model: str = "facebook/opt-125m"
    served_model_name: str | list[str] | None = None
    tokenizer: str | None = None
    hf_config_path: str | None = None
    runner: str = "auto"
    convert: str = "auto"
    skip_tokenizer_init: bool = False
    enable_prompt_embeds: bool = False
    tokenizer_mode: str = "auto"
    trust_remote_code: bool = False
    allowed_local_media_path: str = ""
    allowed_media_domains: list[str] | None = None
    download_dir: str | None = None
    load_format: str = "auto"
    config_format: str = "auto"
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    seed: int | None = 0
    max_model_len: int | None = None
    distributed_executor_backend: Any = None
    pipeline_parallel_size: int = 1
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    enable_expert_parallel: bool = False
    max_parallel_loading_workers: int | None = None
    block_size: int | None = None
    enable_prefix_caching: bool | None = None
    prefix_caching_hash_algo: str = "sha256"
    disable_sliding_window: bool = False
    disable_cascade_attn: bool = False
    cpu_offload_gb: float = 0
    gpu_memory_utilization: float = 0.9
    kv_cache_memory_bytes: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_partial_prefills: int = 1
    max_num_seqs: int | None = None
    max_logprobs: int = 20
    logprobs_mode: str = "raw_logprobs"
    disable_log_stats: bool = False
    revision: str | None = None
    code_revision: str | None = None
    hf_token: bool | str | None = None
    hf_overrides: Any = None
    tokenizer_revision: str | None = None
    quantization: str | None = None
    enforce_eager: bool = False
    disable_custom_all_reduce: bool = False
    limit_mm_per_prompt: dict[str, int] | None = None
    mm_processor_kwargs: dict[str, Any] | None = None
    enable_lora: bool = False
    max_loras: int = 1
    max_lora_rank: int = 16
    device: str = "auto"
    num_gpu_blocks_override: int | None = None
    model_loader_extra_config: dict | None = None
    ignore_patterns: str | list[str] | None = None
    enable_chunked_prefill: bool | None = None
    disable_chunked_mm_input: bool = False
    scheduling_policy: str = "fcfs"
    scheduler_cls: Any = None
    pooler_config: Any = None
    compilation_config: Any = None
    attention_config: Any = None
    structured_outputs_config: Any = None
    profiler_config: Any = None
    worker_cls: str = "auto"
    worker_extension_cls: str = ""
    kv_transfer_config: Any = None
    generation_config: str = "auto"
    override_generation_config: dict[str, Any] | None = None
    enable_sleep_mode: bool = False
    model_impl: str = "auto"
    override_attention_dtype: str | None = None
    attention_backend: str | None = None
    calculate_kv_scales: bool = False
    additional_config: dict[str, Any] | None = None
    use_tqdm_on_load: bool = True
    async_scheduling: bool | None = None
    logits_processors: list[Any] | None = None
    speculative_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.tokenizer:
            self.tokenizer = self.model
        if self.dtype not in DTYPES:
            raise ValueError(f"Unknown dtype: {self.dtype!r}; choose from {DTYPES}")
        if self.quantization is not None and self.quantization not in QUANTIZATION_METHODS:
            raise ValueError(
                f"Unknown quantization method: {self.quantization}. Must be one of {QUANTIZATION_METHODS}."
            )
        if isinstance(self.attention_backend, str):
            if self.attention_backend.lower() == "auto":
                self.attention_backend = None
            elif self.attention_backend.upper() not in ATTENTION_BACKENDS:
                raise ValueError(f"Invalid attention backend: {self.attention_backend!r}")
        if not isinstance(self.tensor_parallel_size, int) or self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be a positive integer, got {self.tensor_parallel_size}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {self.max_model_len}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
