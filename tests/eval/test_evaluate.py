"""Tests for numina_kit.eval (evaluate, results, report): scoring, the figures, the report files and the command.

A scripted generator plays a model whose candidates print known answers, so maj@N, pass@N, the code share and the
accuracy-vs-candidates curve have exact expected values; references are written as the shared files write them
("142.0"). The slow test runs `python -m numina_kit evaluate` end to end with the tiny demo model on CPU over a
shared set. Run: `pytest tests/eval` (add `--runslow` for the end-to-end test).
"""

import json
import re

import pytest

from numina_kit.__main__ import main
from numina_kit.data.problems import Problem
from numina_kit.errors import InputError
from numina_kit.eval.evaluate import evaluate
from numina_kit.eval.report import write_report
from numina_kit.models.base import Completion, SamplingParams
from numina_kit.protocols.tora import STOP
from numina_kit.sctir.loop import SCTIRConfig


class PrintingGenerator:
    """Candidate i of problem p prints `answers[p][i]` in round 1 and boxes what its code printed in round 2."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        completions = []
        for position, prompt in enumerate(prompts):
            problem = prompt.split("### Problem: ", 1)[1].split("\n### Solution: ", 1)[0]
            outputs = re.findall(r"```output\n(.*?)\n```", prompt, re.DOTALL)
            if outputs:
                text = f"The code gives {outputs[-1]}, so $\\boxed{{{outputs[-1]}}}$."
            else:
                text = f"```python\nprint({self.answers[problem][position]!r})\n```\n{STOP}"
            completions.append(Completion(text=text, finish_reason="stop", num_tokens=10))
        return completions

    def count_tokens(self, text: str) -> int:
        return len(text) // 4


PROBLEMS = [
    Problem("a", "Problem A", "5"),  # 2 of 3 right: maj right
    Problem("b", "Problem B", "1"),  # 1 of 3 right: maj wrong, pass right
    Problem("c", "Problem C", "142.0"),  # written as AMC writes it
    Problem("d", "Problem D", "8178"),  # reduced mod 1000 under aimo1
]
ANSWERS = {
    "Problem A": ["5", "5", "7"],
    "Problem B": ["1", "2", "2"],
    "Problem C": ["142"] * 3,
    "Problem D": ["178"] * 3,
}


@pytest.fixture(scope="module")
def evaluation():
    config = SCTIRConfig(num_candidates=3, max_rounds=2)
    return evaluate(PROBLEMS, PrintingGenerator(ANSWERS), config, seeds=[1, 2], data="set.jsonl", model="scripted")


def test_scores(evaluation):
    rows = {(r.id, r.seed): r for r in evaluation.results}
    assert len(rows) == 8
    assert [rows[p.id, 1].correct for p in PROBLEMS] == [True, False, True, True]
    assert [rows[p.id, 1].passed for p in PROBLEMS] == [True, True, True, True]
    summary = evaluation.summary()
    assert summary["maj@3"] == 0.75 and summary["pass@3"] == 1.0 and summary["per_seed"][2]["maj"] == 0.75
    assert summary["answers_from_code"] == 1.0 and summary["valid_answers_per_problem"] == 3
    assert summary["rounds_per_problem"] == 2 and summary["tokens_per_problem"] == 60


def test_accuracy_by_candidates(evaluation):
    curve = evaluation.accuracy_by_candidates(seed=1)
    assert list(curve) == [1, 2, 3]
    assert curve[3] == evaluation.maj(1)
    # one candidate: A is right 2/3 of the time, B 1/3, C and D always; sampled, so only roughly
    assert curve[1] == pytest.approx((2 / 3 + 1 / 3 + 2) / 4, abs=0.08)


def test_problems_without_reference_are_refused():
    with pytest.raises(InputError, match="no reference answer"):
        evaluate([Problem("x", "P", None)], PrintingGenerator({}), SCTIRConfig(num_candidates=1))


def test_report_files(evaluation, tmp_path):
    paths = write_report(evaluation, tmp_path / "out")
    assert [p.name for p in paths] == ["results.json", "report.md", "accuracy_vs_candidates.png"]
    results = json.loads(paths[0].read_text())
    assert results["summary"]["maj@3"] == 0.75 and len(results["problems"]) == 8
    assert results["config"]["num_candidates"] == 3 and set(results["accuracy_by_candidates"]) == {"mean", "1", "2"}
    markdown = paths[1].read_text()
    assert "| mean | 75.0% | 100.0% |" in markdown and "| c | 142.0 | 142 / 142 | 2/2 |" in markdown
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "missing.jsonl"], "problem file not found"),
        (["--seeds", "1,x"], "--seeds must be comma-separated integers"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_command_input_errors(tmp_path, capsys, extra, message):
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": "P", "answer": "1"}) + "\n")
    args = ["evaluate", "--model", str(tmp_path / "no-model"), "--data", str(data), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_command_end_to_end_with_tiny_model(tmp_path, shared_data, capsys):
    from numina_kit.models.demo import save_demo_model

    rows = [json.loads(line) for line in (shared_data / "amc_2022.jsonl").read_text().splitlines()][:2]
    texts = [r["problem"] for r in rows] + ["```python\nprint(1)\n```\n```output\n1\n```\n$\\boxed{1}$"] * 20
    model = save_demo_model(tmp_path / "model", texts, vocab_size=300, hidden_size=32, num_layers=1)
    out = tmp_path / "out"
    args = ["evaluate", "--model", str(model), "--data", str(shared_data / "amc_2022.jsonl"), "--limit", "2"]
    args += ["--num-candidates", "2", "--max-rounds", "2", "--max-new-tokens", "16", "--seeds", "1,2"]
    assert main([*args, "--out", str(out)]) == 0
    assert "maj@2" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert len(results["problems"]) == 4 and results["summary"]["problems"] == 2
    assert (out / "accuracy_vs_candidates.png").stat().st_size > 1000
    assert len((out / "solutions.jsonl").read_text().splitlines()) == 4
    assert "2022_AMC" in (out / "report.md").read_text()


@pytest.mark.parametrize(("no_code", "maj"), [(False, "75.0%"), (True, "0.0%")])
def test_command_with_config_and_no_code(tmp_path, monkeypatch, capsys, no_code, maj):
    data = tmp_path / "set.jsonl"
    data.write_text(
        "".join(json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer}) + "\n" for p in PROBLEMS)
    )
    config = tmp_path / "c.yaml"
    config.write_text("num_candidates: 3\nmax_rounds: 2\ncompetition: aimo1\n")
    monkeypatch.setattr("numina_kit.models.load.load_generator", lambda path, backend: PrintingGenerator(ANSWERS))
    args = ["evaluate", "--model", "m", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "out")]
    assert main(args + (["--no-code"] if no_code else [])) == 0
    assert f"maj@3 {maj}" in capsys.readouterr().out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["config"]["execute_code"] is not no_code and results["config"]["max_rounds"] == 2


def test_command_flags_override_the_config_and_defaults_come_from_sctir_config(tmp_path, monkeypatch):
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": PROBLEMS[0].problem, "answer": "7"}) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text("num_candidates: 3\nmax_rounds: 2\ntemperature: 0.5\n")
    monkeypatch.setattr("numina_kit.models.load.load_generator", lambda path, backend: PrintingGenerator(ANSWERS))
    args = ["evaluate", "--model", "m", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "out")]
    assert main([*args, "--num-candidates", "2", "--competition", "general"]) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["config"]
    assert (saved["num_candidates"], saved["max_rounds"], saved["temperature"]) == (2, 2, 0.5)
    assert saved["competition"] == "general" and saved["max_new_tokens"] == SCTIRConfig().max_new_tokens
    row = json.loads((tmp_path / "out" / "solutions.jsonl").read_text().splitlines()[0])
    assert row["id"] == "a" and row["solution"]["candidates"][0]["status"] == "answered"
