"""`HFGenerator`: the `Generator` over a transformers causal LM, for a local GPU or CPU (and CI), and
`load_hf_generator`, which opens a model folder for it in full precision or bitsandbytes int8.

It follows vLLM's rules for stop strings, EOS, length and seeds (see `numina_kit.models.base`), so the SC-TIR loop
cannot tell it from `VLLMGenerator`.
"""

import importlib.util
import logging
import random
import warnings
from pathlib import Path
from typing import Any

from numina_kit.errors import InputError
from numina_kit.models.base import Completion, SamplingParams, match_stop
from numina_kit.models.checkpoint import checkpoint_quantization, read_model_config, weight_bits
from numina_kit.models.devices import bitsandbytes_problem, dtype_name, no_bf16_message, torch_capability


logger = logging.getLogger(__name__)

# Packages transformers needs to read a checkpoint quantized with each method.
_HF_QUANT_PACKAGES = {"gptq": "gptqmodel", "awq": "gptqmodel", "compressed-tensors": "compressed_tensors"}


class HFGenerator:
    """A `Generator` over a transformers causal LM: batched with left padding, per-prompt seeds, stop strings.

    Sampling draws each prompt's tokens from its own `torch.Generator` (seed `seed + i`), so results do not depend on
    the batch size or on the other prompts. Prompts are run `batch_size` at a time.
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, max_model_len: int | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        config_len = getattr(model.config, "max_position_embeddings", None) or 4096
        self.max_model_len = min(max_model_len or config_len, config_len)
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list | tuple) else [] if eos is None else [eos])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_token_ids = sorted(eos_ids)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        base_seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**62)
        completions: list[Completion] = []
        with warnings.catch_warnings():
            # bitsandbytes warns on every int8 matmul that fp32 inputs are cast to fp16.
            warnings.filterwarnings("ignore", message="MatMul8bitLt")
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                seeds = [base_seed + start + offset for offset in range(len(chunk))]
                completions += self._generate_batch(chunk, params, seeds)
        return completions

    def _generate_batch(self, prompts: list[str], params: SamplingParams, seeds: list[int]) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True)
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device)
        prompt_lengths = attention_mask.sum(dim=1).tolist()
        longest = max(prompt_lengths)
        if longest > self.max_model_len:
            raise InputError(f"a prompt of {longest} tokens is longer than the {self.max_model_len}-token context")
        # As vLLM: a row stops at max_new_tokens or when prompt + completion fill the context (one token at least).
        limits = [max(1, min(params.max_new_tokens, self.max_model_len - length)) for length in prompt_lengths]
        tracker = _FinishTracker(
            self.tokenizer, input_ids.shape[1], limits, params.stop, self.eos_token_ids, params.skip_special_tokens
        )
        sampler = None
        if params.temperature > 0:
            sampler = _SeededSampler(seeds, params.temperature, params.top_p, self.device, params.min_p)
        recorder = _LogprobRecorder(params.logprobs, sampler) if params.logprobs else None
        processors = LogitsProcessorList([step for step in (recorder or sampler,) if step is not None])
        config = GenerationConfig(
            max_new_tokens=max(limits),
            do_sample=False,
            eos_token_id=self.eos_token_ids or None,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        generated = sequences[:, input_ids.shape[1] :].tolist()
        completions = []
        for row, tokens in enumerate(generated):
            completion = self._completion(tokens, tracker.finished.get(row), params, prompt_lengths[row])
            if recorder is not None:
                completion.extra["entropies"] = [step[row] for step in recorder.entropies[: completion.num_tokens]]
                completion.extra["logprobs"] = [step[row] for step in recorder.logprobs[: completion.num_tokens]]
            completions.append(completion)
        return completions

    def _completion(
        self, tokens: list[int], finish: tuple[str, int] | None, params: SamplingParams, prompt_tokens: int
    ) -> Completion:
        reason, count = finish if finish is not None else ("length", len(tokens))
        tokens = tokens[:count]
        stops, skip = params.stop, params.skip_special_tokens
        # As vLLM with include_stop_str_in_output: the last token (EOS too) is decoded; special tokens are skipped
        # unless `params.skip_special_tokens` is False.
        text = self.tokenizer.decode(tokens, skip_special_tokens=skip)
        if reason in ("stop", "eos") and stops:
            previous = len(self.tokenizer.decode(tokens[:-1], skip_special_tokens=skip))
            match = match_stop(text, previous, stops)
            if match is None and reason == "stop":
                match = _earliest_stop(text, stops)
            if match is not None:
                return Completion(text[: match[1]], "stop", match[0], count, prompt_tokens, {"token_ids": tokens})
        if reason == "eos":
            return Completion(text, "stop", None, count, prompt_tokens, {"token_ids": tokens})
        if reason == "stop":
            logger.warning("a stop string seen while generating is not in the decoded text; reporting 'length'")
        return Completion(text, "length", None, count, prompt_tokens, {"token_ids": tokens})


def _earliest_stop(text: str, stops: tuple[str, ...]) -> tuple[str, int] | None:
    """Fallback when the last token's boundary is unclear: the stop string that ends first anywhere in `text`."""
    return match_stop(text, 0, stops)


class _SeededSampler:
    """A logits processor that samples each row from its own generator and leaves only that token (greedy picks it).

    Doing the sampling here rather than in `generate(do_sample=True)` gives each prompt its own random stream.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any, min_p: float = 0.0) -> None:
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.min_p = min_p
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.min_p > 0:
            probs = probs.masked_fill(probs < self.min_p * probs.max(dim=-1, keepdim=True).values, 0.0)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= self.top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
        cdf = probs.cumsum(dim=-1)
        # 1 - U(0,1) lies in (0, 1], so the first index with cdf >= draw always has positive probability.
        draws = torch.stack([1.0 - torch.rand((), generator=g, device=g.device) for g in self.generators])
        choice = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(-1)).clamp(max=cdf.shape[-1] - 1)
        picked = torch.full_like(scores, float("-inf"))
        return picked.scatter(-1, choice, 0.0)


class _LogprobRecorder:
    """A logits processor that records, per step and row, the entropy of the model's distribution over its top-k
    tokens (`token_entropy`, as vLLM's top-k logprobs give it) and the log-probability of the token chosen, then
    hands the scores to `sampler` (greedy decoding without one). Like vLLM's default, both are read from the
    model's raw distribution, before temperature, top-p and min-p."""

    def __init__(self, k: int, sampler: "_SeededSampler | None" = None) -> None:
        self.k = k
        self.sampler = sampler
        self.entropies: list[list[float]] = []
        self.logprobs: list[list[float]] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        logprobs = scores.float().log_softmax(dim=-1)
        top = logprobs.topk(self.k, dim=-1).values
        self.entropies.append((-(top.exp() * top).sum(dim=-1)).tolist())
        chosen = self.sampler(input_ids, scores) if self.sampler is not None else scores
        # `generate` runs greedily over what we return: the token it takes is the arg max of `chosen`
        self.logprobs.append(logprobs.gather(-1, chosen.argmax(dim=-1, keepdim=True)).squeeze(-1).tolist())
        return chosen


class _FinishTracker:
    """A stopping criterion that records, per row, why and after how many new tokens the row finished.

    Only the last few tokens are decoded each step: a stop string of n characters that ends in the newest token lies
    within its last n + 8 tokens.
    """

    def __init__(
        self,
        tokenizer: Any,
        prompt_width: int,
        limits: list[int],
        stops: tuple[str, ...],
        eos_ids: list[int],
        skip_special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.prompt_width = prompt_width
        self.limits = limits
        self.stops = stops
        self.eos_ids = set(eos_ids)
        self.tail = max((len(s) for s in stops), default=0) + 8
        self.finished: dict[int, tuple[str, int]] = {}

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        count = input_ids.shape[1] - self.prompt_width
        rows = [row for row in range(input_ids.shape[0]) if row not in self.finished]
        last = input_ids[:, -1].tolist()
        searching = []
        for row in rows:
            if last[row] in self.eos_ids:
                self.finished[row] = ("eos", count)
            elif self.stops:
                searching.append(row)
        if searching:
            tails = input_ids[searching, max(self.prompt_width, input_ids.shape[1] - self.tail) :].tolist()
            for row, text in zip(
                searching,
                self.tokenizer.batch_decode(tails, skip_special_tokens=self.skip_special_tokens),
                strict=True,
            ):
                if any(stop in text for stop in self.stops):
                    self.finished[row] = ("stop", count)
        for row in rows:
            if row not in self.finished and count >= self.limits[row]:
                self.finished[row] = ("length", count)
        done = [row in self.finished for row in range(input_ids.shape[0])]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


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


def _hf_dtype(dtype: str | None, device: str) -> str:
    name = dtype_name(dtype or "auto")
    if device == "cpu":
        return "float32" if name == "auto" else name
    capability = torch_capability(device)
    if name == "bfloat16" and capability < (8, 0):
        raise InputError(no_bf16_message(capability))
    if name == "auto":
        return "bfloat16" if capability >= (8, 0) else "float16"
    return name
