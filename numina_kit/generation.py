"""The one interface every caller generates text through: `Generator.generate(prompts, params) -> completions`.

The SC-TIR loop, evaluation, KTO sampling and TIR data generation are written against `Generator` alone. Two
backends implement it (`VLLMGenerator` for Kaggle's T4s, `HFGenerator` for a local GPU or CPU);
`numina_kit.loading.load_generator` picks and builds one.
"""

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable


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


@dataclass
class Completion:
    """One continuation of one prompt.

    `text` is the new text only (not the prompt). When a stop string ended generation it is kept at the end of
    `text` and named in `stop_reason`; `finish_reason` is "stop" for a stop string or EOS, "length" when
    `max_new_tokens` ran out.
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
