"""SC-TIR: self-consistency over tool-integrated reasoning, the loop NuminaMath-7B-TIR won AIMO-1 with.

The algorithm (numina.md §2), one step per numbered comment in `solve`:

1. Render the prompt `### Problem: {problem}\\n### Solution: ` and make `num_candidates` candidates from it.
2. Each round, sample a continuation of every running candidate in ONE batched `generate` call; generation stops
   when the model opens an output block (`STOP`, kept in the text).
3. Run the last code block of every candidate that stopped there, all in ONE `Sandbox.run_many` call.
4. Advance each candidate (`advance`): append the output block and keep it running; or freeze it on its answer;
   or restart it from the prompt / prune it when it wrote no code or no answer. Candidates too long for the
   context are pruned before they are sent.
5. Repeat for at most `max_rounds` rounds, stopping earlier when no candidate runs, the deadline has passed, or
   the answers so far meet the early-stop consistency rule. Vote on the answers with `voting.majority_vote`.

What differs from Numina's notebook, on purpose (numina.md §7): a candidate with an answer is frozen and never
re-prompted; a non-integer answer is rejected, not rounded (`answers.to_competition_answer`); the loop stops at a
deadline and on agreement; `solve` never raises for a model or sandbox failure and always returns an answer, the
competition's `fallback` when no candidate produced a valid one.
"""

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from numina_kit.answers import GENERAL, competition_rule, extract_answer, is_equivalent, to_competition_answer
from numina_kit.configs import read_mapping, reject_unknown_keys
from numina_kit.errors import InputError
from numina_kit.models.base import Completion, Generator, SamplingParams
from numina_kit.prompts import OUTPUT_START, STOP, last_code_block, render_output, render_prompt
from numina_kit.sandbox.pool import ExecResult, ExecutorConfig, Sandbox
from numina_kit.sctir.voting import ConsistencyRule, majority_vote


logger = logging.getLogger(__name__)


@dataclass
class SCTIRConfig:
    """Every setting of one SC-TIR run; the defaults are Numina's AIMO-1 submission (48 candidates x 4 rounds)."""

    num_candidates: int = 48
    max_rounds: int = 4
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 2048  # per round
    max_context_tokens: int = 4096  # prompt + solution; longer candidates are pruned
    restart_on_fail: bool = True  # restart a candidate that wrote no code (or no answer) instead of pruning it
    competition: str = "aimo1"  # a rule in answers.COMPETITIONS; "general": strings voted on by equivalence
    early_stop: ConsistencyRule | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    execute_code: bool = True  # False: append an empty output block instead of running code (ablation)
    seed: int | None = None

    def __post_init__(self) -> None:
        competition_rule(self.competition)  # InputError for an unknown name
        for name in ("num_candidates", "max_rounds", "max_new_tokens", "max_context_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"SCTIRConfig.{name} must be a positive integer, got {getattr(self, name)!r}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SCTIRConfig":
        """Read a config from YAML: top-level keys are the fields; `early_stop` and `executor` are mappings."""
        return cls.from_dict(read_mapping(path, what="SCTIRConfig fields"), source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> "SCTIRConfig":
        """Build a config from plain values (as YAML gives them), naming any unknown key."""
        reject_unknown_keys(data, cls, source=source, name="SCTIRConfig ")
        data = dict(data)
        try:
            if isinstance(data.get("early_stop"), dict):
                data["early_stop"] = ConsistencyRule(**data["early_stop"])
            if isinstance(data.get("executor"), dict):
                data["executor"] = ExecutorConfig(**data["executor"])
            return cls(**data)
        except TypeError as error:
            raise InputError(f"{source}: {error}") from None


class CandidateStatus(Enum):
    RUNNING = "running"  # will be sent to the model next round
    ANSWERED = "answered"  # frozen: wrote a final answer after running code
    PRUNED = "pruned"  # dropped: no code, answer without code output, too long, or out of rounds
    STOPPED = "stopped"  # still running when the loop stopped (deadline, early stop, generation failure)


@dataclass
class Candidate:
    """One sampled solution in progress; `text` is the solution so far, without the prompt."""

    index: int
    text: str = ""
    status: CandidateStatus = CandidateStatus.RUNNING
    answer: int | str | None = None  # the competition answer; None when the answer written was not valid
    raw_answer: str | None = None  # the answer as written, e.g. the content of \boxed{}
    from_code: bool = False  # the answer appears in the output of the last code run
    reason: str = ""  # why the candidate was pruned or stopped
    tokens: int = 0  # tokens of `text`
    generated_tokens: int = 0  # tokens sampled for this candidate, restarts included
    code_runs: int = 0
    restarts: int = 0
    finished_round: int | None = None
    last_output: str | None = None

    @property
    def voted(self) -> bool:
        return self.status is CandidateStatus.ANSWERED and self.answer is not None


def advance(
    candidate: Candidate,
    completion: Completion,
    result: ExecResult | None,
    *,
    config: SCTIRConfig,
    round_: int,
    count_tokens: Callable[[str], int],
) -> None:
    """Move a running candidate on by one round, given its new completion and the result of its code (if run).

    `result` is None when no code was run for it: on the last round, or when the completion did not stop at an
    output block. The order of the checks is Numina's `process_code`.
    """
    text = candidate.text + completion.text
    new_tokens = completion.num_tokens or count_tokens(completion.text)
    candidate.text, candidate.tokens = text, candidate.tokens + new_tokens
    candidate.generated_tokens += new_tokens
    final = round_ == config.max_rounds - 1
    # no closed code block anywhere: a pure-prose answer is not trusted (Numina never accepts one)
    if last_code_block(text) is None:
        return _fail(candidate, "no code", round_, restart=config.restart_on_fail and not final)
    # stopped at an output block: append the code's output and keep going, if a round is left to read it
    if text.endswith(STOP):
        if result is None:
            return _finish(candidate, CandidateStatus.PRUNED, round_, reason="out of rounds")
        output = render_output(result.output)
        candidate.text += output
        candidate.tokens += count_tokens(output)
        candidate.code_runs += 1
        candidate.last_output = result.output
        return None
    # a final answer: freeze the candidate on it (an answer before any code output is a hallucinated result)
    raw = extract_answer(completion.text)
    if raw is not None:
        if OUTPUT_START not in text:
            return _finish(candidate, CandidateStatus.PRUNED, round_, reason="answer without code output")
        candidate.raw_answer = raw
        candidate.answer = to_competition_answer(raw, config.competition)
        candidate.from_code = candidate.last_output is not None and _appears_in(raw, candidate.last_output)
        return _finish(
            candidate,
            CandidateStatus.ANSWERED,
            round_,
            reason="" if candidate.answer is not None else "invalid answer",
        )
    # neither code to run nor an answer (EOS or the token limit): start over, or give up
    return _fail(candidate, "no answer", round_, restart=config.restart_on_fail and not final)


def _fail(candidate: Candidate, reason: str, round_: int, *, restart: bool) -> None:
    if restart:
        candidate.text, candidate.tokens, candidate.last_output = "", 0, None
        candidate.restarts += 1
        return None
    return _finish(candidate, CandidateStatus.PRUNED, round_, reason=reason)


def _finish(candidate: Candidate, status: CandidateStatus, round_: int, *, reason: str = "") -> None:
    candidate.status, candidate.finished_round, candidate.reason = status, round_, reason


def _appears_in(raw: str, output: str) -> bool:
    """Whether the answer is printed in the output as a whole token (so `12` does not match `123`)."""
    value = raw.strip().rstrip(".")
    if value.endswith(".0"):
        value = value[:-2]
    return bool(value) and re.search(rf"(?<![\w.]){re.escape(value)}(?![\w]|\.\d)", output) is not None


@dataclass
class Solution:
    """The result of `solve`: the answer, why it won, and every candidate's text, status and answer."""

    answer: int | str
    votes: list[tuple[int | str, float]]  # (answer, votes), most voted first
    candidates: list[Candidate]
    is_fallback: bool = False  # no candidate produced a valid answer
    rounds: int = 0  # rounds actually run
    stop_reason: str = ""
    generation_s: float = 0.0
    execution_s: float = 0.0
    total_s: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0

    @property
    def answers(self) -> list[int | str]:
        """Valid answers in the order the candidates finished (the order the vote breaks ties by)."""
        done = sorted((c for c in self.candidates if c.voted), key=lambda c: (c.finished_round, c.index))
        return [c.answer for c in done]

    def to_json(self) -> str:
        """The solution as one JSON line (candidate statuses as strings)."""
        data = asdict(self)
        for candidate in data["candidates"]:
            candidate["status"] = candidate["status"].value
        return json.dumps(data, ensure_ascii=False)


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

    Args:
        executor: the sandbox that runs the candidates' code; None opens one from `config.executor` for this call.
        deadline: a time on `clock` after which no new round starts; the round running then still finishes.
        clock: the time source (tests and the budget simulation inject a fake one).
        prompts: one prompt per candidate instead of `render_prompt(problem)` for all (JiuZhang data synthesis runs
            one candidate per request in one batch; the vote is then not meaningful).
    """
    if executor is None:
        with Sandbox(config.executor) as sandbox:
            return solve(problem, generator, config, executor=sandbox, deadline=deadline, clock=clock, prompts=prompts)
    start = clock()
    # 1) one prompt, copied into every candidate
    prompts = list(prompts) if prompts is not None else [render_prompt(problem)] * config.num_candidates
    count = generator.count_tokens
    sizes = {prompt: count(prompt) for prompt in set(prompts)}
    prompt_tokens = [sizes[prompt] for prompt in prompts]
    candidates = [Candidate(index=i) for i in range(len(prompts))]
    run_id = uuid.uuid4().hex[:12]  # names each candidate's interpreter uniquely within a shared sandbox
    keys = {c.index: f"{run_id}-{c.index}" for c in candidates}
    solution = Solution(answer=0, votes=[], candidates=candidates, stop_reason="max rounds")
    for round_ in range(config.max_rounds):
        for c in _running(candidates):
            if prompt_tokens[c.index] + c.tokens >= config.max_context_tokens:
                _finish(c, CandidateStatus.PRUNED, round_, reason="context limit")
        live = _running(candidates)
        if not live:
            solution.stop_reason = "all finished"
            break
        if deadline is not None and clock() >= deadline:
            _stop(live, "deadline", round_)
            solution.stop_reason = "deadline"
            break
        # 2) one batched generation over the running candidates
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            stop=(STOP,),
            seed=None if config.seed is None else config.seed + 1_000_003 * round_,
        )
        solution.prompt_tokens += sum(prompt_tokens[c.index] + c.tokens for c in live)
        tick = clock()
        try:
            completions = generator.generate([prompts[c.index] + c.text for c in live], params)
            if len(completions) != len(live):
                raise RuntimeError(f"generator returned {len(completions)} completions for {len(live)} prompts")
        except Exception as error:  # a model failure must not lose the answers already found
            logger.exception("generation failed in round %d; voting on what we have", round_)
            _stop(live, f"generation error: {type(error).__name__}", round_)
            solution.stop_reason = "generation error"
            solution.generation_s += clock() - tick
            break
        solution.generation_s += clock() - tick
        solution.rounds = round_ + 1
        batch = []
        for c, completion in zip(live, completions, strict=True):
            if isinstance(getattr(completion, "text", None), str):
                batch.append((c, completion))
            else:  # a backend bug costs its candidate, not the problem
                _finish(c, CandidateStatus.PRUNED, round_, reason="invalid completion")
        # 3) the last code block of every candidate that stopped at an output block, in one sandbox call
        final = round_ == config.max_rounds - 1
        pending = {
            i: code
            for i, (c, completion) in enumerate(batch)
            if not final
            and completion.text.endswith(STOP)
            and (code := last_code_block(c.text + completion.text)) is not None
        }
        tick = clock()
        results = _run_codes(executor, pending, [keys[batch[i][0].index] for i in pending], config)
        solution.execution_s += clock() - tick
        # 4) advance every candidate on its completion and code result
        for i, (c, completion) in enumerate(batch):
            restarts = c.restarts
            try:
                advance(c, completion, results.get(i), config=config, round_=round_, count_tokens=count)
            except Exception as error:  # a text that trips the answer parser costs one candidate, not the problem
                logger.exception("could not advance candidate %d", c.index)
                _finish(c, CandidateStatus.PRUNED, round_, reason=f"harness error: {type(error).__name__}")
            if c.restarts != restarts or c.status is not CandidateStatus.RUNNING:
                _forget(executor, keys[c.index])
        # 5) stop early once the answers agree
        if config.early_stop is not None and _running(candidates) and config.early_stop.is_met(solution.answers):
            _stop(_running(candidates), "early stop", round_)
            solution.stop_reason = "early stop"
            break
        logger.debug("round %d: %d running, %d answered", round_, len(_running(candidates)), len(solution.answers))
    for c in candidates:
        _forget(executor, keys[c.index])
    # 5) the vote
    solution.generated_tokens = sum(c.generated_tokens for c in candidates)
    _vote(solution, config.competition)
    solution.total_s = clock() - start
    logger.info(
        "answer %r (%s) after %d rounds: %d valid answers, stop: %s",
        solution.answer,
        "fallback" if solution.is_fallback else f"{solution.votes[0][1]:g} votes",
        solution.rounds,
        len(solution.answers),
        solution.stop_reason,
    )
    return solution


def _running(candidates: list[Candidate]) -> list[Candidate]:
    return [c for c in candidates if c.status is CandidateStatus.RUNNING]


def _stop(candidates: list[Candidate], reason: str, round_: int) -> None:
    for c in candidates:
        _finish(c, CandidateStatus.STOPPED, round_, reason=reason)


def _run_codes(executor: Sandbox, pending: dict[int, str], keys: list[str], config: SCTIRConfig) -> dict:
    """Results by position in the round; a sandbox failure becomes an error output instead of an exception."""
    if not pending:
        return {}
    if not config.execute_code:
        return {i: ExecResult(status="ok", output="", duration_s=0.0) for i in pending}
    try:
        results = executor.run_many(list(pending.values()), keys=keys)
        if len(results) != len(pending):
            raise RuntimeError(f"sandbox returned {len(results)} results for {len(pending)} programs")
    except Exception as error:
        logger.exception("sandbox failed on %d programs", len(pending))
        results = [ExecResult(status="error", output=f"{type(error).__name__}: {error}", duration_s=0.0)] * len(
            pending
        )
    return dict(zip(pending, results, strict=True))


def _forget(executor: Sandbox, key: str) -> None:
    try:
        executor.forget(key)
    except Exception:  # forgetting is best effort: a dead interpreter is already gone
        logger.debug("could not forget interpreter %s", key, exc_info=True)


def _vote(solution: Solution, competition: str) -> None:
    answers = solution.answers
    equivalent = is_equivalent if competition == GENERAL else None
    try:
        result = majority_vote(answers, equivalent=equivalent) if answers else None
    except Exception:  # the equivalence judge failed: fall back to exact agreement rather than to no answer
        logger.exception("vote with equivalence failed; voting on exact answers")
        result = majority_vote(answers)
    if result is None or result.winner is None:
        solution.answer, solution.is_fallback = competition_rule(competition).fallback, True
        return
    solution.answer = result.winner
    solution.votes = sorted(dict(result.table).items(), key=lambda item: -item[1])
