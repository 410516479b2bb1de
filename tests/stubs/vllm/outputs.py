"""Stand-in for `vllm.outputs`: `CompletionOutput` and `RequestOutput` with vLLM's field names."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CompletionOutput:
    """One sequence of a request: `finish_reason` is "stop" or "length" (None while running); `stop_reason` is the
    matched stop string, a stop token id, or None (EOS or length)."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: Any | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    lora_request: Any | None = None

    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    """The result of one prompt."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any | None
    outputs: list[CompletionOutput]
    finished: bool
    metrics: Any | None = None
    lora_request: Any | None = None
    encoder_prompt: str | None = None
    encoder_prompt_token_ids: list[int] | None = None
    num_cached_tokens: int | None = None
    kv_transfer_params: dict[str, Any] | None = field(default=None)
