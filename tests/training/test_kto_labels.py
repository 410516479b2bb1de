"""KTO labelling (training/kto.py `sample_completions`): a candidate is desirable exactly when
`numina_kit.answers.judge` finds its written answer right against the reference under the general rule, whatever
answers the sampling loop's competition accepts. A scripted generator stands in for the model and a stub for the
sandbox (labelling does not depend on what the code printed)."""

import sys
from pathlib import Path

import pytest

from numina_kit.prompts import STOP
from numina_kit.sandbox.pool import ExecResult
from numina_kit.testing import ScriptedGenerator


TRAINING = Path(__file__).resolve().parents[2] / "training"
sys.path.insert(0, str(TRAINING))

import kto  # noqa: E402


class PrintingSandbox:
    """Runs nothing: every block "prints" 1."""

    def __init__(self, config) -> None:
        pass

    def __enter__(self) -> "PrintingSandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run_many(self, codes, *, keys=None, timeout=None) -> list[ExecResult]:
        return [ExecResult("ok", "1", 0.0) for _ in codes]

    def forget(self, key: str) -> None:
        pass


@pytest.mark.parametrize(
    ("reference", "written", "desirable"),
    [
        ("\\frac{1}{2}", "\\frac12", True),  # not an AIMO integer, still right
        ("-3", "-3", True),
        ("7", "7", True),
        ("\\frac{1}{2}", "\\frac13", False),
        ("7", "8", False),
    ],
)
def test_a_right_answer_is_desirable_under_the_general_rule(monkeypatch, reference, written, desirable):
    code = "```python\nprint(1)\n```\n" + STOP
    plan = [[code], [f"So the answer is $\\boxed{{{written}}}$."]]
    monkeypatch.setattr("numina_kit.models.load.load_generator", lambda path, backend: ScriptedGenerator(plan))
    monkeypatch.setattr("numina_kit.sandbox.pool.Sandbox", PrintingSandbox)
    sampling = kto.SamplingArguments(num_samples=1, sampling_max_rounds=2)
    rows = kto.sample_completions([{"id": "p", "problem": "What is it?", "answer": reference}], "model", sampling)
    assert len(rows) == 1 and rows[0]["label"] is desirable
