"""The records of SC-TIR: one candidate's state (`Candidate`), how it moves on by one round (`advance`), and the
`Solution` with its vote. Both engines (`loop.solve`, Numina's rounds, and `engine.solve_async`, one pipeline per
candidate) drive candidates through exactly these functions, so they differ only in scheduling.
"""

import json
import logging
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum

from numina_kit.answers import GENERAL, competition_rule, is_equivalent, to_competition_answer
from numina_kit.errors import InputError
from numina_kit.models.base import Completion, SamplingParams
from numina_kit.protocols import ToolProtocol, Turn, detect_protocol, make_protocol, tokenizer_of
from numina_kit.sandbox.pool import ExecResult, Sandbox
from numina_kit.sctir.config import SCTIRConfig
from numina_kit.sctir.selection import make_selector, printed_in
from numina_kit.sctir.voting import is_decided


logger = logging.getLogger(__name__)

TAIL_TOKENS = 256  # the tail whose entropy `Candidate.tail_entropy` reports


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
    code_runs: int = 0  # tool calls run, restarts included
    code_errors: int = 0  # of those, runs that raised, timed out or were killed
    restarts: int = 0
    finished_round: int | None = None
    last_output: str | None = None
    last_code: str | None = None  # the program behind `last_output` (all calls so far when the protocol is stateful)
    # confidence evidence (with SCTIRConfig.logprobs): token entropies over the top-k logprobs, in nats
    entropy_sum: float = 0.0
    entropy_tokens: int = 0
    tail_entropies: list[float] = field(default_factory=list)  # the last TAIL_TOKENS tokens' entropies
    logprob_sum: float = 0.0  # log-probabilities of the tokens sampled (restarts included)
    logprob_tokens: int = 0

    @property
    def voted(self) -> bool:
        return self.status is CandidateStatus.ANSWERED and self.answer is not None

    @property
    def mean_entropy(self) -> float | None:
        """The mean token entropy of everything the candidate generated (restarts included); None without logprobs."""
        return self.entropy_sum / self.entropy_tokens if self.entropy_tokens else None

    @property
    def tail_entropy(self) -> float | None:
        """The median token entropy of the last `TAIL_TOKENS` tokens (where the answer is written); None without
        logprobs. AIMO-3's second place weighted votes by its inverse (the "vote-led score")."""
        return statistics.median(self.tail_entropies) if self.tail_entropies else None

    @property
    def mean_logprob(self) -> float | None:
        """The mean log-probability of the tokens the candidate sampled (restarts included); None without logprobs."""
        return self.logprob_sum / self.logprob_tokens if self.logprob_tokens else None

    def note_logprobs(self, extra: object) -> None:
        """Add a completion's per-token evidence (`Completion.extra["entropies"]` and `["logprobs"]`), when present."""
        if not isinstance(extra, dict):
            return
        self.note_entropies(extra.get("entropies"))
        if extra.get("logprobs"):
            self.logprob_sum += sum(extra["logprobs"])
            self.logprob_tokens += len(extra["logprobs"])

    def note_entropies(self, entropies: list[float] | None) -> None:
        """Add the entropies of a completion's tokens (`Completion.extra["entropies"]`)."""
        if entropies:
            self.entropy_sum += sum(entropies)
            self.entropy_tokens += len(entropies)
            self.tail_entropies = (self.tail_entropies + list(entropies))[-TAIL_TOKENS:]


def advance(
    candidate: Candidate,
    completion: Completion,
    turn: Turn,
    results: list[ExecResult] | None,
    *,
    config: SCTIRConfig,
    protocol: ToolProtocol,
    round_: int,
    count_tokens: Callable[[str], int],
) -> None:
    """Move a running candidate on by one round, given its new completion, what the protocol read in it (`turn`,
    from `read_turn`) and the results of its tool calls (None when none were run: on the last round, or when the
    turn made no call). For ToRA the order of the checks is Numina's `process_code`.
    """
    text = candidate.text + completion.text
    new_tokens = completion.num_tokens or count_tokens(completion.text)
    candidate.text, candidate.tokens = text, candidate.tokens + new_tokens
    candidate.generated_tokens += new_tokens
    candidate.note_logprobs(completion.extra)
    final = round_ == config.max_rounds - 1
    # a protocol whose answers must follow code (ToRA): with no complete call anywhere a prose answer is not trusted
    if protocol.requires_code and not protocol.wrote_code(text):
        return _fail(candidate, "no code", round_, restart=config.restart_on_fail and not final)
    # the turn ended at tool calls: append their results (and the next turn's prompt), if a round is left to read it
    if turn.calls:
        if results is None:
            return finish(candidate, CandidateStatus.PRUNED, round_, reason="out of rounds")
        appended = protocol.render_results(turn, [result.output for result in results])
        candidate.text += appended
        candidate.tokens += count_tokens(appended)
        candidate.code_runs += sum(call.error is None for call in turn.calls)
        ran = zip(turn.calls, results, strict=False)
        candidate.code_errors += sum(call.error is None and not result.ok for call, result in ran)
        codes = [call.code for call in turn.calls if call.error is None]
        if codes:
            earlier = [candidate.last_code] if protocol.stateful and candidate.last_code else []
            candidate.last_code = "\n".join(earlier + codes) if protocol.stateful else codes[-1]
        candidate.last_output = results[-1].output
        return None
    # a final answer: freeze the candidate on it (under ToRA, an answer before any code output is made up)
    raw = protocol.extract_answer(turn.final) if turn.final is not None else None
    if raw is not None:
        if protocol.requires_code and not protocol.ran_code(text):
            return finish(candidate, CandidateStatus.PRUNED, round_, reason="answer without code output")
        candidate.raw_answer = raw
        candidate.answer = to_competition_answer(raw, config.competition)
        candidate.from_code = candidate.last_output is not None and printed_in(raw, candidate.last_output)
        return finish(
            candidate,
            CandidateStatus.ANSWERED,
            round_,
            reason="" if candidate.answer is not None else "invalid answer",
        )
    # cut off by the token limit: the next request goes on from here, if the protocol allows and a round is left
    if turn.cut_off and protocol.resume_cut_off and not final:
        return None
    # neither a call nor an answer (the model stopped, or ran out of tokens): start over, or give up
    return _fail(candidate, "no answer", round_, restart=config.restart_on_fail and not final)


def resolve_protocol(config: SCTIRConfig, generator: object) -> SCTIRConfig:
    """`config` with protocol "auto" replaced by the one the generator's tokenizer speaks (which also sets
    `executor.stateful`); any other config as it is."""
    if config.protocol.name != "auto":
        return config
    name = detect_protocol(tokenizer_of(generator))
    logger.info("protocol 'auto' chose %s", name)
    return replace(config, protocol=replace(config.protocol, name=name))


def start_protocol(config: SCTIRConfig, generator: object, executor: object) -> ToolProtocol:
    """The protocol of one solve, built for the generator's tokenizer; `InputError` when its python tool keeps
    variables across calls but the sandbox does not (the model would lose them without being told)."""
    protocol = make_protocol(config.protocol, tokenizer_of(generator))
    sandbox_config = getattr(executor, "config", None)
    if config.execute_code and protocol.stateful and getattr(sandbox_config, "stateful", True) is False:
        raise InputError(
            f"protocol {protocol.name!r} keeps variables across tool calls: open the sandbox with "
            "ExecutorConfig(stateful=True) (SCTIRConfig sets it when the protocol is named, not 'auto')"
        )
    return protocol


def read_turn(protocol: ToolProtocol, candidate: Candidate, completion: Completion, round_: int) -> Turn | None:
    """What `completion` ended with for `candidate`, or None (after pruning it) when the text trips the parser."""
    try:
        return protocol.parse(candidate.text, completion.text, completion.finish_reason)
    except Exception as error:  # a text that trips the parser costs one candidate, not the problem
        logger.exception("could not read candidate %d's completion", candidate.index)
        finish(candidate, CandidateStatus.PRUNED, round_, reason=f"harness error: {type(error).__name__}")
        return None


def sampling(config: SCTIRConfig, protocol: ToolProtocol, *, seed: int | None) -> SamplingParams:
    """One request's sampling settings: the config's, with the protocol's stop strings and special-token rule."""
    return SamplingParams(
        temperature=config.temperature,
        top_p=config.top_p,
        min_p=config.min_p,
        max_new_tokens=config.max_new_tokens,
        stop=protocol.stop,
        skip_special_tokens=protocol.skip_special_tokens,
        logprobs=config.logprobs,
        seed=seed,
    )


def _fail(candidate: Candidate, reason: str, round_: int, *, restart: bool) -> None:
    if restart:
        candidate.text, candidate.tokens, candidate.last_output, candidate.last_code = "", 0, None, None
        candidate.restarts += 1
        return None
    return finish(candidate, CandidateStatus.PRUNED, round_, reason=reason)


def finish(candidate: Candidate, status: CandidateStatus, round_: int, *, reason: str = "") -> None:
    candidate.status, candidate.finished_round, candidate.reason = status, round_, reason


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
    def voted(self) -> list[Candidate]:
        """The candidates with a valid answer, in the order they finished (the order the vote breaks ties by)."""
        return voted_in_order(self.candidates)

    @property
    def answers(self) -> list[int | str]:
        """Valid answers in the order the candidates finished."""
        return [c.answer for c in self.voted]

    def to_json(self) -> str:
        """The solution as one JSON line (candidate statuses as strings)."""
        data = asdict(self)
        for candidate in data["candidates"]:
            candidate["status"] = candidate["status"].value
        return json.dumps(data, ensure_ascii=False)


def voted_in_order(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates with a valid answer, in the order they finished (rounds, then index)."""
    return sorted((c for c in candidates if c.voted), key=lambda c: (c.finished_round, c.index))


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


def conclude(solution: Solution, competition: str, selector: str = "majority") -> None:
    """The end of `solve`, in either engine: count the tokens generated, vote, and log the outcome."""
    solution.generated_tokens = sum(c.generated_tokens for c in solution.candidates)
    vote(solution, competition, selector)
    logger.info(
        "answer %r (%s) after %d rounds: %d valid answers, stop: %s",
        solution.answer,
        "fallback" if solution.is_fallback else f"{solution.votes[0][1]:g} votes",
        solution.rounds,
        len(solution.answers),
        solution.stop_reason,
    )


def vote(solution: Solution, competition: str, selector: str = "majority") -> None:
    """Fill in `solution.answer` and `votes` from its candidates' answers with `selector`
    (`numina_kit.sctir.selection`), or the fallback when there are none."""
    voted = solution.voted
    choose = make_selector(selector)
    equivalent = is_equivalent if competition == GENERAL else None
    try:
        result = choose.select(voted, equivalent=equivalent) if voted else None
    except Exception:  # the equivalence judge failed: fall back to exact agreement rather than to no answer
        logger.exception("vote with equivalence failed; voting on exact answers")
        result = choose.select(voted)
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
