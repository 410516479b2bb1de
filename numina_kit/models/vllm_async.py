"""`AsyncVLLMGenerator`: vLLM's `AsyncLLM` in this process, as a `StreamingGenerator` and as a batch `Generator`.

Each `complete` is one engine request whose output streams back in deltas; cancelling it aborts the request in the
engine, which frees its sequence's KV cache at once. Prefix caching is on, so the candidates of one problem share the
KV of their common prompt, and the engine's continuous batching keeps the batch full as candidates come and go.

The engine lives on `shared_event_loop()`: `AsyncLLM` binds its output handler to the loop of its first request, so
every request, the async SC-TIR engine's and the batch `generate` here alike, must run on that one loop (the sync
entry points, `sctir.solve` included, do). Scripts that start it need the `if __name__ == "__main__":` guard, as for
`vllm.LLM` (the engine core is a spawned process).
"""

import asyncio
import logging
from pathlib import Path
from typing import Any

from numina_kit.models.base import Completion, SamplingParams
from numina_kit.models.streaming import Progress, generate_all, shared_event_loop
from numina_kit.models.vllm import prepare_start, sampling_params, start_args, to_completion


logger = logging.getLogger(__name__)


class AsyncVLLMGenerator:
    """A streaming (and batch) generator over `vllm.v1.engine.async_llm.AsyncLLM`, started on the shared loop.

    `AsyncVLLMGenerator(model_path, quantization=..., **overrides)` takes the same arguments as `VLLMGenerator` (the
    engine arguments come from `vllm_engine_args`: the visible GPUs, or vLLM's CPU build); `from_engine_args(args)`
    starts it on exactly the `AsyncEngineArgs` fields given.
    """

    def __init__(self, model_path: str | Path, *, quantization: str | None = "auto", **overrides: Any) -> None:
        self._start(start_args(model_path, quantization=quantization, **overrides))

    @classmethod
    def from_engine_args(cls, args: dict[str, Any]) -> "AsyncVLLMGenerator":
        """Start the engine on exactly these `AsyncEngineArgs` fields (prefix caching on unless they say otherwise)."""
        generator = cls.__new__(cls)
        generator._start(dict(args))
        return generator

    def _start(self, args: dict[str, Any]) -> None:
        prepare_start()
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM

        args.setdefault("enable_prefix_caching", True)
        args.setdefault("disable_log_stats", True)
        self.engine_args = args
        self._vllm, self._delta = vllm, RequestOutputKind.DELTA
        self.loop = shared_event_loop()
        logger.info("starting vLLM %s AsyncLLM with %s", getattr(vllm, "__version__", "?"), args)

        async def start() -> tuple[Any, Any]:
            engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
            tokenizer = engine.get_tokenizer()
            if asyncio.iscoroutine(tokenizer):  # vLLM before ~0.12 returns it from a coroutine
                tokenizer = await tokenizer
            return engine, tokenizer

        self.engine, self.tokenizer = self.loop.run(start())

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """The batch interface: every prompt as its own request, all at once (prompt i seeded `seed + i`)."""
        return generate_all(self, prompts, params)

    async def complete(
        self, prompt: str, params: SamplingParams, *, request_id: str, on_progress: Progress | None = None
    ) -> Completion:
        """One request, streamed; cancelling the awaiting task aborts it in the engine (vLLM's `generate` does)."""
        if asyncio.get_running_loop() is not self.loop.loop:
            raise RuntimeError("AsyncVLLMGenerator runs on numina_kit.models.streaming.shared_event_loop() only")
        sampling = sampling_params(self._vllm, params, output_kind=self._delta)
        text, tokens, logprobs, prompt_tokens, last = "", [], [], 0, None
        async for output in self.engine.generate(prompt, sampling, request_id):
            last = output.outputs[0]
            text += last.text
            tokens += last.token_ids
            logprobs += last.logprobs or []
            prompt_tokens = len(output.prompt_token_ids or []) or prompt_tokens
            if on_progress is not None:
                on_progress(text, len(tokens))
        if last is None:
            raise RuntimeError(f"vLLM returned no output for request {request_id}")
        return to_completion(
            text, tokens, last.finish_reason, last.stop_reason, prompt_tokens, logprobs, params.logprobs
        )

    def close(self) -> None:
        """Shut the engine down (its core process and the KV cache it holds)."""
        self.engine.shutdown()
