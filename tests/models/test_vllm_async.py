"""numina_kit.models.vllm_async against the real vLLM engine (its CPU build, in .venv-vllm) on a tiny random Llama.

Covers `AsyncVLLMGenerator` as loaded by `load_generator(streaming=True)`: a streamed request reports its text as it
grows and ends with what the batch interface returns for the same prompt and seed; cancelling a request aborts it
in the engine (no unfinished request left); and the async SC-TIR engine runs a problem through it, stopping at its
deadline with every request aborted. Marked `vllm` (skipped where vLLM is absent); `make test-vllm` runs them.
"""

import asyncio
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import pytest

from numina_kit.models.base import SamplingParams
from numina_kit.models.demo import save_demo_model
from numina_kit.models.load import load_generator
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.sctir.loop import CandidateStatus, SCTIRConfig, solve
from numina_kit.testing import IN_PROCESS_VLLM_ARGS, VLLM_MISSING


pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TEXTS = [
    "### Problem: What is 2+3?\n### Solution: ```python\nprint(2+3)\n```\n```output\n5\n```\nThe answer is $\\boxed{5}$."
] * 8
PROMPT = "### Problem: What is 7 times 6?\n### Solution: "


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_MISSING)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # leave the CPU affinity of other processes alone
    path = save_demo_model(
        tmp_path_factory.mktemp("tiny") / "model", TEXTS, vocab_size=300, hidden_size=64, num_heads=2
    )
    generator = load_generator(path, backend="vllm", streaming=True, **IN_PROCESS_VLLM_ARGS)
    yield generator
    generator.close()


def test_a_streamed_request_ends_as_the_batch_interface_does(generator: Any) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=24, seed=11)
    progress: list[tuple[str, int]] = []

    async def one():
        return await generator.complete(
            PROMPT, params, request_id="t/0/0", on_progress=lambda t, n: progress.append((t, n))
        )

    streamed = generator.loop.run(one())
    (batched,) = generator.generate([PROMPT], params)
    assert streamed.text == batched.text and streamed.num_tokens == batched.num_tokens > 0
    assert progress[-1] == (streamed.text, streamed.num_tokens)
    assert [n for _, n in progress] == sorted(n for _, n in progress)  # it grew
    assert streamed.prompt_tokens > 0


def test_cancelling_a_request_aborts_it_in_the_engine(generator: Any) -> None:
    async def cancel_after_three_tokens():
        task = asyncio.current_task()

        def progress(text, tokens):
            if tokens >= 3:
                task.cancel()

        params = SamplingParams(temperature=1.0, max_new_tokens=400, seed=3)
        try:
            await generator.complete(PROMPT, params, request_id="t/1/0", on_progress=progress)
        except asyncio.CancelledError:
            for _ in range(100):  # the abort reaches the engine core asynchronously
                if generator.engine.get_num_unfinished_requests() == 0:
                    return "aborted"
                await asyncio.sleep(0.05)
            return "still running"
        return "finished before the cancel"

    assert generator.loop.run(cancel_after_three_tokens()) == "aborted"


def test_the_async_engine_stops_at_the_deadline_and_aborts_every_request(generator: Any) -> None:
    config = SCTIRConfig(num_candidates=8, max_rounds=4, max_new_tokens=400, max_context_tokens=1000, seed=1)
    with Sandbox(ExecutorConfig(timeout=5.0)) as sandbox:
        start = time.monotonic()
        solution = solve("What is 7 times 6?", generator, config, executor=sandbox, deadline=start + 1.0)
    assert solution.stop_reason in ("deadline", "all finished", "max rounds")
    assert all(c.status is not CandidateStatus.RUNNING for c in solution.candidates)
    if solution.stop_reason == "deadline":
        assert any(c.status is CandidateStatus.STOPPED and c.reason == "deadline" for c in solution.candidates)
    assert generator.engine.get_num_unfinished_requests() == 0
    assert Path(generator.engine_args["model"]).is_dir()
