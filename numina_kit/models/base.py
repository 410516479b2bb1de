"""The one interface every caller generates text through: `Generator.generate(prompts, params) -> completions`.

The SC-TIR loop, evaluation, KTO sampling and TIR data generation are written against `Generator` alone. Two
backends implement it, `numina_kit.models.vllm.VLLMGenerator` (vLLM, for GPUs) and
`numina_kit.models.hf.HFGenerator` (transformers, for a local GPU or CPU); `numina_kit.models.load.load_generator`
picks and builds one.

Both backends follow vLLM's rules, so a caller cannot tell them apart: after each new token the text generated so far
is searched for the stop strings (`match_stop`: the one that completes earliest inside the new characters wins, ties
going to `stop` order) and cut just after it; EOS ends a completion without adding its text; stop strings are looked
for in the new text only, never in the prompt.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from numina_kit.errors import InputError


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one continuation per prompt.

    `seed` makes a call reproducible: prompt i of a call is sampled with seed `seed + i`, so the same prompt list and
    seed give the same texts whatever the batch size. `temperature == 0` means greedy decoding. `min_p` drops tokens
    less likely than `min_p` times the most likely one. `skip_special_tokens=False` keeps special tokens in the
    text (formats made of them, such as Harmony, need it; stop strings then match them too). `logprobs=k` asks for
    each generated token's top-k log-probabilities, kept as `Completion.extra["entropies"]` (`token_entropy`).
    """

    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 2048
    stop: tuple[str, ...] = ()
    seed: int | None = None
    min_p: float = 0.0
    skip_special_tokens: bool = True
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_p < 1:
            raise InputError(f"min_p must be in [0, 1), got {self.min_p}")
        if self.logprobs is not None and self.logprobs < 1:
            raise InputError(f"logprobs must be a positive number of top tokens, got {self.logprobs}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not s for s in self.stop):
            raise InputError("stop strings must not be empty")


@dataclass
class Completion:
    """One continuation of one prompt.

    `text` is the new text only (not the prompt). When a stop string ended generation it is kept at the end of
    `text` and named in `stop_reason`; `finish_reason` is "stop" for a stop string or EOS, "length" when
    `max_new_tokens` ran out. `num_tokens` counts the generated tokens, EOS included; both backends put them in
    `extra["token_ids"]`, and with `SamplingParams.logprobs` each token's entropy in `extra["entropies"]`.
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


def token_entropy(logprobs: Iterable[float]) -> float:
    """The entropy (nats) of one sampling step from its top-k log-probabilities: -sum p log p over those k, not
    renormalised (as the AIMO-3 prize teams computed confidence from vLLM's top-5 logprobs)."""
    return -sum(math.exp(value) * value for value in logprobs if value > -math.inf)
