"""SC-TIR: self-consistency over tool-integrated reasoning, the loop NuminaMath-7B-TIR won AIMO-1 with.

The algorithm (Numina's AIMO-1 submission notebook, `kaggle-solution.ipynb`), one step per numbered comment in `solve`:

1. Render the prompt `### Problem: {problem}\\n### Solution: ` and make `num_candidates` candidates from it.
2. Each round, sample a continuation of every running candidate in ONE batched `generate` call; generation stops
   when the model opens an output block (`STOP`, kept in the text).
3. Run the last code block of every candidate that stopped there, all in ONE `Sandbox.run_many` call.
4. Advance each candidate (`advance`): append the output block and keep it running; or freeze it on its answer;
   or restart it from the prompt / prune it when it wrote no code or no answer. Candidates too long for the
   context are pruned before they are sent.
5. Repeat for at most `max_rounds` rounds, stopping earlier when no candidate runs, the deadline has passed, or
   the answers so far meet the early-stop consistency rule. Vote on the answers with `voting.majority_vote`.

What differs from Numina's notebook, on purpose: a candidate with an answer is frozen and never
re-prompted; a non-integer answer is rejected, not rounded (`answers.to_competition_answer`); the loop stops at a
deadline and on agreement; `solve` never raises for a model or sandbox failure and always returns an answer, the
competition's `fallback` when no candidate produced a valid one.

This is the synchronous engine, the faithful reproduction; `numina_kit.sctir.engine` runs the same candidates
through `advance` with one pipeline each (`SCTIRConfig.engine` picks; see `solve`). The records (`Candidate`,
`advance`, `Solution`, the vote) live in `candidates.py` and the settings in `config.py`; they are re-exported here.
"""

import logging
import time
import uuid
from collections.abc import Callable, Sequence

from numina_kit.models.base import Generator
from numina_kit.models.streaming import is_streaming
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
from numina_kit.sctir.engine import solve_in_pipelines


__all__ = ["Candidate", "CandidateStatus", "SCTIRConfig", "Solution", "advance", "solve"]

logger = logging.getLogger(__name__)


def runs_async(config: SCTIRConfig, generator: Generator) -> bool:
    """Whether `solve` runs the async engine for this config and generator (see `solve`)."""
    return config.engine == "async" or (config.engine == "auto" and is_streaming(generator))


def has_stop_rule(config: SCTIRConfig) -> bool:
    """Whether an early-stop rule or a decided vote can end a problem before its deadline (`TimeBudget.stop_rule`)."""
    return config.early_stop is not None or config.stop_when_decided


def solve(
    problem: str,
    generator: Generator,
    config: SCTIRConfig,
    *,
    executor: Sandbox | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    prompts: Sequence[str] | None = None,
) -> Solution:
    """Solve one problem with SC-TIR and return the voted answer; never raises for model or sandbox failures.

    `config.engine` picks the schedule: "sync" runs Numina's rounds below; "async" runs one pipeline per candidate
    (`numina_kit.sctir.engine`, a batch generator is adapted to it); "auto" runs the async engine when the
    generator streams (`numina_kit.models.streaming.is_streaming`: vLLM's AsyncLLM, an OpenAI-compatible server).

    Args:
        executor: the sandbox that runs the candidates' code; None opens one from `config.executor` for this call.
        deadline: a time on `clock` after which no new round starts; the round running then still finishes (the
            async engine instead cancels what is running, so it ends within about a second of the deadline).
        clock: the time source (tests and the budget simulation inject a fake one).
        prompts: one prompt per candidate instead of `render_prompt(problem)` for all (JiuZhang data synthesis runs
            one candidate per request in one batch; the vote is then not meaningful); always the rounds below.
    """
    config = resolve_protocol(config, generator)
    if prompts is None and runs_async(config, generator):
        return solve_in_pipelines(problem, generator, config, executor=executor, deadline=deadline, clock=clock)
    if executor is None:
        with Sandbox(config.executor) as sandbox:
            return solve(problem, generator, config, executor=sandbox, deadline=deadline, clock=clock, prompts=prompts)
    start = clock()
    # 1) one prompt, copied into every candidate, in the model's format (or one given prompt per candidate)
    protocol = start_protocol(config, generator, executor)
    prompts = list(prompts) if prompts is not None else [protocol.render_prompt(problem)] * config.num_candidates
    count = generator.count_tokens
    sizes = {prompt: count(prompt) for prompt in set(prompts)}
    prompt_tokens = [sizes[prompt] for prompt in prompts]
    candidates = [Candidate(index=i) for i in range(len(prompts))]
    run_id = uuid.uuid4().hex[:12]  # names each candidate's interpreter uniquely within a shared sandbox
    keys = {c.index: f"{run_id}-{c.index}" for c in candidates}
    solution = Solution(answer=0, votes=[], candidates=candidates, stop_reason="max rounds")
    for round_ in range(config.max_rounds):
        for c in running(candidates):
            if prompt_tokens[c.index] + c.tokens >= config.max_context_tokens:
                finish(c, CandidateStatus.PRUNED, round_, reason="context limit")
        live = running(candidates)
        if not live:
            solution.stop_reason = "all finished"
            break
        if deadline is not None and clock() >= deadline:
            stop(live, "deadline", round_)
            solution.stop_reason = "deadline"
            break
        # 2) one batched generation over the running candidates
        params = sampling(config, protocol, seed=None if config.seed is None else config.seed + 1_000_003 * round_)
        solution.prompt_tokens += sum(prompt_tokens[c.index] + c.tokens for c in live)
        tick = clock()
        try:
            completions = generator.generate([prompts[c.index] + c.text for c in live], params)
            if len(completions) != len(live):
                raise RuntimeError(f"generator returned {len(completions)} completions for {len(live)} prompts")
        except Exception as error:  # a model failure must not lose the answers already found
            logger.exception("generation failed in round %d; voting on what we have", round_)
            stop(live, f"generation error: {type(error).__name__}", round_)
            solution.stop_reason = "generation error"
            solution.generation_s += clock() - tick
            break
        solution.generation_s += clock() - tick
        solution.rounds = round_ + 1
        batch = []
        for c, completion in zip(live, completions, strict=True):
            if not isinstance(getattr(completion, "text", None), str):  # a backend bug costs its candidate
                finish(c, CandidateStatus.PRUNED, round_, reason="invalid completion")
            elif (turn := read_turn(protocol, c, completion, round_)) is not None:
                batch.append((c, completion, turn))
        # 3) the tool calls of every candidate whose turn ended at them (ToRA: the last code block before the
        # output fence), in as few sandbox calls as possible
        final = round_ == config.max_rounds - 1
        pending = {i: turn for i, (_, _, turn) in enumerate(batch) if turn.calls and not final}
        tick = clock()
        results = _run_calls(executor, pending, {i: keys[batch[i][0].index] for i in pending}, config)
        solution.execution_s += clock() - tick
        # 4) advance every candidate on its completion and the results of its calls
        for i, (c, completion, turn) in enumerate(batch):
            restarts = c.restarts
            try:
                advance(
                    c,
                    completion,
                    turn,
                    results.get(i),
                    config=config,
                    protocol=protocol,
                    round_=round_,
                    count_tokens=count,
                )
            except Exception as error:  # a text that trips the answer parser costs one candidate, not the problem
                logger.exception("could not advance candidate %d", c.index)
                finish(c, CandidateStatus.PRUNED, round_, reason=f"harness error: {type(error).__name__}")
            if c.restarts != restarts or c.status is not CandidateStatus.RUNNING:
                forget(executor, keys[c.index])
        # 5) stop early once the answers agree
        reason = agreement(config, solution.answers, len(running(candidates)))
        if reason is not None and running(candidates):
            stop(running(candidates), reason, round_)
            solution.stop_reason = reason
            break
        logger.debug("round %d: %d running, %d answered", round_, len(running(candidates)), len(solution.answers))
    for c in candidates:
        forget(executor, keys[c.index])
    # 5) the vote
    conclude(solution, config.competition, config.selector)
    solution.total_s = clock() - start
    return solution


def _run_calls(executor: Sandbox, pending: dict[int, Turn], keys: dict[int, str], config: SCTIRConfig) -> dict:
    """Results by position in the round, a list per turn; a sandbox failure becomes an error output instead of an
    exception. The k-th calls of all turns go in one `run_many` (different candidates, so in parallel); a turn's
    calls run in order, each in its candidate's interpreter."""
    if not pending:
        return {}
    if not config.execute_code:
        return {
            i: [ExecResult(status="ok", output="", duration_s=0.0) for _ in turn.calls] for i, turn in pending.items()
        }
    results: dict[int, list[ExecResult]] = {i: [] for i in pending}
    for k in range(max(len(turn.calls) for turn in pending.values())):
        wave = {i: turn.calls[k] for i, turn in pending.items() if k < len(turn.calls)}
        runnable = [i for i, call in wave.items() if call.error is None]
        outputs = dict(
            zip(
                runnable,
                _run_many(executor, [wave[i].code for i in runnable], [keys[i] for i in runnable]),
                strict=True,
            )
        )
        for i, call in wave.items():
            results[i].append(outputs[i] if i in outputs else ExecResult("error", call.error, 0.0))
    return results


def _run_many(executor: Sandbox, codes: list[str], keys: list[str]) -> list[ExecResult]:
    if not codes:
        return []
    try:
        results = executor.run_many(codes, keys=keys)
        if len(results) != len(codes):
            raise RuntimeError(f"sandbox returned {len(results)} results for {len(codes)} programs")
        return results
    except Exception as error:
        logger.exception("sandbox failed on %d programs", len(codes))
        return [ExecResult(status="error", output=f"{type(error).__name__}: {error}", duration_s=0.0)] * len(codes)
