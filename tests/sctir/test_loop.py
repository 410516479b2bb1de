"""Tests for numina_kit.sctir.loop: the SC-TIR loop driven by a scripted generator, with the real sandbox and voting.

Covers each transition of `advance` (code -> output appended, answer -> frozen, no code -> restart or prune,
answer without code output -> prune, out of rounds, context limit), the loop's stops (deadline, early stop,
generation and sandbox failures), the vote (tie, fallback, non-integer answers, general answers) and the config.
Run: `pytest tests/sctir/test_loop.py`.
"""

import json
import textwrap
from pathlib import Path

import pytest

from numina_kit.answers import COMPETITIONS
from numina_kit.errors import InputError
from numina_kit.protocols.tora import STOP, render_prompt
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.sctir.loop import CandidateStatus, SCTIRConfig, Solution, solve
from numina_kit.sctir.voting import ConsistencyRule
from numina_kit.testing import FakeClock, ScriptedGenerator


PROBLEM = "What is 6 times 7?"
PROMPT = render_prompt(PROBLEM)


def code(expression: str) -> str:
    """A completion that writes a code block printing `expression` and stops at the output fence."""
    return f"Let me compute.\n```python\nprint({expression})\n```\n{STOP}"


def boxed(answer: str) -> str:
    return f"So the answer is $\\boxed{{{answer}}}$."


class CountingSandbox:
    """The real sandbox, counting `run_many` calls and the programs in each."""

    def __init__(self, sandbox: Sandbox, fail: bool = False) -> None:
        self.sandbox, self.fail, self.batches = sandbox, fail, []

    def run_many(self, codes, *, keys=None, timeout=None):
        self.batches.append(list(codes))
        if self.fail:
            raise OSError("worker pool is broken")
        return self.sandbox.run_many(codes, keys=keys, timeout=timeout)

    def forget(self, key) -> None:
        self.sandbox.forget(key)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(ExecutorConfig(timeout=5.0)) as box:
        yield box


def config(**overrides) -> SCTIRConfig:
    return SCTIRConfig(**{"num_candidates": 1, "max_rounds": 4, **overrides})


def test_code_output_is_appended_and_answer_frozen(sandbox):
    generator = ScriptedGenerator([[code("6*7")], ["\nThe product is 42. " + boxed("42")]])
    solution = solve(PROBLEM, generator, config(), executor=sandbox)
    (candidate,) = solution.candidates
    assert solution.answer == 42 and not solution.is_fallback
    assert candidate.status is CandidateStatus.ANSWERED and candidate.from_code and candidate.code_runs == 1
    assert candidate.text == code("6*7") + "42\n```\n" + "\nThe product is 42. " + boxed("42")
    # the second call continues from the whole text so far
    assert generator.calls[1] == [PROMPT + code("6*7") + "42\n```\n"]
    assert solution.rounds == 2 and solution.stop_reason == "all finished"


def test_answered_candidates_are_frozen_and_not_prompted_again(sandbox):
    first = code("6*7") + "42\n```\n"
    plan = [
        [code("6*7"), code("6*7")],
        [boxed("42"), code("40+2")],
        [boxed("42")],  # only the running candidate is sent; the answered one keeps its answer
    ]
    solution = solve(PROBLEM, ScriptedGenerator(plan), config(num_candidates=2), executor=sandbox)
    assert [c.status for c in solution.candidates] == [CandidateStatus.ANSWERED] * 2
    assert solution.candidates[0].text == first + boxed("42") and solution.candidates[0].finished_round == 1
    assert solution.candidates[1].finished_round == 2 and solution.votes == [(42, 2)]


def test_candidate_without_code_is_restarted_from_the_prompt(sandbox):
    plan = [[boxed("41")], [code("6*7")], [boxed("42")]]
    generator = ScriptedGenerator(plan)
    solution = solve(PROBLEM, generator, config(), executor=sandbox)
    (candidate,) = solution.candidates
    assert generator.calls[1] == [PROMPT]  # restarted: the prose answer is thrown away
    assert candidate.restarts == 1 and candidate.answer == 42


@pytest.mark.parametrize(
    ("restart_on_fail", "completion", "reason"),
    [
        (False, boxed("41"), "no code"),  # pure prose is never trusted
        (False, "I am not sure how to proceed.", "no code"),
        (True, "```python\nprint(1)\n```\n" + boxed("41"), "answer without code output"),  # hallucinated output
    ],
)
def test_pruned_in_the_first_round(sandbox, restart_on_fail, completion, reason):
    solution = solve(
        PROBLEM, ScriptedGenerator([[completion]]), config(restart_on_fail=restart_on_fail), executor=sandbox
    )
    (candidate,) = solution.candidates
    assert candidate.status is CandidateStatus.PRUNED and candidate.reason == reason
    assert solution.is_fallback and solution.answer == COMPETITIONS["aimo1"].fallback


def test_depth_limit_prunes_a_candidate_that_keeps_writing_code(sandbox):
    spy = CountingSandbox(sandbox)
    generator = ScriptedGenerator([[code(str(k))] for k in range(3)])
    solution = solve(PROBLEM, generator, config(max_rounds=3), executor=spy)
    (candidate,) = solution.candidates
    assert candidate.status is CandidateStatus.PRUNED and candidate.reason == "out of rounds"
    assert candidate.code_runs == 2 and len(spy.batches) == 2  # no code runs on the last round
    assert len(generator.calls) == 3 and solution.is_fallback


def test_context_limit_prunes_before_sending(sandbox):
    long_output = "print('x' * 500)"
    plan = [[code(long_output), code("6*7")], [boxed("42")]]
    generator = ScriptedGenerator(plan)
    limit = len(PROMPT) + len(code("6*7")) + 200
    solution = solve(PROBLEM, generator, config(num_candidates=2, max_context_tokens=limit), executor=sandbox)
    assert solution.candidates[0].status is CandidateStatus.PRUNED
    assert solution.candidates[0].reason == "context limit"
    assert len(generator.calls[1]) == 1 and solution.answer == 42


def test_code_of_a_round_runs_in_one_sandbox_call(sandbox):
    spy = CountingSandbox(sandbox)
    plan = [[code(f"{k}*6") for k in range(5)], [boxed(str(6 * k)) for k in range(5)]]
    solution = solve(PROBLEM, ScriptedGenerator(plan), config(num_candidates=5), executor=spy)
    assert [len(batch) for batch in spy.batches] == [5]
    assert [c.answer for c in solution.candidates] == [0, 6, 12, 18, 24]
    assert all(c.text.startswith(code(f"{c.index}*6") + f"{6 * c.index}\n```\n") for c in solution.candidates)


@pytest.mark.parametrize(
    ("answers", "winner"),
    [
        (["7", "9", "9", "7"], 7),  # tie: the answer reached first wins (candidate order within a round)
        (["9", "7", "7", "9"], 9),
        (["12.5", "12.5", "3"], 3),  # non-integers are rejected, not rounded to 12
        (["1003", "3", "8"], 3),  # reduced into the AIMO-1 range by the competition rule
    ],
)
def test_vote(sandbox, answers, winner):
    n = len(answers)
    plan = [[code("1")] * n, [boxed(a) for a in answers]]
    solution = solve(PROBLEM, ScriptedGenerator(plan), config(num_candidates=n), executor=sandbox)
    assert solution.answer == winner and not solution.is_fallback


def test_non_integer_answer_is_kept_but_not_voted(sandbox):
    plan = [[code("25/2")], [boxed("12.5")]]
    solution = solve(PROBLEM, ScriptedGenerator(plan), config(), executor=sandbox)
    (candidate,) = solution.candidates
    assert candidate.status is CandidateStatus.ANSWERED and candidate.raw_answer == "12.5"
    assert candidate.answer is None and candidate.reason == "invalid answer"
    assert solution.is_fallback and solution.answer == COMPETITIONS["aimo1"].fallback


def test_early_stop_when_answers_agree(sandbox):
    plan = [[code("6*7")] * 4, [boxed("42"), boxed("42"), code("1"), code("2")]]
    generator = ScriptedGenerator(plan)
    rule = ConsistencyRule(agree=2, window=None)
    solution = solve(PROBLEM, generator, config(num_candidates=4, early_stop=rule), executor=sandbox)
    assert len(generator.calls) == 2 and solution.stop_reason == "early stop"
    assert [c.status for c in solution.candidates[2:]] == [CandidateStatus.STOPPED] * 2
    assert solution.answer == 42


def test_deadline_stops_between_rounds(sandbox):
    clock = FakeClock(1000.0)
    generator = ScriptedGenerator([[code("6*7")] * 2, [boxed("42"), code("1")]], clock=clock, seconds_per_call=30)
    solution = solve(
        PROBLEM, generator, config(num_candidates=2), executor=sandbox, deadline=clock.now + 45, clock=clock
    )
    assert len(generator.calls) == 2 and solution.stop_reason == "deadline"
    assert solution.candidates[1].status is CandidateStatus.STOPPED and solution.answer == 42
    assert solution.generation_s == 60 and solution.total_s == 60


def test_past_deadline_runs_no_round_and_returns_the_fallback(sandbox):
    clock = FakeClock(1000.0)
    generator = ScriptedGenerator([])
    solution = solve(
        PROBLEM, generator, config(competition="aimo3"), executor=sandbox, deadline=clock.now, clock=clock
    )
    assert generator.calls == [] and solution.is_fallback and solution.answer == COMPETITIONS["aimo3"].fallback


def test_generation_failure_votes_on_what_was_found(sandbox):
    plan = [[code("6*7")] * 2, [boxed("42"), code("1")]]
    generator = ScriptedGenerator(plan, fail_on_call=2)
    solution = solve(PROBLEM, generator, config(num_candidates=2), executor=sandbox)
    assert solution.answer == 42 and solution.stop_reason == "generation error"
    assert solution.candidates[1].status is CandidateStatus.STOPPED


def test_sandbox_failure_becomes_an_error_output(sandbox):
    plan = [[code("6*7")], [boxed("42")]]
    solution = solve(PROBLEM, ScriptedGenerator(plan), config(), executor=CountingSandbox(sandbox, fail=True))
    (candidate,) = solution.candidates
    assert "OSError: worker pool is broken\n```\n" in candidate.text and solution.answer == 42


def test_no_code_mode_appends_an_empty_output_block(sandbox):
    spy = CountingSandbox(sandbox)
    plan = [[code("6*7")], [boxed("42")]]
    solution = solve(PROBLEM, ScriptedGenerator(plan), config(execute_code=False), executor=spy)
    assert spy.batches == []
    assert solution.candidates[0].text == code("6*7") + "\n```\n" + boxed("42")
    assert not solution.candidates[0].from_code


def test_general_competition_groups_equivalent_answers(sandbox):
    answers = ["\\frac{1}{2}", "0.5", "\\frac{1}{3}"]
    plan = [[code("1/2")] * 3, [boxed(a) for a in answers]]
    solution = solve(
        PROBLEM, ScriptedGenerator(plan), config(num_candidates=3, competition="general"), executor=sandbox
    )
    assert solution.answer == "\\frac{1}{2}"
    assert solution.votes[0][1] == 2


def test_sampling_params_follow_the_config(sandbox):
    generator = ScriptedGenerator([[code("1")] * 2, [boxed("1")] * 2])
    cfg = config(num_candidates=2, temperature=0.5, top_p=0.9, max_new_tokens=77, seed=3)
    solve(PROBLEM, generator, cfg, executor=sandbox)
    first, second = generator.params
    assert (first.temperature, first.top_p, first.max_new_tokens, first.stop) == (0.5, 0.9, 77, (STOP,))
    assert first.seed == 3 and second.seed != first.seed


def test_solution_is_one_json_line(sandbox):
    plan = [[code("6*7")], [boxed("42")]]
    solution = solve(PROBLEM, ScriptedGenerator(plan), config(), executor=sandbox)
    line = solution.to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert data["answer"] == 42 and data["candidates"][0]["status"] == "answered"
    assert set(data) >= {"votes", "generation_s", "execution_s", "generated_tokens", "prompt_tokens"}
    assert isinstance(solution, Solution) and data["generated_tokens"] == len(code("6*7")) + len(boxed("42"))


def test_default_sandbox_is_opened_and_closed():
    plan = [[code("6*7")], [boxed("42")]]
    assert solve(PROBLEM, ScriptedGenerator(plan), config()).answer == 42


def test_config_from_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent(
            """
            num_candidates: 8
            competition: aimo2
            early_stop: {agree: 4, window: 5}
            executor: {timeout: 2.0}
            """
        )
    )
    cfg = SCTIRConfig.from_yaml(path)
    assert cfg.num_candidates == 8 and cfg.competition == "aimo2" and cfg.executor.timeout == 2.0
    assert cfg.early_stop.agree == 4 and cfg.max_rounds == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("num_candidate: 8\n", "unknown SCTIRConfig key"),
        ("competition: aimo9\n", "unknown competition"),
        ("max_rounds: 0\n", "max_rounds must be a positive integer"),
        ("- 1\n", "expected a mapping"),
        ("early_stop: {agree: 4, bogus: 1}\n", "bogus"),
    ],
)
def test_config_errors_are_input_errors(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        SCTIRConfig.from_yaml(path)


def test_a_broken_completion_costs_one_candidate(sandbox):
    class BrokenSecond(ScriptedGenerator):
        def generate(self, prompts, params):
            completions = super().generate(prompts, params)
            if len(self.calls) == 1:
                completions[1].text = None  # a backend bug: not a string
            return completions

    plan = [[code("6*7")] * 2, [boxed("42")]]
    solution = solve(PROBLEM, BrokenSecond(plan), config(num_candidates=2), executor=sandbox)
    assert solution.candidates[1].status is CandidateStatus.PRUNED
    assert solution.candidates[1].reason == "invalid completion" and solution.answer == 42


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")), ids=str)
def test_shipped_configs_load(path):
    assert isinstance(SCTIRConfig.from_yaml(path), SCTIRConfig)


def test_a_decided_vote_stops_after_the_round(sandbox):
    # after round 1: two votes for 42, one candidate still running: 2 > 0 + 1, nothing can change the winner
    plan = [[code("6*7")] * 3, [boxed("42"), boxed("42"), code("1")]]
    generator = ScriptedGenerator(plan)
    solution = solve(PROBLEM, generator, config(num_candidates=3, stop_when_decided=True), executor=sandbox)
    assert len(generator.calls) == 2 and solution.stop_reason == "vote decided" and solution.answer == 42
    assert solution.candidates[2].status is CandidateStatus.STOPPED
