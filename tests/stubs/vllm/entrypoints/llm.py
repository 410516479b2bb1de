"""Stand-in for `vllm.entrypoints.llm`: the offline `LLM` engine, run with transformers on CPU (see the package
docstring for what is mirrored and what is not)."""

import json
import warnings
from collections.abc import Callable, Sequence
from itertools import count
from pathlib import Path
from typing import Any

from vllm.engine.arg_utils import EngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import _SAMPLING_EPS, SamplingParams


# Config keys vLLM reads to derive the context length (`_get_and_verify_max_len`); the smallest one present wins.
_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")
# A checkpoint of the first method may be served by the second kernel (`override_quantization_method`).
_MARLIN_OVERRIDES = {"gptq": "gptq_marlin", "awq": "awq_marlin"}


class LLM:
    """An LLM for generating texts from given prompts and sampling parameters (offline inference)."""

    def __init__(
        self,
        model: str,
        *,
        runner: str = "auto",
        convert: str = "auto",
        tokenizer: str | None = None,
        tokenizer_mode: str = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        allowed_local_media_path: str = "",
        allowed_media_domains: list[str] | None = None,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        quantization: str | None = None,
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        chat_template: Path | str | None = None,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        cpu_offload_gb: float = 0,
        enforce_eager: bool = False,
        disable_custom_all_reduce: bool = False,
        hf_token: bool | str | None = None,
        hf_overrides: Any = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        pooler_config: Any = None,
        structured_outputs_config: Any = None,
        profiler_config: Any = None,
        attention_config: Any = None,
        kv_cache_memory_bytes: int | None = None,
        compilation_config: Any = None,
        logits_processors: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if "swap_space" in kwargs:
            kwargs.pop("swap_space")
            warnings.warn("The 'swap_space' parameter is deprecated and ignored.", DeprecationWarning, stacklevel=2)
        kwargs.setdefault("disable_log_stats", True)
        self.engine_args = EngineArgs(
            model=model,
            runner=runner,
            convert=convert,
            tokenizer=tokenizer,
            tokenizer_mode=tokenizer_mode,
            skip_tokenizer_init=skip_tokenizer_init,
            trust_remote_code=trust_remote_code,
            allowed_local_media_path=allowed_local_media_path,
            allowed_media_domains=allowed_media_domains,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            quantization=quantization,
            revision=revision,
            tokenizer_revision=tokenizer_revision,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            cpu_offload_gb=cpu_offload_gb,
            enforce_eager=enforce_eager,
            disable_custom_all_reduce=disable_custom_all_reduce,
            hf_token=hf_token,
            hf_overrides=hf_overrides,
            mm_processor_kwargs=mm_processor_kwargs,
            pooler_config=pooler_config,
            structured_outputs_config=structured_outputs_config,
            profiler_config=profiler_config,
            attention_config=attention_config,
            compilation_config=compilation_config,
            logits_processors=logits_processors,
            **kwargs,
        )
        self.chat_template = chat_template
        self.llm_engine = _Engine(self.engine_args)
        self.request_counter = count()

    def get_tokenizer(self) -> Any:
        return self.llm_engine.tokenizer

    def generate(
        self,
        prompts: str | Sequence[str],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool | Callable[..., Any] = True,
        lora_request: Any = None,
        priority: list[int] | None = None,
        tokenization_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        """Generate one completion per prompt; a list of `sampling_params` gives each prompt its own."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if any(not isinstance(prompt, str) for prompt in prompts):
            raise NotImplementedError("the stand-in takes text prompts only")
        if sampling_params is None:
            sampling_params = SamplingParams()
        params = list(sampling_params) if isinstance(sampling_params, Sequence) else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        if any(not isinstance(p, SamplingParams) for p in params):
            raise TypeError("sampling_params must be SamplingParams")
        return [
            self.llm_engine.run(str(next(self.request_counter)), prompt, param, tokenization_kwargs or {})
            for prompt, param in zip(prompts, params, strict=True)
        ]


class _Engine:
    """What the stand-in keeps of `LLMEngine`: the validated config, the tokenizer and a float32 CPU model."""

    def __init__(self, args: EngineArgs) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        path = Path(args.model)
        if not (path / "config.json").is_file():
            raise OSError(f"{args.model} is not a local folder and the stand-in cannot reach the Hub")
        hf_config = json.loads((path / "config.json").read_text())
        self.quantization = _verify_quantization(path, hf_config, args.quantization)
        heads = hf_config.get("num_attention_heads", 1)
        if heads % args.tensor_parallel_size:
            raise ValueError(
                f"Total number of attention heads ({heads}) must be divisible by tensor parallel size "
                f"({args.tensor_parallel_size})."
            )
        derived = min((hf_config[k] for k in _LENGTH_KEYS if isinstance(hf_config.get(k), int)), default=2048)
        if args.max_model_len is not None and args.max_model_len > derived:
            raise ValueError(
                f"User-specified max_model_len ({args.max_model_len}) is greater than the derived max_model_len "
                f"({derived})."
            )
        self.max_model_len = args.max_model_len or derived
        self.tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        config = AutoConfig.from_pretrained(path)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # no quantized kernels here: run the float weights
        self.model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32).eval()
        self.eos_token_id = self.tokenizer.eos_token_id
        generation = path / "generation_config.json"
        extra = json.loads(generation.read_text()).get("eos_token_id") if generation.is_file() else None
        extra = [] if extra is None else [extra] if isinstance(extra, int) else list(extra)
        self.extra_stop_ids = [token for token in extra if token != self.eos_token_id]
        self.generator = torch.Generator().manual_seed(args.seed or 0)

    def run(self, request_id: str, prompt: str, params: SamplingParams, tokenization_kwargs: dict) -> RequestOutput:
        import torch

        _refuse_unsupported(params)
        prompt_ids = self.tokenizer(prompt, **tokenization_kwargs)["input_ids"]
        if len(prompt_ids) > self.max_model_len:
            raise ValueError(
                f"The decoder prompt (length {len(prompt_ids)}) is longer than the maximum model length of "
                f"{self.max_model_len}."
            )
        generator = self.generator if params.seed is None else torch.Generator().manual_seed(params.seed)
        stop_ids = set(params.stop_token_ids) | set(self.extra_stop_ids if not params.ignore_eos else [])
        tokens: list[int] = []
        text, finish, stop_reason = "", None, None
        past, step_input = None, prompt_ids
        with torch.inference_mode():
            while finish is None:
                out = self.model(input_ids=torch.tensor([step_input]), past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = _sample(out.logits[0, -1].float(), params, generator)
                tokens.append(token)
                step_input = [token]
                # Engine core first (EOS, stop tokens, length), then the detokenizer's stop strings.
                if token == self.eos_token_id and not params.ignore_eos:
                    finish = "stop"
                elif token in stop_ids:
                    finish, stop_reason = "stop", token
                elif len(tokens) >= params.max_tokens or len(prompt_ids) + len(tokens) >= self.max_model_len:
                    finish = "length"
                stop_terminated = finish == "stop"
                decoded_tokens = tokens if params.include_stop_str_in_output or not stop_terminated else tokens[:-1]
                new_text = self.tokenizer.decode(decoded_tokens, skip_special_tokens=params.skip_special_tokens)
                new_char_count, text = len(new_text) - len(text), new_text
                matched = check_stop_strings(text, new_char_count, params.stop, params.include_stop_str_in_output)
                if matched is not None:
                    stop_string, truncate_to = matched
                    if truncate_to != -1:
                        text = text[:truncate_to]
                    finish, stop_reason = "stop", stop_string
        completion = CompletionOutput(0, text, tokens, None, None, finish, stop_reason)
        return RequestOutput(request_id, prompt, prompt_ids, None, [completion], True)


def check_stop_strings(
    output_text: str, new_char_count: int, stop: list[str], include_in_output: bool
) -> tuple[str, int] | None:
    """vLLM's stop-string check: the stop string completing earliest in the new text (ties: list order), and the
    length to cut the text to (-1: no cut)."""
    if not new_char_count or not stop:
        return None
    best: tuple[int, int, str] | None = None
    for stop_str in stop:
        index = output_text.find(stop_str, 1 - new_char_count - len(stop_str))
        if index != -1 and (best is None or index + len(stop_str) < best[0]):
            best = (index + len(stop_str), index, stop_str)
    if best is None:
        return None
    end, index, stop_str = best
    if include_in_output:
        return (stop_str, -1) if end >= len(output_text) else (stop_str, end)
    return stop_str, index


def _verify_quantization(path: Path, hf_config: dict, quantization: str | None) -> str | None:
    """vLLM's `ModelConfig._verify_quantization` for the cases numina_kit meets."""
    record = hf_config.get("quantization_config")
    if record:
        method = str(record.get("quant_method", "")).lower()
        if quantization in (None, "marlin", _MARLIN_OVERRIDES.get(method)):
            method = _MARLIN_OVERRIDES.get(method, method)
        if quantization is None:
            return method
        if quantization != method:
            raise ValueError(
                f"Quantization method specified in the model config ({method}) does not match the quantization "
                f"method specified in the `quantization` argument ({quantization})."
            )
        return quantization
    if quantization not in (None, "bitsandbytes") and not (path / "quantize_config.json").is_file():
        raise ValueError(f"Cannot find the config file for {quantization}")
    return quantization


def _refuse_unsupported(params: SamplingParams) -> None:
    unsupported = {
        "n": params.n != 1,
        "logprobs": params.logprobs is not None,
        "prompt_logprobs": params.prompt_logprobs is not None,
        "penalties": (params.presence_penalty, params.frequency_penalty, params.repetition_penalty) != (0, 0, 1),
        "min_p": params.min_p > 0,
        "min_tokens": params.min_tokens > 0,
        "logit_bias": bool(params.logit_bias),
        "allowed_token_ids": bool(params.allowed_token_ids),
        "bad_words": bool(params.bad_words),
    }
    used = [name for name, on in unsupported.items() if on]
    if used:
        raise NotImplementedError(f"the vLLM stand-in does not implement {', '.join(used)}")


def _sample(logits: Any, params: SamplingParams, generator: Any) -> int:
    import torch

    if params.temperature < _SAMPLING_EPS:
        return int(torch.argmax(logits))
    logits = logits / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        drop = sorted_probs.cumsum(0) - sorted_probs >= params.top_p
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs.masked_fill(drop, 0.0))
    return int(torch.multinomial(probs, 1, generator=generator))
