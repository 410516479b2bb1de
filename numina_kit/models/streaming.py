"""The request interface: one prompt in, its completion out (streamed as it grows), cancellable at any moment.

The batch `Generator` suits Numina's synchronous rounds; the asynchronous SC-TIR engine (`numina_kit.sctir.engine`)
sends each candidate's prompt on its own and cancels it when its work is no longer needed (the answers agree, the
deadline passed). A `StreamingGenerator` is anything with

    async def complete(prompt, params, *, request_id, on_progress=None) -> Completion
    def count_tokens(text) -> int

`complete` follows the batch interface's rules (stop strings kept at the end of the text, `finish_reason`), and
calls `on_progress(text_so_far, tokens_so_far)` whenever the completion grows. Cancelling the task that awaits it
stops the request in the backend (vLLM frees the sequence's KV cache) before `CancelledError` propagates; the text
reported through `on_progress` is then the text generated so far. `params.seed` seeds this one request.

Backends: `numina_kit.models.vllm_async.AsyncVLLMGenerator` (vLLM's `AsyncLLM` in process),
`numina_kit.models.openai_async.OpenAIStreamingGenerator` (any OpenAI-compatible server), and `BatchingGenerator`
here, which serves requests through a batch `Generator` (transformers) by grouping those waiting into one call.
`EventLoopThread` runs coroutines from synchronous code (a notebook cell, `predict`) on one long-lived loop, which
an in-process engine needs: vLLM's `AsyncLLM` stays bound to the loop it first ran in.
"""

import asyncio
import dataclasses
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from numina_kit.models.base import Completion, Generator, SamplingParams


logger = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[str, int], None]  # (text so far, tokens so far) of one request


@runtime_checkable
class StreamingGenerator(Protocol):
    """Anything that completes one prompt per request, reports progress, and stops a request when cancelled."""

    async def complete(
        self, prompt: str, params: SamplingParams, *, request_id: str, on_progress: Progress | None = None
    ) -> Completion: ...

    def count_tokens(self, text: str) -> int: ...


def is_streaming(generator: object) -> bool:
    """Whether `generator` offers the request interface (an `async def complete` and `count_tokens`).

    Checked on the coroutine function itself, since a thread-based client may have a plain `complete` method.
    """
    return inspect.iscoroutinefunction(getattr(generator, "complete", None)) and callable(
        getattr(generator, "count_tokens", None)
    )


class EventLoopThread:
    """One asyncio event loop running in a daemon thread; `run(coro)` blocks the caller until the coroutine ends.

    Synchronous callers (and Jupyter, whose own loop is already running) reach async backends through it. The loop
    lives as long as the object, so an engine bound to it on first use keeps working across calls.
    """

    def __init__(self, name: str = "numina-event-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and return its result (its exception is raised here)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("EventLoopThread.run called from its own loop: await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Stop the loop and its thread (pending tasks are cancelled). Safe to call twice."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()


_shared_lock = threading.Lock()
_shared: EventLoopThread | None = None


def shared_event_loop() -> EventLoopThread:
    """The process-wide `EventLoopThread`, started on first use (the loop `sctir.solve` runs the async engine on)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.loop.is_closed():
            _shared = EventLoopThread()
        return _shared


def generate_all(generator: StreamingGenerator, prompts: list[str], params: SamplingParams) -> list[Completion]:
    """The batch `Generator.generate` over a streaming backend: every prompt as its own request, all at once.

    Prompt i is seeded with `params.seed + i` as in the batch backends. Runs on `shared_event_loop()`.
    """

    async def run_all() -> list[Completion]:
        requests = [
            generator.complete(prompt, _seeded(params, index), request_id=f"batch-{id(prompts)}-{index}")
            for index, prompt in enumerate(prompts)
        ]
        return list(await asyncio.gather(*requests))

    return shared_event_loop().run(run_all()) if prompts else []


def _seeded(params: SamplingParams, index: int) -> SamplingParams:
    return params if params.seed is None else dataclasses.replace(params, seed=params.seed + index)


@dataclass
class _Request:
    prompt: str
    params: SamplingParams
    future: asyncio.Future = field(repr=False)


class BatchingGenerator:
    """A `StreamingGenerator` over a batch `Generator` (e.g. `HFGenerator`): requests waiting together share a call.

    Whenever the model is free, every request that is waiting goes into batch calls, one per run of consecutive
    seeds with equal sampling settings (a batch call seeds prompt i with `seed + i`, so each request keeps its own
    seed). Calls run one at a time in the loop's worker thread, so the event loop stays free. A cancelled request
    that has not started is dropped; one inside a running call cannot be interrupted (transformers' `generate` is
    one blocking call) and its result is discarded. No progress is streamed: the whole text arrives at the end.
    """

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.calls = 0  # batch calls made
        self._waiting: list[_Request] = []
        self._worker: asyncio.Task | None = None

    def count_tokens(self, text: str) -> int:
        return self.generator.count_tokens(text)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """The batch interface, passed straight through (the sync engine and evaluation use it)."""
        return self.generator.generate(prompts, params)

    async def complete(
        self, prompt: str, params: SamplingParams, *, request_id: str, on_progress: Progress | None = None
    ) -> Completion:
        request = _Request(prompt, params, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        if self._worker is None or self._worker.done():
            # scheduled after the tasks already ready, so requests sent together land in one call
            self._worker = asyncio.create_task(self._serve())
        try:
            completion = await request.future
        except asyncio.CancelledError:
            if request in self._waiting:
                self._waiting.remove(request)
            raise
        if on_progress is not None:
            on_progress(completion.text, completion.num_tokens)
        return completion

    async def _serve(self) -> None:
        """Run batch calls while requests are waiting, then end (the next request starts a new worker)."""
        loop = asyncio.get_running_loop()
        while self._waiting:
            taken, self._waiting = self._waiting, []
            for batch in _batches(taken):
                batch = [r for r in batch if not r.future.done()]  # cancelled while waiting for the model
                if not batch:
                    continue
                self.calls += 1
                prompts = [r.prompt for r in batch]
                try:
                    outcomes = await loop.run_in_executor(None, self.generator.generate, prompts, batch[0].params)
                    if len(outcomes) != len(batch):
                        raise RuntimeError(f"generator returned {len(outcomes)} completions for {len(batch)}")
                except Exception as error:  # every request of the call fails with the call's error
                    outcomes = [error] * len(batch)
                for request, outcome in zip(batch, outcomes, strict=True):
                    if request.future.done():
                        continue
                    if isinstance(outcome, Exception):
                        request.future.set_exception(outcome)
                    else:
                        request.future.set_result(outcome)


def _batches(requests: list[_Request]) -> list[list[_Request]]:
    """Group waiting requests into batch calls: equal settings apart from the seed, consecutive seeds, in order."""
    groups: dict[tuple[SamplingParams, bool], list[_Request]] = {}
    for request in requests:
        key = (dataclasses.replace(request.params, seed=None), request.params.seed is None)
        groups.setdefault(key, []).append(request)
    batches = []
    for group in groups.values():
        if group[0].params.seed is None:
            batches.append(group)
            continue
        current: list[_Request] = []
        for request in sorted(group, key=lambda r: r.params.seed):
            if current and request.params.seed != current[-1].params.seed + 1:
                batches.append(current)
                current = []
            current.append(request)
        batches.append(current)
    return batches
