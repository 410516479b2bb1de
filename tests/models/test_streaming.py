"""Tests for numina_kit.models.streaming: the request interface's helpers.

Covers `BatchingGenerator` (requests waiting together share one batch call per run of consecutive seeds, a request
cancelled while waiting is never sent, a failed call fails its requests), `generate_all` (the batch interface over
a streaming backend: order and per-prompt seeds), `is_streaming`, and `EventLoopThread`.
"""

import asyncio

import pytest

from numina_kit.data.teacher import HTTPTeacher, TeacherConfig
from numina_kit.models.base import Completion, SamplingParams
from numina_kit.models.streaming import BatchingGenerator, EventLoopThread, generate_all, is_streaming
from numina_kit.testing import ScriptedGenerator, ScriptedStreamingGenerator


class EchoBatch:
    """A batch generator that echoes each prompt with the seed it was given, recording every call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[str], int | None]] = []
        self.fail = fail

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params.seed))
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        seeds = [None if params.seed is None else params.seed + i for i in range(len(prompts))]
        return [Completion(f"{p}@{s}", "stop", num_tokens=1) for p, s in zip(prompts, seeds, strict=True)]

    def count_tokens(self, text):
        return len(text)


def params(seed):
    return SamplingParams(max_new_tokens=8, seed=seed)


@pytest.mark.parametrize(
    ("seeds", "calls"),
    [
        ([12, 10, 11, 13], [(["p10", "p11", "p12", "p13"], 10)]),  # one call, in seed order
        ([10, 11, 20], [(["p10", "p11"], 10), (["p20"], 20)]),  # a gap in the seeds splits the call
        ([None, None], [(["pNone", "pNone"], None)]),
    ],
)
def test_requests_sent_together_share_a_call_and_keep_their_seeds(seeds, calls):
    batch = EchoBatch()
    generator = BatchingGenerator(batch)

    async def send():
        requests = [generator.complete(f"p{s}", params(s), request_id=str(i)) for i, s in enumerate(seeds)]
        return await asyncio.gather(*requests)

    completions = asyncio.run(send())
    assert batch.calls == calls
    assert [c.text for c in completions] == [f"p{s}@{s}" for s in seeds]


def test_a_request_cancelled_while_waiting_is_never_sent():
    batch = EchoBatch()
    generator = BatchingGenerator(batch)

    async def send():
        kept = asyncio.create_task(generator.complete("kept", params(1), request_id="a"))
        dropped = asyncio.create_task(generator.complete("dropped", params(5), request_id="b"))
        await asyncio.sleep(0)  # both are waiting; the batch worker has not run yet
        dropped.cancel()
        return await kept, await asyncio.gather(dropped, return_exceptions=True)

    kept, (dropped,) = asyncio.run(send())
    assert kept.text == "kept@1" and isinstance(dropped, asyncio.CancelledError)
    assert batch.calls == [(["kept"], 1)]


def test_a_failed_call_fails_its_requests():
    generator = BatchingGenerator(EchoBatch(fail=True))

    async def send():
        return await asyncio.gather(generator.complete("x", params(1), request_id="a"), return_exceptions=True)

    (error,) = asyncio.run(send())
    assert isinstance(error, RuntimeError) and "out of memory" in str(error)


def test_generate_all_sends_every_prompt_with_its_own_seed():
    class Echo:
        def count_tokens(self, text):
            return len(text)

        async def complete(self, prompt, params, *, request_id, on_progress=None):
            await asyncio.sleep(0.001 * (3 - len(prompt)))  # finish out of order
            return Completion(f"{prompt}@{params.seed}", "stop")

    completions = generate_all(Echo(), ["a", "bb", "ccc"], params(7))
    assert [c.text for c in completions] == ["a@7", "bb@8", "ccc@9"]


def test_is_streaming_needs_a_coroutine_complete():
    assert is_streaming(ScriptedStreamingGenerator([]))
    assert is_streaming(BatchingGenerator(ScriptedGenerator([])))
    assert not is_streaming(ScriptedGenerator([]))
    assert not is_streaming(HTTPTeacher(TeacherConfig()))  # a thread-based client with a plain `complete`


def test_event_loop_thread_runs_coroutines_and_raises_their_errors():
    runner = EventLoopThread()
    try:

        async def add(a, b):
            await asyncio.sleep(0)
            return a + b

        async def fail():
            raise ValueError("bad")

        assert runner.run(add(2, 3)) == 5
        with pytest.raises(ValueError, match="bad"):
            runner.run(fail())

        async def reenter():
            coroutine = add(1, 1)
            try:
                runner.run(coroutine)
            finally:
                coroutine.close()

        with pytest.raises(RuntimeError, match="its own loop"):
            runner.run(reenter())
    finally:
        runner.close()
    runner.close()  # twice is fine
