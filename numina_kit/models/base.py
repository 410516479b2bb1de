"""The one interface every caller generates text through: `Generator.generate(prompts, params) -> completions`.

The SC-TIR loop, evaluation, KTO sampling and TIR data generation are written against `Generator` alone. Two
backends implement it (`VLLMGenerator` for Kaggle's T4s, `HFGenerator` for a local GPU or CPU);
`numina_kit.models.load.load_generator` picks and builds one.

Both backends follow vLLM's rules, so a caller cannot tell them apart: after each new token the text generated so far
is searched for the stop strings (the first one in `stop` order that ends inside the new characters wins) and cut
just after it; EOS ends a completion without adding its text; stop strings are looked for in the new text only,
never in the prompt.
"""

import dataclasses
import logging
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable


logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one continuation per prompt.

    `seed` makes a call reproducible: prompt i of a call is sampled with seed `seed + i`, so the same prompt list and
    seed give the same texts whatever the batch size. `temperature == 0` means greedy decoding.
    """

    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 2048
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")


@dataclass
class Completion:
    """One continuation of one prompt.

    `text` is the new text only (not the prompt). When a stop string ended generation it is kept at the end of
    `text` and named in `stop_reason`; `finish_reason` is "stop" for a stop string or EOS, "length" when
    `max_new_tokens` ran out. `num_tokens` counts the generated tokens, EOS included; both backends put them in
    `extra["token_ids"]`.
    """

    text: str
    finish_reason: FinishReason
    stop_reason: str | None = None
    num_tokens: int = 0
    prompt_tokens: int = 0
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Generator(Protocol):
    """Anything that turns prompts into completions, one per prompt, in order."""

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]: ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes as a prompt, so callers can keep candidates inside the context window."""
        ...


def match_stop(text: str, previous_length: int, stops: tuple[str, ...]) -> tuple[str, int] | None:
    """The stop string completed by the characters after `previous_length`, and where to cut `text` (just after it).

    vLLM's rule: each stop string is looked for only where it would overlap the new characters; when several
    complete there, the one that completes first wins, ties going to the order of `stops`. None when none matches.
    """
    best: tuple[int, str] | None = None
    for stop in stops:
        index = text.find(stop, max(0, previous_length - len(stop) + 1))
        if index != -1 and (best is None or index + len(stop) < best[0]):
            best = (index + len(stop), stop)
    return (best[1], best[0]) if best else None


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
            raise ValueError(f"a prompt of {longest} tokens is longer than the {self.max_model_len}-token context")
        # As vLLM: a row stops at max_new_tokens or when prompt + completion fill the context (one token at least).
        limits = [max(1, min(params.max_new_tokens, self.max_model_len - length)) for length in prompt_lengths]
        tracker = _FinishTracker(self.tokenizer, input_ids.shape[1], limits, params.stop, self.eos_token_ids)
        processors = LogitsProcessorList()
        if params.temperature > 0:
            processors.append(_SeededSampler(seeds, params.temperature, params.top_p, self.device))
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
        return [
            self._completion(tokens, tracker.finished.get(row), params.stop, prompt_lengths[row])
            for row, tokens in enumerate(generated)
        ]

    def _completion(
        self, tokens: list[int], finish: tuple[str, int] | None, stops: tuple[str, ...], prompt_tokens: int
    ) -> Completion:
        reason, count = finish if finish is not None else ("length", len(tokens))
        tokens = tokens[:count]
        # As vLLM with include_stop_str_in_output: the last token (EOS too) is decoded; special tokens are skipped.
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if reason in ("stop", "eos") and stops:
            previous = len(self.tokenizer.decode(tokens[:-1], skip_special_tokens=True))
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

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any) -> None:
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
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


class _FinishTracker:
    """A stopping criterion that records, per row, why and after how many new tokens the row finished.

    Only the last few tokens are decoded each step: a stop string of n characters that ends in the newest token lies
    within its last n + 8 tokens.
    """

    def __init__(
        self, tokenizer: Any, prompt_width: int, limits: list[int], stops: tuple[str, ...], eos_ids: list[int]
    ) -> None:
        self.tokenizer = tokenizer
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
            for row, text in zip(searching, self.tokenizer.batch_decode(tails, skip_special_tokens=True), strict=True):
                if any(stop in text for stop in self.stops):
                    self.finished[row] = ("stop", count)
        for row in rows:
            if row not in self.finished and count >= self.limits[row]:
                self.finished[row] = ("length", count)
        done = [row in self.finished for row in range(input_ids.shape[0])]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class VLLMGenerator:
    """A `Generator` over vLLM's offline engine, set up for the GPUs it finds (T4: fp16, Triton attention).

    `vllm` is imported here, not at module import, so the rest of numina_kit runs where vLLM is not installed. The
    engine arguments come from `numina_kit.models.load.vllm_engine_args` (read `engine_args` to see what was used);
    anything passed in `overrides` replaces them.
    """

    def __init__(self, model_path: str | Path, *, quantization: str | None = "auto", **overrides: Any) -> None:
        from numina_kit.models.load import import_vllm, vllm_installed

        if not vllm_installed():
            import_vllm()  # raises the one-line "not installed" error before any GPU check
        from numina_kit.models.load import vllm_engine_args

        args = vllm_engine_args(model_path, quantization=quantization, **overrides)
        if args.get("attention_backend") == "TRITON_ATTN":
            os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")  # FlashInfer's sampler fails on T4
        vllm = import_vllm()
        accepted = _engine_arg_names()
        if "attention_backend" in args and accepted is not None and "attention_backend" not in accepted:
            # vLLM before ~0.18 takes the backend from the environment only.
            os.environ.setdefault("VLLM_ATTENTION_BACKEND", args.pop("attention_backend"))
        self.engine_args = args
        logger.info("starting vLLM %s with %s", getattr(vllm, "__version__", "?"), args)
        self._vllm = vllm
        self.llm = vllm.LLM(**args)
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        if not prompts:
            return []
        # Unseeded requests share the engine's generator, which vLLM samples faster than per-request ones.
        seeds = [None if params.seed is None else params.seed + index for index in range(len(prompts))]
        requests = [
            self._vllm.SamplingParams(
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                stop=list(params.stop),
                include_stop_str_in_output=True,
                seed=seed,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(prompts, requests, use_tqdm=False)
        completions = []
        for output in outputs:
            best = output.outputs[0]
            stop_reason = best.stop_reason if isinstance(best.stop_reason, str) else None
            finish = "stop" if best.finish_reason == "stop" else "length"
            if best.finish_reason not in ("stop", "length"):
                # e.g. "abort": the text is cut short, which callers must treat like running out of tokens.
                logger.warning("vLLM finished a request with %r; reporting it as 'length'", best.finish_reason)
            tokens = list(best.token_ids)
            prompt_tokens = len(output.prompt_token_ids or [])
            completions.append(
                Completion(best.text, finish, stop_reason, len(tokens), prompt_tokens, {"token_ids": tokens})
            )
        return completions


def _engine_arg_names() -> set[str] | None:
    """The fields of the installed vLLM's `EngineArgs`, or None when they cannot be read."""
    try:
        from vllm.engine.arg_utils import EngineArgs

        return {f.name for f in dataclasses.fields(EngineArgs)}
    except Exception:
        return None
