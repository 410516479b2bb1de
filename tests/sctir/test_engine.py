"""Tests for numina_kit.sctir.engine: the async SC-TIR engine, one pipeline per candidate, with the real sandbox.

The first half replays test_loop.py's behaviours on the async engine (the same `advance`, prompts, answers and vote:
code output appended, answers frozen, restarts, pruning, depth and context limits, ties and competition rules,
sandbox failures, no-code mode, general answers, seeds, JSON); scripts are per candidate (`scripts[c][k]` is
candidate c's k-th request) since candidates no longer move in rounds. The second half covers what only the async
engine does: aborting requests on early stop, on a decided vote and at the deadline (on a fake clock, checked on
every streamed chunk and by the watchdog), keeping a stopped candidate's text, starting no code after a stop,
forgetting interpreters once running blocks end, one failed request costing one candidate, streaming answers, and
the `engine` switch of `loop.solve`.
"""

import asyncio
import json
import threading

import pytest

from numina_kit.answers import COMPETITIONS
from numina_kit.errors import InputError
from numina_kit.protocols.tora import STOP, render_prompt
from numina_kit.sandbox.pool import ExecResult, ExecutorConfig, Sandbox
from numina_kit.sctir.engine import solve_async
from numina_kit.sctir.loop import CandidateStatus, SCTIRConfig, solve
from numina_kit.sctir.voting import ConsistencyRule
from numina_kit.testing import HANG, FakeClock, ScriptedGenerator, ScriptedStreamingGenerator


PROBLEM = "What is 6 times 7?"
PROMPT = render_prompt(PROBLEM)
OUTPUT_42 = "42\n```\n"


def code(expression: str) -> str:
    return f"Let me compute.\n```python\nprint({expression})\n```\n{STOP}"


def boxed(answer: str) -> str:
    return f"So the answer is $\\boxed{{{answer}}}$."


class SpySandbox:
    """A sandbox that records runs and forgets, can hold one key's block until released, or fail every block."""

    def __init__(self, sandbox: Sandbox | None = None, *, hold: str | None = None, fail: bool = False) -> None:
        self.sandbox, self.hold, self.fail = sandbox, hold, fail
        self.events: list[tuple[str, str]] = []
        self.release = threading.Event()
        self.held = threading.Event()
        self.forgotten: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def run(self, code, *, key=None, timeout=None):
        with self._lock:
            self.events.append(("run", key))
        if self.fail:
            raise OSError("worker pool is broken")
        if key is not None and key.endswith(f"-{self.hold}"):
            self.held.set()
            self.release.wait(30)
        result = self.sandbox.run(code, key=key) if self.sandbox else ExecResult("ok", "42", 0.0)
        with self._lock:
            self.events.append(("done", key))
        return result

    def forget(self, key) -> None:
        with self._lock:
            self.events.append(("forget", key))
            self.forgotten.setdefault(key, threading.Event()).set()

    def wait_forgotten(self, suffix: str) -> str:
        for _ in range(300):
            with self._lock:
                key = next((k for k in self.forgotten if k.endswith(suffix)), None)
            if key is not None:
                return key
            threading.Event().wait(0.05)
        raise AssertionError(f"no key ending in {suffix} was forgotten")

    @property
    def runs(self) -> list[str]:
        return [key for event, key in self.events if event == "run"]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(ExecutorConfig(timeout=5.0)) as box:
        yield box


def config(**overrides) -> SCTIRConfig:
    return SCTIRConfig(**{"num_candidates": 1, "max_rounds": 4, "engine": "async", **overrides})


def run(scripts, cfg, executor, **kwargs):
    """Solve PROBLEM on the async engine with per-candidate scripts; returns (solution, generator)."""
    generator = ScriptedStreamingGenerator(scripts, kwargs.get("clock"), **kwargs.pop("generator", {}))
    solution = asyncio.run(solve_async(PROBLEM, generator, cfg, executor=executor, **kwargs))
    return solution, generator


def prompts_of(generator, candidate: int) -> list[str]:
    return [prompt for rid, prompt, _ in generator.requests if rid.split("/")[1] == str(candidate)]


# --- the behaviours of test_loop.py, on the async engine


def test_code_output_is_appended_and_answer_frozen(sandbox):
    solution, generator = run([[code("6*7"), "\nThe product is 42. " + boxed("42")]], config(), sandbox)
    (candidate,) = solution.candidates
    assert solution.answer == 42 and not solution.is_fallback
    assert candidate.status is CandidateStatus.ANSWERED and candidate.from_code and candidate.code_runs == 1
    assert candidate.text == code("6*7") + OUTPUT_42 + "\nThe product is 42. " + boxed("42")
    assert prompts_of(generator, 0)[1] == PROMPT + code("6*7") + OUTPUT_42
    assert solution.rounds == 2 and solution.stop_reason == "all finished"


def test_answered_candidates_are_frozen_and_not_prompted_again(sandbox):
    scripts = [[code("6*7"), boxed("42")], [code("6*7"), code("40+2"), boxed("42")]]
    solution, generator = run(scripts, config(num_candidates=2), sandbox)
    assert [c.status for c in solution.candidates] == [CandidateStatus.ANSWERED] * 2
    assert solution.candidates[0].text == code("6*7") + OUTPUT_42 + boxed("42")
    assert [c.finished_round for c in solution.candidates] == [1, 2] and solution.votes == [(42, 2)]
    assert len(prompts_of(generator, 0)) == 2 and len(prompts_of(generator, 1)) == 3


def test_candidate_without_code_is_restarted_from_the_prompt(sandbox):
    solution, generator = run([[boxed("41"), code("6*7"), boxed("42")]], config(), sandbox)
    (candidate,) = solution.candidates
    assert prompts_of(generator, 0)[1] == PROMPT
    assert candidate.restarts == 1 and candidate.answer == 42


@pytest.mark.parametrize(
    ("restart_on_fail", "completion", "reason"),
    [
        (False, boxed("41"), "no code"),
        (False, "I am not sure how to proceed.", "no code"),
        (True, "```python\nprint(1)\n```\n" + boxed("41"), "answer without code output"),
    ],
)
def test_pruned_in_the_first_round(sandbox, restart_on_fail, completion, reason):
    solution, _ = run([[completion]], config(restart_on_fail=restart_on_fail), sandbox)
    (candidate,) = solution.candidates
    assert candidate.status is CandidateStatus.PRUNED and candidate.reason == reason
    assert solution.is_fallback and solution.answer == COMPETITIONS["aimo1"].fallback


def test_depth_limit_prunes_a_candidate_that_keeps_writing_code(sandbox):
    spy = SpySandbox(sandbox)
    solution, generator = run([[code(str(k)) for k in range(3)]], config(max_rounds=3), spy)
    (candidate,) = solution.candidates
    assert candidate.status is CandidateStatus.PRUNED and candidate.reason == "out of rounds"
    assert candidate.code_runs == 2 and len(spy.runs) == 2 and len(generator.requests) == 3
    assert solution.is_fallback and solution.stop_reason == "max rounds"


def test_context_limit_prunes_before_sending(sandbox):
    scripts = [[code("'x' * 500")], [code("6*7"), boxed("42")]]
    limit = len(PROMPT) + len(code("6*7")) + 200
    solution, generator = run(scripts, config(num_candidates=2, max_context_tokens=limit), sandbox)
    assert solution.candidates[0].status is CandidateStatus.PRUNED
    assert solution.candidates[0].reason == "context limit"
    assert len(prompts_of(generator, 0)) == 1 and solution.answer == 42


@pytest.mark.parametrize(
    ("answers", "winner"),
    [
        (["7", "9", "9", "7"], 7),  # tie: the answer of the lower candidate among those finishing first wins
        (["9", "7", "7", "9"], 9),
        (["12.5", "12.5", "3"], 3),  # non-integers are rejected, not rounded
        (["1003", "3", "8"], 3),  # reduced into the AIMO-1 range
    ],
)
def test_vote(sandbox, answers, winner):
    scripts = [[code("1"), boxed(a)] for a in answers]
    solution, _ = run(scripts, config(num_candidates=len(answers)), sandbox)
    assert solution.answer == winner and not solution.is_fallback


def test_non_integer_answer_is_kept_but_not_voted(sandbox):
    solution, _ = run([[code("25/2"), boxed("12.5")]], config(), sandbox)
    (candidate,) = solution.candidates
    assert candidate.status is CandidateStatus.ANSWERED and candidate.raw_answer == "12.5"
    assert candidate.answer is None and candidate.reason == "invalid answer" and solution.is_fallback


def test_sandbox_failure_becomes_an_error_output():
    solution, _ = run([[code("6*7"), boxed("42")]], config(), SpySandbox(fail=True))
    (candidate,) = solution.candidates
    assert "OSError: worker pool is broken\n```\n" in candidate.text and solution.answer == 42


def test_no_code_mode_appends_an_empty_output_block():
    spy = SpySandbox()
    solution, _ = run([[code("6*7"), boxed("42")]], config(execute_code=False), spy)
    assert spy.runs == [] and solution.candidates[0].text == code("6*7") + "\n```\n" + boxed("42")


def test_general_competition_groups_equivalent_answers(sandbox):
    scripts = [[code("1/2"), boxed(a)] for a in ["\\frac{1}{2}", "0.5", "\\frac{1}{3}"]]
    solution, _ = run(scripts, config(num_candidates=3, competition="general"), sandbox)
    assert solution.answer == "\\frac{1}{2}" and solution.votes[0][1] == 2


def test_sampling_params_follow_the_config_with_a_seed_per_candidate_and_round():
    scripts = [[code("1"), boxed("1")]] * 2
    cfg = config(num_candidates=2, temperature=0.5, top_p=0.9, max_new_tokens=77, seed=3)
    _, generator = run(scripts, cfg, SpySandbox())
    params = {rid.split("/", 1)[1]: p for rid, _, p in generator.requests}
    first = params["0/0"]
    assert (first.temperature, first.top_p, first.max_new_tokens, first.stop) == (0.5, 0.9, 77, (STOP,))
    # round 0 matches the sync loop's batch (seed + position); later rounds move by a large prime
    assert [params[k].seed for k in ("0/0", "1/0", "0/1", "1/1")] == [3, 4, 3 + 1_000_003, 4 + 1_000_003]


def test_solution_is_one_json_line(sandbox):
    solution, _ = run([[code("6*7"), boxed("42")]], config(), sandbox)
    data = json.loads(solution.to_json())
    assert data["answer"] == 42 and data["candidates"][0]["status"] == "answered"
    assert data["generated_tokens"] == len(code("6*7")) + len(boxed("42"))
    assert data["prompt_tokens"] == 2 * len(PROMPT) + len(code("6*7") + OUTPUT_42)


def test_a_broken_completion_costs_one_candidate(sandbox):
    class Broken(ScriptedStreamingGenerator):
        async def complete(self, prompt, params, *, request_id, on_progress=None):
            completion = await super().complete(prompt, params, request_id=request_id, on_progress=on_progress)
            if request_id.endswith("1/1"):
                completion.text = None
            return completion

    generator = Broken([[code("6*7"), boxed("42")]] * 2)
    solution = asyncio.run(solve_async(PROBLEM, generator, config(num_candidates=2), executor=sandbox))
    assert solution.candidates[1].status is CandidateStatus.PRUNED
    assert solution.candidates[1].reason == "invalid completion" and solution.answer == 42


# --- what only the async engine does


def test_a_failed_request_costs_only_its_candidate(sandbox):
    scripts = [[code("6*7"), boxed("42")], [code("6*7"), boxed("41")]]
    solution, _ = run(scripts, config(num_candidates=2), sandbox, generator={"fail": ((1, 1),)})
    assert solution.candidates[0].status is CandidateStatus.ANSWERED and solution.answer == 42
    assert solution.candidates[1].status is CandidateStatus.STOPPED
    assert solution.candidates[1].reason == "generation error: RuntimeError"
    assert solution.stop_reason == "generation error"


def test_early_stop_aborts_requests_in_flight_and_keeps_their_text():
    scripts = [[code("6*7"), boxed("42")]] * 2 + [["Let me think about this" + HANG]] * 2
    rule = ConsistencyRule(agree=2)
    solution, generator = run(scripts, config(num_candidates=4, early_stop=rule), SpySandbox())
    assert solution.stop_reason == "early stop" and solution.answer == 42
    stopped = solution.candidates[2:]
    assert [c.status for c in stopped] == [CandidateStatus.STOPPED] * 2 and stopped[0].reason == "early stop"
    assert all(c.text == "Let me think about this" for c in stopped)  # the text streamed before the abort
    assert sorted(rid.split("/", 1)[1] for rid in generator.cancelled) == ["2/0", "3/0"]
    assert solution.generated_tokens == 2 * (len(code("6*7")) + len(boxed("42"))) + 2 * len("Let me think about this")


def test_no_code_starts_after_a_stop_and_interpreters_are_forgotten_once_blocks_end():
    # candidate 1's block is held in the sandbox while candidates 0 and 2 agree
    scripts = [[code("6*7"), boxed("42")], [code("1"), boxed("1")], [code("6*7"), boxed("42")]]
    spy = SpySandbox(hold="1")
    cfg = config(num_candidates=3, early_stop=ConsistencyRule(agree=2))
    solution, generator = run(scripts, cfg, spy)
    assert solution.stop_reason == "early stop"
    held = solution.candidates[1]
    assert held.status is CandidateStatus.STOPPED and held.text == code("1") and held.code_runs == 0
    assert not any(rid.split("/", 1)[1] == "1/1" for rid, _, _ in generator.requests)
    spy.release.set()
    key = spy.wait_forgotten("-1")
    events = [event for event, k in spy.events if k == key]
    assert events == ["run", "done", "forget"]  # forgotten only after its block ended, and nothing ran after
    assert spy.runs.count(key) == 1


def test_a_decided_vote_stops_the_rest():
    scripts = [[code("6*7"), boxed("42")]] * 2 + [["Still working" + HANG]]
    solution, generator = run(scripts, config(num_candidates=3, stop_when_decided=True), SpySandbox())
    assert solution.stop_reason == "vote decided" and solution.answer == 42
    assert solution.candidates[2].status is CandidateStatus.STOPPED and len(generator.cancelled) == 1


def test_deadline_is_checked_on_every_streamed_chunk():
    clock = FakeClock(1000.0)
    options = {"seconds_per_chunk": 1.0, "chunk_chars": 8}
    solution, generator = run([["y" * 400]], config(), SpySandbox(), clock=clock, deadline=1020.0, generator=options)
    (candidate,) = solution.candidates
    assert solution.stop_reason == "deadline" and candidate.status is CandidateStatus.STOPPED
    assert candidate.text == "y" * 160 and candidate.generated_tokens == 160  # 20 chunks, then aborted
    assert solution.total_s == 20.0 and len(generator.cancelled) == 1 and solution.is_fallback


def test_watchdog_stops_a_silent_request_at_the_deadline():
    clock = FakeClock(1000.0)
    scripts = [[code("6*7"), boxed("42")], ["Thinking" + HANG]]
    generator = ScriptedStreamingGenerator(scripts, clock)

    async def scenario():
        task = asyncio.create_task(
            solve_async(
                PROBLEM, generator, config(num_candidates=2), executor=SpySandbox(), deadline=1030.0, clock=clock
            )
        )
        while len(generator.finished) < 2:  # candidate 0 answers while candidate 1 is still in its first request
            await asyncio.sleep(0.01)
        clock.now = 1031.0
        return await task

    solution = asyncio.run(scenario())
    assert solution.stop_reason == "deadline" and solution.answer == 42
    assert solution.candidates[1].status is CandidateStatus.STOPPED and solution.candidates[1].text == "Thinking"
    assert solution.total_s == 31.0


def test_past_deadline_sends_nothing_and_returns_the_fallback():
    clock = FakeClock(1000.0)
    solution, generator = run([[code("1")]], config(competition="aimo3"), SpySandbox(), clock=clock, deadline=1000.0)
    assert generator.requests == [] and solution.is_fallback and solution.answer == COMPETITIONS["aimo3"].fallback
    assert solution.candidates[0].status is CandidateStatus.STOPPED and solution.stop_reason == "deadline"


@pytest.mark.parametrize(
    ("second", "kept"),
    [
        # the request ends with the 8-character chunk that closes the \boxed{}
        (boxed("42") + " Let me double check everything once more.", "So the answer is $\\boxed{42}$. L"),
        ("```python\nx = '\\boxed{1}'\nprint(42)\n```\n" + STOP, None),  # a \boxed inside code is not an answer
    ],
)
def test_streamed_answers_end_the_request(second, kept):
    scripts = [[code("6*7"), second, boxed("42")]]
    solution, generator = run(scripts, config(stream_answers=True), SpySandbox())
    (candidate,) = solution.candidates
    assert solution.answer == 42 and candidate.status is CandidateStatus.ANSWERED
    if kept is None:
        assert candidate.code_runs == 2 and generator.cancelled == []
    else:
        assert candidate.text == code("6*7") + OUTPUT_42 + kept and len(generator.cancelled) == 1


def test_loop_solve_switches_engines(sandbox):
    scripts = [[code("6*7"), boxed("42")]]
    streaming = ScriptedStreamingGenerator(scripts)
    assert solve(PROBLEM, streaming, config(engine="auto"), executor=sandbox).answer == 42  # auto: it streams
    assert len(streaming.requests) == 2
    # a batch generator runs on the async engine through the batching adapter, and on the sync loop as before
    for engine in ("async", "sync"):
        batch = ScriptedGenerator([[code("6*7")], [boxed("42")]])
        assert solve(PROBLEM, batch, config(engine=engine), executor=sandbox).answer == 42
        assert len(batch.calls) == 2


def test_default_sandbox_is_opened_and_closed():
    generator = ScriptedStreamingGenerator([[code("6*7"), boxed("42")]])
    assert solve(PROBLEM, generator, config()).answer == 42


def test_engine_must_be_known():
    with pytest.raises(InputError, match="engine must be one of"):
        SCTIRConfig(engine="threads")
