"""SC-TIR through the Harmony and Qwen3 protocols with scripted models and the real stateful sandbox: the edge cases a
sampled model produces, candidate by candidate, in one solve per protocol (a call whose variables the next call uses,
an answer without any call, an answer outside AIMO-3's [0, 99999], a call cut off by the token limit and resumed, a
tool result over the output cap, an interpreter that dies and is reported as restarted, two calls in one turn,
malformed tool-call JSON), then the vote.
"""

import pytest

from numina_kit.models.base import Completion, SamplingParams
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.sandbox.protocol import STATE_LOST
from numina_kit.sctir.candidates import CandidateStatus
from numina_kit.sctir.loop import SCTIRConfig, solve
from numina_kit.testing import TOOL_PROBLEM, TOOL_TURNS


class Script:
    """A batch generator replaying `plan[call][position]` = (text, finish_reason); it carries a family tokenizer, as
    a real generator does, so the protocol renders with that family's template."""

    def __init__(self, plan: list[list[tuple[str, str]]], tokenizer) -> None:
        self.plan, self.tokenizer, self.params = plan, tokenizer, []

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        replies = self.plan[len(self.params)]
        self.params.append(params)
        assert len(replies) == len(prompts), (len(self.params), len(prompts))
        return [Completion(text=text, finish_reason=finish, num_tokens=len(text)) for text, finish in replies]

    def count_tokens(self, text: str) -> int:
        return len(text)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(ExecutorConfig(stateful=True, num_workers=2, warmup=False, max_output_chars=200, timeout=1.0)) as box:
        yield box


def config(protocol: str, **overrides) -> SCTIRConfig:
    values = dict(num_candidates=6, max_rounds=3, competition="aimo3", restart_on_fail=False, engine="sync")
    executor = ExecutorConfig(stateful=True, num_workers=2, warmup=False, max_output_chars=200, timeout=1.0)
    return SCTIRConfig(protocol=protocol, executor=executor, **values | overrides)


def harmony_call(code: str) -> str:
    return f"<|channel|>analysis to=python code<|message|>{code}<|call|>"


def harmony_final(answer: str) -> str:
    return f"<|channel|>final<|message|>So $\\boxed{{{answer}}}$.<|return|>"


def test_harmony_edge_cases_in_one_solve(gpt_oss_tokenizer, sandbox):
    stop, length = "stop", "length"
    plan = [
        [
            (TOOL_TURNS["harmony"][0], stop),  # c0: x = 6 * 7
            (harmony_final("43"), stop),  # c1: answers without calling
            (harmony_final("123456"), stop),  # c2: outside [0, 99999]
            ("<|channel|>analysis to=python code<|message|>print(sum(range(", length),  # c3: cut off
            (harmony_call("print('9' * 5000)"), stop),  # c4: output over the cap
            (harmony_call("y = 5\nwhile True:\n    pass"), stop),  # c5: times out: its interpreter is killed
        ],
        [
            (TOOL_TURNS["harmony"][1], stop),  # c0: print(x + 1) -> 43 only if x persisted
            ("10)))<|call|>", stop),  # c3: the call, resumed
            (harmony_final("43"), stop),
            (harmony_call("print(y)"), stop),  # c5: y is gone, and the model is told so
        ],
        [(TOOL_TURNS["harmony"][2], stop), (harmony_final("45"), stop), (harmony_final("5"), stop)],
    ]
    generator = Script(plan, gpt_oss_tokenizer)
    solution = solve(TOOL_PROBLEM, generator, config("harmony"), executor=sandbox)
    c = solution.candidates
    assert all(p.stop == ("<|call|>", "<|return|>") and p.skip_special_tokens is False for p in generator.params)
    assert "<|start|>python to=assistant<|channel|>analysis<|message|>43<|end|>" in c[0].text
    assert (c[0].answer, c[0].code_runs, c[0].from_code) == (43, 2, True)
    assert (c[1].status, c[1].answer, c[1].code_runs) == (CandidateStatus.ANSWERED, 43, 0)
    assert (c[2].raw_answer, c[2].answer, c[2].reason) == ("123456", None, "invalid answer")
    assert "<|message|>45<|end|>" in c[3].text and c[3].answer == 45
    [output] = [m for m in c[4].text.split("<|message|>") if m.startswith("999")]
    assert len(output) < 300 and c[4].answer == 43
    assert STATE_LOST in c[5].text and "NameError: name 'y' is not defined" in c[5].text and c[5].answer == 5
    assert solution.answer == 43 and solution.votes[0] == (43, 3)


def qwen3_call(*codes: str, think: str = "Compute.") -> str:
    calls = "\n".join(
        '<tool_call>\n{"name": "python", "arguments": {"code": "' + code + '"}}\n</tool_call>' for code in codes
    )
    return f"<think>\n{think}\n</think>\n\n{calls}"


def test_qwen3_edge_cases_in_one_solve(qwen3_tokenizer, sandbox):
    stop = "stop"
    plan = [
        [
            (TOOL_TURNS["qwen3"][0], stop),  # c0: x = 6 * 7
            (qwen3_call("a = 40", "print(a + 3)"), stop),  # c1: two calls in one turn, in order, one interpreter
            ('<tool_call>\n{"name": "python", "arguments": {"code": print(1)}}\n</tool_call>', stop),  # c2: bad JSON
            ("<think>\nEasy.\n</think>\n\n$\\boxed{43}$", stop),  # c3: answers without calling
            ("<think>\nBig.\n</think>\n\n$\\boxed{100000}$", stop),  # c4: outside [0, 99999]
            ("<think>\nI will call the tool: <tool_call>\n{", "length"),  # c5: cut off, not resumed below
        ],
        [
            (TOOL_TURNS["qwen3"][1], stop),
            ("<think>\nDone.\n</think>\n\n$\\boxed{43}$", stop),
            ("<think>\nOops.\n</think>\n\n$\\boxed{7}$", stop),
            ('"name": "python", "arguments": {"code": "print(41 + 2)"}}\n</tool_call>', stop),
        ],
        [(TOOL_TURNS["qwen3"][2], stop), ("$\\boxed{43}$", stop)],
    ]
    generator = Script(plan, qwen3_tokenizer)
    solution = solve(TOOL_PROBLEM, generator, config({"name": "qwen3", "stateful": True}), executor=sandbox)
    c = solution.candidates
    assert all(p.stop == () and p.skip_special_tokens for p in generator.params)
    assert "<tool_response>\n43\n</tool_response>" in c[0].text and c[0].answer == 43
    assert "<tool_response>\n\n</tool_response>\n<tool_response>\n43\n</tool_response>" in c[1].text
    assert c[1].answer == 43 and c[1].code_runs == 2
    assert "Could not read the tool call's JSON" in c[2].text and c[2].code_runs == 0 and c[2].answer == 7
    assert (c[3].answer, c[3].code_runs) == (43, 0)
    assert (c[4].raw_answer, c[4].answer) == ("100000", None)
    assert "<tool_response>\n43\n</tool_response>" in c[5].text and c[5].answer == 43
    assert solution.answer == 43 and solution.votes[0] == (43, 4)
