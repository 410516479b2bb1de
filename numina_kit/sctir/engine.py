"""The asynchronous SC-TIR engine: every candidate in its own pipeline, cancelled the moment its work is not needed.

The same algorithm as `loop.solve` (the same prompt, `advance`, answers and vote), scheduled per candidate instead
of in rounds. Each candidate runs on its own:

1. send its prompt + text so far as one request (`StreamingGenerator.complete`), stopping at an output block;
2. run its last code block in the sandbox as soon as its request ends (in a thread: the event loop never blocks);
3. `advance` it, exactly as the synchronous loop does, and go back to 1, for at most `max_rounds` requests.

A continuously batching server keeps its batch full as candidates come and go, so no candidate waits for the
slowest of a round and the GPU decodes while code runs. The whole problem stops, aborting every request in flight
and starting no further code, as soon as
- the answers so far meet `config.early_stop` (checked as each answer arrives, in arrival order), or the vote is
  decided (`config.stop_when_decided`);
- the deadline passes: checked on every streamed chunk, before every request and block, and by a watchdog, so a
  problem ends within about a second of its deadline instead of at the end of a round.
A stopped candidate keeps the text it had streamed so far and is reported STOPPED. A block still running when the
problem stops finishes inside its own timeout in its sandbox thread; the candidates' interpreters are forgotten
after it. With `config.stream_answers` a request also ends at the first complete `\\boxed{}` it streams outside a
code block (as the AIMO-3 public baseline does), which saves the tokens a model writes after its answer.
"""

import asyncio
import concurrent.futures
import inspect
import logging
import time
import uuid
from collections.abc import Callable

from numina_kit.models.base import Completion, Generator
from numina_kit.models.streaming import BatchingGenerator, StreamingGenerator, is_streaming, shared_event_loop
from numina_kit.protocols import Turn
from numina_kit.sandbox.pool import ExecResult, Sandbox
from numina_kit.sctir.candidates import (
    Candidate,
    CandidateStatus,
    Solution,
    advance,
    agreement,
    conclude,
    finish,
    forget,
    read_turn,
    resolve_protocol,
    running,
    sampling,
    start_protocol,
    stop,
)
from numina_kit.sctir.config import SCTIRConfig
from numina_kit.sctir.progress import BusyTime, RequestProgress, keep_text


logger = logging.getLogger(__name__)

WATCHDOG_S = 0.25  # how often the deadline watchdog looks at the clock (a fake clock only moves when told)


def solve_in_pipelines(
    problem: str,
    generator: StreamingGenerator | Generator,
    config: SCTIRConfig,
    *,
    executor: Sandbox | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Solution:
    """`solve_async` for synchronous callers, on the shared event loop; a batch generator is adapted first.

    Arguments as `loop.solve`. Never raises for model or sandbox failures.
    """
    if not is_streaming(generator):
        generator = BatchingGenerator(generator)
    config = resolve_protocol(config, generator)
    if executor is None:
        with Sandbox(config.executor) as sandbox:
            return solve_in_pipelines(problem, generator, config, executor=sandbox, deadline=deadline, clock=clock)
    coroutine = solve_async(problem, generator, config, executor=executor, deadline=deadline, clock=clock)
    return shared_event_loop().run(coroutine)


async def solve_async(
    problem: str,
    generator: StreamingGenerator,
    config: SCTIRConfig,
    *,
    executor: Sandbox,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Solution:
    """Solve one problem with one pipeline per candidate and return the voted answer (see the module docstring).

    `executor` needs `run(code, key=...)` and `forget(key)`: a `Sandbox`, whose `run` is called in a thread, or a
    client whose `run` is a coroutine function (a remote sandbox service), awaited on the loop. `deadline` is a time
    on `clock`.
    """
    run = _Run(problem, generator, config, executor, deadline, clock)
    return await run.solve()


class _Run:
    """One problem being solved: the candidates, their pipelines, and what stops them all."""

    def __init__(
        self,
        problem: str,
        generator: StreamingGenerator,
        config: SCTIRConfig,
        executor: Sandbox,
        deadline: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.generator, self.config, self.executor = generator, config, executor
        self.deadline, self.clock = deadline, clock
        self.protocol = start_protocol(config, generator, executor)
        self.prompt = self.protocol.render_prompt(problem)
        self.prompt_tokens = generator.count_tokens(self.prompt)
        self.candidates = [Candidate(index=i) for i in range(config.num_candidates)]
        self.run_id = uuid.uuid4().hex[:12]
        self.keys = {c.index: f"{self.run_id}-{c.index}" for c in self.candidates}
        self.solution = Solution(answer=0, votes=[], candidates=self.candidates)
        self.arrived: list[int | str | None] = []  # answers in the order they came (what early stopping sees)
        self.stop_reason = ""  # set once, by the first reason to stop everything
        self.stopped_at: float | None = None
        self.errors = 0
        self.tasks: dict[int, asyncio.Task] = {}
        self.blocks: list[concurrent.futures.Future] = []  # every sandbox call made
        self.threads = concurrent.futures.ThreadPoolExecutor(
            max(1, min(config.num_candidates, 64)), thread_name_prefix="numina-sctir-code"
        )
        self.async_executor = inspect.iscoroutinefunction(getattr(executor, "run", None))  # a sandbox client
        self.generating = BusyTime(clock)
        self.executing = BusyTime(clock)

    async def solve(self) -> Solution:
        start = self.clock()
        watchdog = asyncio.create_task(self.watch()) if self.deadline is not None else None
        try:
            if self.past_deadline():
                stop(self.candidates, self.stop_reason, 0)
            else:
                self.tasks = {c.index: asyncio.create_task(self.pipeline(c)) for c in self.candidates}
                await asyncio.gather(*self.tasks.values(), return_exceptions=True)
                if self.stopped_at is not None:
                    self.solution.cancel_s = self.clock() - self.stopped_at
        finally:
            if watchdog is not None:
                watchdog.cancel()
            self.clean_up()
        solution = self.solution
        solution.stop_reason = self.stop_reason or self.natural_end()
        solution.generation_s, solution.execution_s = self.generating.total, self.executing.total
        conclude(solution, self.config.competition, self.config.selector)
        solution.total_s = self.clock() - start
        return solution

    def natural_end(self) -> str:
        if self.errors:
            return "generation error"
        return "max rounds" if self.solution.rounds == self.config.max_rounds else "all finished"

    async def pipeline(self, c: Candidate) -> None:
        """Generate, run code, advance: one candidate until it finishes or the problem stops."""
        round_ = 0
        try:
            for round_ in range(self.config.max_rounds):
                if self.prompt_tokens + c.tokens >= self.config.max_context_tokens:
                    finish(c, CandidateStatus.PRUNED, round_, reason="context limit")
                    break
                completion = await self.generate(c, round_)
                if completion is None:
                    break
                turn = read_turn(self.protocol, c, completion, round_)
                if turn is None:
                    break
                try:
                    results = None
                    if turn.calls and round_ < self.config.max_rounds - 1:
                        results = await self.execute(c, turn)
                except asyncio.CancelledError:  # stopped while its code ran: keep the code it wrote
                    keep_text(c, completion.text, completion.num_tokens or self.count_tokens(completion.text))
                    raise
                restarts = c.restarts
                try:
                    advance(
                        c,
                        completion,
                        turn,
                        results,
                        config=self.config,
                        protocol=self.protocol,
                        round_=round_,
                        count_tokens=self.count_tokens,
                    )
                except Exception as error:  # a text that trips the answer parser costs one candidate
                    logger.exception("could not advance candidate %d", c.index)
                    finish(c, CandidateStatus.PRUNED, round_, reason=f"harness error: {type(error).__name__}")
                if c.restarts != restarts or c.status is not CandidateStatus.RUNNING:
                    self.forget(c)
                if c.status is not CandidateStatus.RUNNING:
                    break
        except asyncio.CancelledError:  # the problem stopped (early stop, deadline): keep what was written
            if c.status is CandidateStatus.RUNNING:
                finish(c, CandidateStatus.STOPPED, round_, reason=self.stop_reason or "cancelled")
            return
        self.finished(c)

    def count_tokens(self, text: str) -> int:
        return self.generator.count_tokens(text)

    async def generate(self, c: Candidate, round_: int) -> Completion | None:
        """One request for candidate `c`; None when it failed (the candidate is then STOPPED).

        On cancellation the text streamed so far is appended to the candidate before `CancelledError` goes on.
        """
        if self.past_deadline():
            raise asyncio.CancelledError
        config = self.config
        # as the sync loop's prompt i of round r when every candidate is still running: seed + r * P + i
        params = sampling(
            config, self.protocol, seed=None if config.seed is None else config.seed + 1_000_003 * round_ + c.index
        )
        streamed = RequestProgress(c, self.past_deadline, stop_at_answer=config.stream_answers)
        self.solution.prompt_tokens += self.prompt_tokens + c.tokens
        request = asyncio.ensure_future(
            self.generator.complete(
                self.prompt + c.text, params, request_id=f"{self.run_id}/{c.index}/{round_}", on_progress=streamed
            )
        )
        streamed.request = request
        self.generating.enter()
        try:
            completion = await request
        except asyncio.CancelledError:
            if streamed.answer_end is None or asyncio.current_task().cancelling():
                streamed.keep()
                raise
            # stream_answers: the request was ended on purpose at a complete \boxed{}
            completion = Completion(streamed.text[: streamed.answer_end], "stop", None, streamed.tokens)
        except Exception as error:  # a failed request costs its candidate, not the problem
            logger.warning("request for candidate %d failed: %s: %s", c.index, type(error).__name__, error)
            streamed.keep()
            finish(c, CandidateStatus.STOPPED, round_, reason=f"generation error: {type(error).__name__}")
            self.errors += 1
            return None
        finally:
            self.generating.leave()
        self.solution.rounds = max(self.solution.rounds, round_ + 1)
        if not isinstance(getattr(completion, "text", None), str):  # a backend bug costs its candidate
            finish(c, CandidateStatus.PRUNED, round_, reason="invalid completion")
            return None
        return completion

    async def execute(self, c: Candidate, turn: Turn) -> list[ExecResult]:
        """Run a turn's calls in order in the candidate's interpreter (`call_results`)."""
        results = []
        for call in turn.calls:  # a call that could not be read gets its error as the output
            results.append(ExecResult("error", call.error, 0.0) if call.error else await self.run(c, call.code))
        return results

    async def run(self, c: Candidate, code: str) -> ExecResult:
        """Run one block in a sandbox thread; a sandbox failure becomes an error output."""
        if self.past_deadline():
            raise asyncio.CancelledError
        if not self.config.execute_code:
            return ExecResult(status="ok", output="", duration_s=0.0)
        if self.async_executor:
            self.executing.enter()
            try:
                return await self.executor.run(code, key=self.keys[c.index])
            except Exception as error:
                logger.exception("sandbox failed on a block")
                return _error_result(error)
            finally:
                self.executing.leave()
        block = self.threads.submit(_run_block, self.executor, code, self.keys[c.index])
        self.blocks.append(block)
        self.executing.enter()
        try:
            return await asyncio.wrap_future(block)
        finally:
            self.executing.leave()

    def forget(self, c: Candidate) -> None:
        """Drop the candidate's interpreter: in a thread for a `Sandbox` (it may wait for the worker), inline for an
        async sandbox client."""
        if self.async_executor:
            forget(self.executor, self.keys[c.index])
        else:
            self.threads.submit(forget, self.executor, self.keys[c.index])

    def finished(self, c: Candidate) -> None:
        """A candidate left the race: stop everything when the answers now agree."""
        if c.status is CandidateStatus.ANSWERED:
            self.arrived.append(c.answer)
        reason = agreement(self.config, self.arrived, len(running(self.candidates)))
        if reason is not None and running(self.candidates):
            self.stop_all(reason)

    def past_deadline(self) -> bool:
        """Whether the problem has stopped (stopping it now if its deadline has passed)."""
        if self.deadline is not None and not self.stop_reason and self.clock() >= self.deadline:
            self.stop_all("deadline")
        return bool(self.stop_reason)

    async def watch(self) -> None:
        while not self.stop_reason:
            left = self.deadline - self.clock()
            if left <= 0:
                self.stop_all("deadline")
                return
            await asyncio.sleep(min(left, WATCHDOG_S))

    def stop_all(self, reason: str) -> None:
        """Cancel every pipeline still running (their requests are aborted, no further code starts)."""
        if self.stop_reason:
            return
        self.stop_reason, self.stopped_at = reason, self.clock()
        current = asyncio.current_task()
        for index, task in self.tasks.items():
            if task is not current and not task.done() and self.candidates[index].status is CandidateStatus.RUNNING:
                task.cancel()

    def clean_up(self) -> None:
        """Forget every interpreter once the blocks still running have ended (in the background)."""
        blocks = self.blocks
        keys = list(self.keys.values())

        def forget_all() -> None:
            concurrent.futures.wait(blocks)
            for key in keys:
                forget(self.executor, key)

        self.threads.submit(forget_all)
        self.threads.shutdown(wait=False)


def _run_block(executor: Sandbox, code: str, key: str) -> ExecResult:
    try:
        return executor.run(code, key=key)
    except Exception as error:
        logger.exception("sandbox failed on a block")
        return _error_result(error)


def _error_result(error: Exception) -> ExecResult:
    return ExecResult(status="error", output=f"{type(error).__name__}: {error}", duration_s=0.0)
