"""KTO labelling (training/kto_sample.py `sample_problem`): a candidate is desirable exactly when
`numina_kit.answers.judge` finds its written answer right against the reference under the recipe's `answer_rule`
('general' by default, so a right fraction or negative answer is desirable). A scripted generator stands in for the
model and a stub for the sandbox (labelling does not depend on what the code printed)."""

import sys
from pathlib import Path

import pytest

from numina_kit.protocols.tora import STOP
from numina_kit.sandbox.pool import ExecResult
from numina_kit.testing import ScriptedGenerator


pytest.importorskip("trl")  # the training extra; absent from the vLLM test environment
TRAINING = Path(__file__).resolve().parents[2] / "training"
sys.path.insert(0, str(TRAINING))

import kto_sample  # noqa: E402


class PrintingSandbox:
    """Runs nothing: every block "prints" 1."""

    def run_many(self, codes, *, keys=None, timeout=None) -> list[ExecResult]:
        return [ExecResult("ok", "1", 0.0) for _ in codes]

    def forget(self, key: str) -> None:
        pass


@pytest.mark.parametrize(
    ("reference", "written", "rule", "desirable"),
    [
        ("\\frac{1}{2}", "\\frac12", "general", True),  # not an AIMO integer, still right
        ("-3", "-3", "general", True),
        ("7", "7", "general", True),
        ("\\frac{1}{2}", "\\frac13", "general", False),
        ("7", "8", "general", False),
        ("\\frac{1}{2}", "\\frac12", "aimo1", False),  # an integer rule has no fractions
        ("178", "8178", "aimo1", True),  # AIMO-1 reduces mod 1000
    ],
)
def test_a_right_answer_is_desirable_under_the_rule(reference, written, rule, desirable):
    code = "```python\nprint(1)\n```\n" + STOP
    generator = ScriptedGenerator([[code], [f"So the answer is $\\boxed{{{written}}}$."]])
    sampling = kto_sample.SamplingArguments(num_samples=1, sampling_max_rounds=2, answer_rule=rule)
    config = kto_sample.sampling_config(sampling, max_length=1024)
    problem = {"id": "p", "problem": "What is it?", "answer": reference}
    line = kto_sample.sample_problem(problem, generator, config, PrintingSandbox())
    assert len(line["samples"]) == 1 and line["samples"][0]["label"] is desirable
