"""Benchmark: the async SC-TIR engine against Numina's synchronous rounds on a simulated 2x T4 (virtual time).

Both engines run for real (`loop.solve` with `engine="sync"`, `engine.solve_async`) against one simulated vLLM
server with continuous batching, so the only difference is the schedule:
- the sync loop sends each round's prompts as one batch and waits for all of them, then runs the round's code
  (budget.py's sandbox: 4 workers, the round waits for its slowest block);
- the async engine sends each candidate's request when it is ready, runs its block at once (4 sandbox workers,
  a coroutine sandbox, so virtual time covers it) and cancels what is left on agreement or at the deadline.

Server model (benchmarks/budget.py's latency model, extended to requests that come and go): the server decodes
one token for every running sequence per step; a step costs 30 ms + 1.2 us x (context tokens of every running
sequence) + the prefill of the tokens that joined in it at 2,000 tokens/s. Prefix caching is on (as
`vllm_engine_args` sets it): a follow-up request prefills only the output block the harness appended, a restart or
another candidate of the same problem reuses the problem's prompt. With prefix caching off and one batch, the
server reproduces budget.py's `round_seconds` (checked at start-up). Completions, answers and code times come from
budget.py's problem model (`sample_completion`, `block_seconds`): heavy-tailed difficulty, lognormal lengths.
Not modelled, as in budget.py: KV-cache capacity (preemption), network, the sandbox's real cost.
Run: `python benchmarks/engine.py [runs]` (the figures go to docs/benchmarks.md, section "engine").
"""

import asyncio
import math
import statistics
import sys
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import markdown_table, write_section  # noqa: E402
from budget import (  # noqa: E402
    API_S,
    KV_S_PER_TOKEN,
    LOAD_S,
    NUM_PROBLEMS,
    PREFILL_TOKENS_PER_S,
    STEP_S,
    SimulatedSandbox,
    block_seconds,
    round_seconds,
    sample_completion,
)

from numina_kit.models.base import Completion, SamplingParams  # noqa: E402
from numina_kit.protocols.tora import STOP  # noqa: E402
from numina_kit.sandbox.pool import ExecResult  # noqa: E402
from numina_kit.sctir.budget import NINE_HOURS, TimeBudget  # noqa: E402
from numina_kit.sctir.engine import solve_async  # noqa: E402
from numina_kit.sctir.loop import SCTIRConfig, solve  # noqa: E402
from numina_kit.sctir.voting import ConsistencyRule  # noqa: E402
from numina_kit.testing import FakeClock, VirtualTimeLoop  # noqa: E402


RUNS = 6
SANDBOX_WORKERS = 4


@dataclass(eq=False)
class _Sequence:
    prompt_tokens: int
    total: int  # tokens it will generate
    text: str
    future: asyncio.Future
    on_progress: object = None
    done: int = 0


class T4Server:
    """A vLLM-like server on simulated 2x T4: continuous batching in virtual time (`VirtualTimeLoop`).

    A `StreamingGenerator`: each request's completion is drawn from the problem model when it arrives and decoded
    one token per step alongside every other running request; cancelling a request removes it from the batch.
    """

    def __init__(self, rng: np.random.Generator, *, prefix_caching: bool = True) -> None:
        self.rng, self.prefix_caching = rng, prefix_caching
        self.difficulty, self.answer = 1.0, 0
        self.running: list[_Sequence] = []
        self.waiting_prefill = 0
        self.cached_prompt: str | None = None
        self.wake: asyncio.Event | None = None
        self.stepper: asyncio.Task | None = None

    def set_problem(self, difficulty: float, answer: int) -> None:
        self.difficulty, self.answer, self.cached_prompt = difficulty, answer, None

    def count_tokens(self, text: str) -> int:
        return len(text)

    def uncached(self, prompt: str) -> int:
        """Prompt tokens this request must prefill: all without caching; else only what the harness appended."""
        if not self.prefix_caching:
            return len(prompt)
        if STOP in prompt:
            return len(prompt) - prompt.rfind(STOP) - len(STOP)
        if prompt == self.cached_prompt:
            return 0
        self.cached_prompt = prompt
        return len(prompt)

    async def complete(self, prompt, params: SamplingParams, *, request_id: str, on_progress=None) -> Completion:
        text = sample_completion(self.rng, self.difficulty, self.answer, prompt.count(STOP), params.max_new_tokens)
        sequence = _Sequence(len(prompt), len(text), text, asyncio.get_running_loop().create_future(), on_progress)
        self.waiting_prefill += self.uncached(prompt)
        self.running.append(sequence)
        if self.stepper is None or self.stepper.done():
            self.stepper = asyncio.create_task(self.decode())
        elif self.wake is not None:
            self.wake.set()
        try:
            await sequence.future
        except asyncio.CancelledError:  # aborted: leaves the batch at the next step
            if sequence in self.running:
                self.running.remove(sequence)
            if self.wake is not None:
                self.wake.set()
            raise
        return Completion(text, "stop", STOP if text.endswith(STOP) else None, len(text), len(prompt))

    async def decode(self) -> None:
        """Run steps until no request is left; a join or an abort ends the current stretch at a step boundary."""
        loop = asyncio.get_running_loop()
        while self.running:
            batch = list(self.running)
            count = len(batch)
            context = sum(s.prompt_tokens + s.done for s in batch)
            prefill, self.waiting_prefill = self.waiting_prefill / PREFILL_TOKENS_PER_S, 0

            def cost(steps: int, count: int = count, context: int = context, prefill: float = prefill) -> float:
                return prefill + steps * STEP_S + KV_S_PER_TOKEN * (steps * context + count * steps * (steps - 1) / 2)

            steps = max(1, min(s.total - s.done for s in batch))
            start = loop.time()
            self.wake = asyncio.Event()
            try:
                await asyncio.wait_for(self.wake.wait(), cost(steps))
            except TimeoutError:
                pass
            else:  # something joined or left: finish the step in progress, then rebuild the batch
                # the first step count whose cost covers the time elapsed (cost is quadratic in the steps)
                a, b = KV_S_PER_TOKEN * count / 2, STEP_S + KV_S_PER_TOKEN * (context - count / 2)
                c = prefill - (loop.time() - start)
                steps = min(steps, max(1, math.ceil((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))))
                await asyncio.sleep(max(0.0, start + cost(steps) - loop.time()))
            for sequence in batch:
                if sequence not in self.running:
                    continue
                sequence.done = min(sequence.total, sequence.done + steps)
                if sequence.on_progress is not None:
                    sequence.on_progress(sequence.text[: sequence.done], sequence.done)
                if sequence.done >= sequence.total:
                    self.running.remove(sequence)
                    sequence.future.set_result(None)


class BatchOnServer:
    """The batch `Generator` the sync loop needs, over the same server: one batch, in virtual time from `clock`."""

    def __init__(self, server: T4Server, clock: FakeClock) -> None:
        self.server, self.clock = server, clock

    def count_tokens(self, text: str) -> int:
        return len(text)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        async def batch() -> list[Completion]:
            requests = [self.server.complete(p, params, request_id=f"b/{i}/0") for i, p in enumerate(prompts)]
            return list(await asyncio.gather(*requests))

        loop = VirtualTimeLoop(self.clock.now)
        try:
            completions = loop.run_until_complete(batch())
        finally:
            loop.close()
        self.clock.now = loop.now
        return list(completions)


class AsyncSimulatedSandbox:
    """budget.py's block times, `SANDBOX_WORKERS` at a time, awaited in virtual time."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.slots = rng, None

    async def run(self, code: str, *, key: str | None = None, timeout: float | None = None) -> ExecResult:
        if self.slots is None:
            self.slots = asyncio.Semaphore(SANDBOX_WORKERS)
        seconds = float(block_seconds(self.rng, 1)[0])
        async with self.slots:
            await asyncio.sleep(seconds)
        return ExecResult("ok", "1", seconds)

    def forget(self, key: str) -> None:
        pass


def check_server_matches_budget_model() -> float:
    """The server with one batch and no prefix caching against budget.py's `round_seconds`; returns the gap (s)."""
    rng = np.random.default_rng(0)
    prompts = ["p" * int(n) for n in rng.integers(30, 3000, 48)]
    server, clock = T4Server(rng, prefix_caching=False), FakeClock()
    completions = BatchOnServer(server, clock).generate(prompts, SamplingParams(max_new_tokens=2048))
    expected = round_seconds([len(p) for p in prompts], [len(c.text) for c in completions])
    return abs(clock.now - expected)


def simulate(task: tuple) -> dict:
    """One run of 50 problems with one engine; totals, correct answers, tokens, and the worst deadline overrun."""
    seed, engine, num_candidates, agree, total_s = task
    rng = np.random.default_rng(seed)
    difficulties = np.minimum(rng.pareto(1.2, NUM_PROBLEMS) + 1.0, 30.0)
    answers = rng.integers(0, 1000, NUM_PROBLEMS)
    content = np.random.default_rng([seed, 1])  # completions and code times, drawn as the engines ask
    config = SCTIRConfig(
        num_candidates=num_candidates,
        seed=seed,
        engine=engine,
        early_stop=ConsistencyRule(agree) if agree else None,
    )
    server = T4Server(content)
    stats = {"correct": 0, "tokens": 0, "overrun": 0.0, "cut": 0}

    def record(solution, answer: int, deadline: float | None, now: float) -> None:
        stats["correct"] += solution.answer == answer
        stats["tokens"] += solution.generated_tokens
        stats["cut"] += solution.stop_reason == "deadline"
        if deadline is not None:
            stats["overrun"] = max(stats["overrun"], now - deadline)

    if engine == "sync":
        clock = FakeClock()
        generator, sandbox = BatchOnServer(server, clock), SimulatedSandbox(clock, content, SANDBOX_WORKERS)
        budget = TimeBudget(total_s, NUM_PROBLEMS, clock=clock) if total_s else None
        clock.now += LOAD_S
        for difficulty, answer in zip(difficulties, answers, strict=True):
            clock.now += API_S
            server.set_problem(float(difficulty), int(answer))
            deadline = budget.deadline() if budget else None
            solution = solve("p", generator, config, executor=sandbox, deadline=deadline, clock=clock)
            if budget:
                budget.done()
            record(solution, int(answer), deadline, clock.now)
        stats["total"] = clock.now
        return stats

    loop = VirtualTimeLoop()
    sandbox = AsyncSimulatedSandbox(content)

    async def run_all() -> None:
        budget = TimeBudget(total_s, NUM_PROBLEMS, clock=loop.time) if total_s else None
        await asyncio.sleep(LOAD_S)
        for difficulty, answer in zip(difficulties, answers, strict=True):
            await asyncio.sleep(API_S)
            server.set_problem(float(difficulty), int(answer))
            deadline = budget.deadline() if budget else None
            solution = await solve_async("p", server, config, executor=sandbox, deadline=deadline, clock=loop.time)
            if budget:
                budget.done()
            record(solution, int(answer), deadline, loop.time())
        if server.stepper is not None:
            await server.stepper  # the step in progress when the last request was aborted

    try:
        loop.run_until_complete(run_all())
    finally:
        loop.close()
    stats["total"] = loop.now
    return stats


def summarize(results: list[dict]) -> dict:
    return {
        "hours": statistics.mean(r["total"] for r in results) / 3600,
        "max_hours": max(r["total"] for r in results) / 3600,
        "correct": statistics.mean(r["correct"] for r in results),
        "tokens": statistics.mean(r["tokens"] for r in results),
        "overrun": max(r["overrun"] for r in results),
        "cut": statistics.mean(r["cut"] for r in results),
    }


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    gap = check_server_matches_budget_model()
    print(f"server vs budget.round_seconds (one batch, no prefix caching): {gap:.2e} s apart")
    scenarios = [  # (name, engine, N, agree, budget)
        ("48x4, no deadlines", "sync", 48, None, None),
        ("48x4, no deadlines", "async", 48, None, None),
        ("72x4, no deadlines", "async", 72, None, None),
        ("96x4, no deadlines", "async", 96, None, None),
        ("48x4, early stop at 4 agreeing", "sync", 48, 4, None),
        ("48x4, early stop at 4 agreeing", "async", 48, 4, None),
        ("48x4, 9 h TimeBudget deadlines", "sync", 48, None, NINE_HOURS),
        ("48x4, 9 h TimeBudget deadlines", "async", 48, None, NINE_HOURS),
        ("48x4, 3 h TimeBudget (stress)", "sync", 48, None, 3 * 3600.0),
        ("48x4, 3 h TimeBudget (stress)", "async", 48, None, 3 * 3600.0),
    ]
    rows, summaries = [], {}
    with Pool(2) as pool:
        for name, engine, n, agree, total_s in scenarios:
            results = pool.map(simulate, [(seed, engine, n, agree, total_s) for seed in range(runs)])
            s = summaries[(name, engine)] = summarize(results)
            sync = summaries.get((name.replace(f"{n}x4", "48x4"), "sync"), s)
            row = [
                name,
                engine,
                runs,
                f"{s['hours']:.2f}",
                f"{s['max_hours']:.2f}",
                f"{sync['hours'] / s['hours']:.2f}x",
                f"{s['correct']:.1f}",
                f"{s['tokens'] / 1e6:.2f}",
                f"{s['cut']:.1f}" if total_s else "-",
                f"{s['overrun']:.0f}" if total_s else "-",
            ]
            rows.append(row)
            print(" | ".join(map(str, row)), flush=True)
    base = summaries[("48x4, no deadlines", "sync")]["hours"]
    affordable = [n for n in (72, 96) if summaries[(f"{n}x4, no deadlines", "async")]["hours"] <= base]
    sync_es = summaries[("48x4, early stop at 4 agreeing", "sync")]
    async_es = summaries[("48x4, early stop at 4 agreeing", "async")]
    async_all = summaries[("48x4, no deadlines", "async")]
    body = (
        f'The real engines (`loop.solve` with `engine="sync"`, `engine.solve_async`) on {NUM_PROBLEMS} problems per run, '
        f"{runs} runs per row (seeds 0..{runs - 1}: the same problems for both engines), against one simulated vLLM "
        "server on 2x T4 in virtual time: continuous batching, a decoding step = 30 ms + 1.2 us x context tokens of "
        "the running sequences, prefill 2,000 tokens/s, prefix caching on for both engines (benchmarks/budget.py's "
        "latency and problem models; with one batch and no prefix caching the server reproduces budget.py's "
        f"`round_seconds` to {gap:.0e} s). Code blocks: lognormal around 0.3 s, 5% time out at 5 s, 4 sandbox "
        "workers. 240 s loading and 0.5 s API time per problem are included. 'Speed-up' is the mean time of the "
        "sync loop at 48x4 in the same scenario over this row's (for 72x4 and 96x4: above 1x means the larger N "
        "fits in the sync loop's time). Why the gain without early stopping is modest: on this model a full batch "
        "is bound by reading the KV cache (1.2 us x context per token), which costs the same whatever the schedule; "
        "the async engine saves the 30 ms per step that a shrinking round pays for few sequences, the GPU idling "
        "while a round's code runs, and the rest of a round after the answers agree. KV-cache capacity is not "
        "modelled (as in budget.py), which makes both engines optimistic on long rounds.\n\n"
        + markdown_table(
            [
                "scenario",
                "engine",
                "runs",
                "mean hours",
                "max hours",
                "speed-up vs sync",
                "correct (of 50)",
                "generated tokens (M)",
                "problems cut at deadline",
                "max overrun of a deadline (s)",
            ],
            rows,
        )
        + "\n\nCandidates affordable in the sync loop's time at 48x4 "
        f"({base:.2f} h): the async engine fits {', '.join(f'N={n}' for n in affordable) or 'no larger N tried'} "
        "x 4 rounds within it. Early-stop savings (consistency rule 4 agreeing, no deadlines): the async engine "
        f"generates {async_es['tokens'] / 1e6:.2f}M tokens against {async_all['tokens'] / 1e6:.2f}M without the rule "
        f"({1 - async_es['tokens'] / async_all['tokens']:.0%} fewer; correct {async_es['correct']:.1f} against "
        f"{async_all['correct']:.1f}); the sync loop, which checks the rule only between rounds, "
        f"{sync_es['tokens'] / 1e6:.2f}M against {base and summaries[('48x4, no deadlines', 'sync')]['tokens'] / 1e6:.2f}M."
    )
    write_section("engine", "Async engine vs synchronous rounds: 2x T4 simulation", body)


if __name__ == "__main__":
    main()
