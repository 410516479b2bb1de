"""The records of SC-TIR: one candidate's state (`Candidate`), how it moves on by one round (`advance`), and the
`Solution` with its vote. Both engines (`loop.solve`, Numina's rounds, and `engine.solve_async`, one pipeline per
candidate) drive candidates through exactly these functions, so they differ only in scheduling.
"""

import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum

from numina_kit.answers import GENERAL, competition_rule, extract_answer, is_equivalent, to_competition_answer
from numina_kit.models.base import Completion
from numina_kit.prompts import OUTPUT_START, STOP, last_code_block, render_output
from numina_kit.sandbox.pool import ExecResult, Sandbox
from numina_kit.sctir.config import SCTIRConfig
from numina_kit.sctir.voting import is_decided, majority_vote


logger = logging.getLogger(__name__)


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
            return finish(candidate, CandidateStatus.PRUNED, round_, reason="out of rounds")
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
            return finish(candidate, CandidateStatus.PRUNED, round_, reason="answer without code output")
        candidate.raw_answer = raw
        candidate.answer = to_competition_answer(raw, config.competition)
        candidate.from_code = candidate.last_output is not None and _appears_in(raw, candidate.last_output)
        return finish(
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
    return finish(candidate, CandidateStatus.PRUNED, round_, reason=reason)


def finish(candidate: Candidate, status: CandidateStatus, round_: int, *, reason: str = "") -> None:
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
    cancel_s: float = 0.0  # async engine: from stopping the problem (agreement, deadline) to its last request ending

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


def running(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates still running, in index order."""
    return [c for c in candidates if c.status is CandidateStatus.RUNNING]


def stop(candidates: list[Candidate], reason: str, round_: int) -> None:
    """Mark candidates STOPPED (the loop ended before they finished), keeping their text so far."""
    for c in candidates:
        finish(c, CandidateStatus.STOPPED, round_, reason=reason)


def forget(executor: Sandbox, key: str) -> None:
    """Drop a candidate's interpreter in a stateful sandbox; never raises."""
    try:
        executor.forget(key)
    except Exception:  # forgetting is best effort: a dead interpreter is already gone
        logger.debug("could not forget interpreter %s", key, exc_info=True)


def conclude(solution: Solution, competition: str) -> None:
    """The end of `solve`, in either engine: count the tokens generated, vote, and log the outcome."""
    solution.generated_tokens = sum(c.generated_tokens for c in solution.candidates)
    vote(solution, competition)
    logger.info(
        "answer %r (%s) after %d rounds: %d valid answers, stop: %s",
        solution.answer,
        "fallback" if solution.is_fallback else f"{solution.votes[0][1]:g} votes",
        solution.rounds,
        len(solution.answers),
        solution.stop_reason,
    )


def vote(solution: Solution, competition: str) -> None:
    """Fill in `solution.answer` and `votes` from its candidates' answers, or the fallback when there are none."""
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


def agreement(config: SCTIRConfig, answers: list[int | str | None], remaining: int) -> str | None:
    """Why to stop sampling now, given the answers so far (in the order they came) and the candidates still running.

    "early stop" when `config.early_stop` is met; "vote decided" when `config.stop_when_decided` and no answer can
    catch the leader any more (exact answers only: with the "general" rule equivalent answers could still merge).
    None: keep going.
    """
    if config.early_stop is not None and config.early_stop.is_met(answers):
        return "early stop"
    if config.stop_when_decided and config.competition != GENERAL and is_decided(answers, remaining):
        return "vote decided"
    return None
