"""Scripted generators: canned completions through the batch `Generator` interface and the streaming one
(cancellable requests that can hang until cancelled)."""

import asyncio

from numina_kit.models.base import Completion, SamplingParams
from numina_kit.testing.clock import FakeClock


class ScriptedGenerator:
    """A `Generator` serving canned completions: `plan[call][position]` is the text for that prompt of that call.

    It records every call's prompts and params, counts tokens as characters, can advance a `FakeClock` by
    `seconds_per_call`, and raises a CUDA-like error on call `fail_on_call`.
    """

    def __init__(
        self,
        plan: list[list[str]],
        clock: FakeClock | None = None,
        seconds_per_call: float = 0.0,
        fail_on_call: int | None = None,
    ) -> None:
        self.plan, self.clock, self.seconds_per_call, self.fail_on_call = plan, clock, seconds_per_call, fail_on_call
        self.calls: list[list[str]] = []
        self.params: list[SamplingParams] = []

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        call = len(self.calls)
        self.calls.append(list(prompts))
        self.params.append(params)
        if self.clock is not None:
            self.clock.now += self.seconds_per_call
        if call == self.fail_on_call:
            raise RuntimeError("CUDA out of memory")
        texts = self.plan[call]
        if len(texts) != len(prompts):
            raise AssertionError(f"call {call}: {len(prompts)} prompts, the script has {len(texts)}")
        return [
            Completion(text=t, finish_reason="stop", num_tokens=len(t), prompt_tokens=len(p))
            for t, p in zip(texts, prompts, strict=True)
        ]

    def count_tokens(self, text: str) -> int:
        return len(text)


HANG = "<hang>"  # ends a scripted text: stream what comes before it, then wait until the request is cancelled


class ScriptedStreamingGenerator:
    """A `StreamingGenerator` serving canned texts per candidate: `scripts[c][k]` answers candidate c's k-th request.

    The candidate is read from the request id, which the async engine writes as `run/candidate/round`. A text is
    streamed `chunk_chars` characters at a time; before each chunk the generator yields to the event loop and moves
    `clock` (a `FakeClock`) by `seconds_per_chunk`, so tests decide what happens "during" a request without any
    wall-clock wait. A text ending in `HANG` streams up to the marker, then waits until the request is cancelled.
    Requests listed in `fail` (as `(candidate, k)`) raise a CUDA-like error. Tokens are characters. Everything is
    recorded: `requests` (id, prompt, params), `cancelled` and `finished` request ids, and `max_in_flight`.
    """

    def __init__(
        self,
        scripts: list[list[str]],
        clock: FakeClock | None = None,
        *,
        seconds_per_chunk: float = 0.0,
        chunk_chars: int = 8,
        fail: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.scripts, self.clock, self.seconds_per_chunk = scripts, clock, seconds_per_chunk
        self.chunk_chars, self.fail = chunk_chars, set(fail)
        self.requests: list[tuple[str, str, SamplingParams]] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._served: dict[int, int] = {}

    def count_tokens(self, text: str) -> int:
        return len(text)

    async def complete(self, prompt: str, params: SamplingParams, *, request_id: str, on_progress=None) -> Completion:
        candidate = int(request_id.split("/")[1])
        k = self._served.get(candidate, 0)
        self._served[candidate] = k + 1
        self.requests.append((request_id, prompt, params))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if (candidate, k) in self.fail:
                raise RuntimeError("CUDA out of memory")
            script = self.scripts[candidate][k]
            hang = script.endswith(HANG)
            text = script.removesuffix(HANG)
            for end in range(self.chunk_chars, len(text) + self.chunk_chars, self.chunk_chars):
                await asyncio.sleep(0)
                if self.clock is not None:
                    self.clock.now += self.seconds_per_chunk
                if on_progress is not None:
                    on_progress(text[:end], min(end, len(text)))
            if hang:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(request_id)
            raise
        finally:
            self.in_flight -= 1
        self.finished.append(request_id)
        return Completion(text=text, finish_reason="stop", num_tokens=len(text), prompt_tokens=len(prompt))
