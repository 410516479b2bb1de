"""The submission notebook (notebooks/submission.ipynb) and `python -m numina_kit notebook`: the notebook's shape
(one `parameters` cell, no algorithm code, an install cell that only acts on Kaggle), and, end to end (slow), a
headless papermill run in local mode on CPU with a tiny model that must produce a valid submission."""

import ast
import json
import os
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from numina_kit.__main__ import main
from numina_kit.answers import COMPETITIONS, KAGGLE_COMPETITIONS


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "submission.ipynb"
PARAMETERS = {
    "MODEL_PATH",
    "COMPETITION",
    "NUM_CANDIDATES",
    "MAX_ROUNDS",
    "MAX_NEW_TOKENS",
    "TOTAL_BUDGET_S",
    "RESERVE_S",
    "PROBLEM_FLOOR_S",
    "PROBLEM_CEILING_S",
    "NUM_PROBLEMS",
    "PROBLEMS_FILE",
    "OUTPUT_DIR",
    "WHEELS_DIR",
}


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_opens_with_the_algorithm_and_budget_in_markdown(notebook):
    nbformat.validate(notebook)
    intro = notebook.cells[0]
    assert intro.cell_type == "markdown"
    for phrase in ("SC-TIR", "NUM_CANDIDATES", "MAX_ROUNDS", "Budget", "TimeBudget", "fallback"):
        assert phrase in intro.source


def test_notebook_states_each_competition_rule_as_the_table_does(notebook):
    intro = " ".join(notebook.cells[0].source.split())
    for name in KAGGLE_COMPETITIONS:
        assert COMPETITIONS[name].describe() in intro
        assert COMPETITIONS[name].hardware.split(" (")[0] in intro


def test_exactly_one_parameters_cell_of_plain_assignments(notebook):
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code_cells(notebook)[0]
    tree = ast.parse(tagged[0].source)
    assert all(isinstance(node, ast.Assign) for node in tree.body)
    names = {node.targets[0].id for node in tree.body}
    assert names >= PARAMETERS
    values = {}
    exec(compile(tree, "parameters", "exec"), {}, values)
    assert values["COMPETITION"] in COMPETITIONS and values["NUM_CANDIDATES"] == 48 and values["MAX_ROUNDS"] == 4


def test_papermill_reads_every_parameter_and_the_command_sets_only_those(tmp_path, caplog):
    import argparse

    import papermill

    from numina_kit.kaggle import notebook as command

    with caplog.at_level("WARNING"):
        inspected = papermill.inspect_notebook(str(NOTEBOOK))
    assert "Unable to parse" not in caplog.text
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--model", "m", "--problems", "p.jsonl", "--out", str(tmp_path)])
    args.max_context_tokens = 1024
    injected = command.build_parameters(args, num_problems=4, problems_file=tmp_path / "p.jsonl", out=tmp_path)
    assert set(inspected) >= PARAMETERS and set(injected) <= set(inspected)
    assert injected["TOTAL_BUDGET_S"] == 120 and injected["PROBLEM_FLOOR_S"] is None  # TimeBudget's default floor
    assert injected["RESERVE_S"] < injected["TOTAL_BUDGET_S"]
    # the defaults come from the command's recipe (configs/cpu_demo.yaml), and the settings used are saved
    assert (injected["NUM_CANDIDATES"], injected["MAX_NEW_TOKENS"], injected["COMPETITION"]) == (8, 256, "aimo1")
    assert Path(injected["RECIPE"]).read_text().count("num_candidates: 8") == 1


@pytest.mark.parametrize(("competition", "ceiling"), [("aimo2", 1800 - 60), ("aimo3", None), ("aimo1", None)])
def test_a_large_budget_never_gives_a_problem_more_than_one_call_may_take(tmp_path, competition, ceiling):
    import argparse

    from numina_kit.kaggle import notebook as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    argv = ["--model", "m", "--problems", "p.jsonl", "--out", str(tmp_path), "--competition", competition]
    args = parser.parse_args([*argv, "--budget-s", str(100 * 3600), "--max-context-tokens", "1024"])
    injected = command.build_parameters(args, num_problems=4, problems_file=tmp_path / "p.jsonl", out=tmp_path)
    assert injected["PROBLEM_CEILING_S"] == ceiling


def test_the_notebook_command_serves_kaggle_competitions_only(tmp_path):
    import argparse

    from numina_kit.errors import InputError
    from numina_kit.kaggle import notebook as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    argv = ["--model", "m", "--problems", "p.jsonl", "--out", str(tmp_path), "--competition", "general"]
    args = parser.parse_args([*argv, "--max-context-tokens", "1024"])
    with pytest.raises(InputError, match="use one of aimo1, aimo2, aimo3"):
        command.build_parameters(args, num_problems=4, problems_file=tmp_path / "p.jsonl", out=tmp_path)


def test_notebook_has_no_algorithm_code(notebook):
    for cell in code_cells(notebook):
        tree = ast.parse(cell.source)
        defined = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Lambda)]
        loops = [node for node in ast.walk(tree) if isinstance(node, ast.For | ast.While)]
        assert not defined and not loops, cell.source
    imports = "\n".join(cell.source for cell in code_cells(notebook))
    for name in ("load_generator", "kaggle.make_predict", "kaggle.serve", "TimeBudget", "notebook_config"):
        assert name in imports


@pytest.mark.parametrize(
    ("competition", "early_stop", "when_decided", "engine", "stop_rule", "cancels"),
    [
        ("aimo1", None, False, "auto", False, False),  # a batch generator: the synchronous loop, no early stop
        ("aimo2", {"agree": 4}, False, "sync", True, False),
        ("aimo3", None, True, "sync", True, False),
        ("aimo3", None, False, "async", False, True),
        ("aimo3", {"agree": 4}, False, "async", True, True),
    ],
)
def test_the_notebook_budget_is_the_default_the_simulation_chose(
    notebook, competition, early_stop, when_decided, engine, stop_rule, cancels
):
    """The notebook's `TimeBudget(...)`, evaluated with its own parameters, is `benchmarks/budget.py`'s "default":
    TimeBudget's own policy and floor, capped only by the competition's per-call limit, told whether the config
    has an early-stop rule (or `stop_when_decided`) and whether its engine cancels at the deadline (the async one)."""
    import time

    from numina_kit.answers import competition_rule
    from numina_kit.sctir import loop
    from numina_kit.sctir.budget import CLAMP_FLOOR, TimeBudget
    from numina_kit.sctir.config import SCTIRConfig
    from numina_kit.sctir.voting import ConsistencyRule
    from numina_kit.testing import ScriptedGenerator

    values = {}
    exec(code_cells(notebook)[0].source, {}, values)
    values.update(COMPETITION=competition, NOTEBOOK_START=time.monotonic(), time=time, TimeBudget=TimeBudget)
    consistency = ConsistencyRule(**early_stop) if early_stop else None
    values["config"] = SCTIRConfig(
        competition=competition, early_stop=consistency, stop_when_decided=when_decided, engine=engine
    )
    values.update(generator=ScriptedGenerator([]), has_stop_rule=loop.has_stop_rule, runs_async=loop.runs_async)
    values["rule"] = rule = competition_rule(competition, kaggle=True)
    cell = next(cell.source for cell in code_cells(notebook) if "TimeBudget(" in cell.source)
    call = next(
        node
        for node in ast.walk(ast.parse(cell))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "TimeBudget"
    )
    budget = eval(compile(ast.Expression(call), "budget cell", "eval"), values)
    default = TimeBudget(total_s=budget.total_s, num_problems=budget.num_problems, reserve_s=budget.reserve_s)
    for name in ("floor_s", "hard_share", "easy_share", "prior_weight", "hard_margin_s", "partial_share"):
        assert getattr(budget, name) == getattr(default, name), name
    assert budget.ceiling_s == rule.max_problem_s  # AIMO-2: 30 minutes less one; else none
    assert budget.floor() == pytest.approx(CLAMP_FLOOR * budget.first_share)
    assert budget.stop_rule == stop_rule
    assert budget.cancels == cancels


def install_cell(notebook):
    return next(cell for cell in code_cells(notebook) if "pip" in cell.source)


@pytest.mark.parametrize("on_kaggle", [False, True])
def test_install_cell_installs_from_the_wheel_dataset_only_on_kaggle(notebook, monkeypatch, on_kaggle):
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append((command, kwargs)))
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda path: on_kaggle if path == "/kaggle/input" else real_isdir(path))
    exec(install_cell(notebook).source, {"WHEELS_DIR": "/kaggle/input/wheels"})
    if not on_kaggle:
        assert commands == []
        return
    [(command, kwargs)] = commands
    assert command[1:4] == ["-m", "pip", "install"] and "--no-index" in command
    assert command[command.index("--find-links") + 1] == "/kaggle/input/wheels"
    assert command[command.index("-r") + 1] == "/kaggle/input/wheels/requirements.txt"
    assert command[-1] == "numina_kit" and kwargs == {"check": True}


def test_notebook_command_reports_bad_input(tmp_path, capsys):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"id": "a", "problem": "1+1"}\n')
    assert main(["notebook", "--model", str(tmp_path / "none"), "--problems", str(problems), "--out", "o"]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main(["notebook", "--model", str(tmp_path), "--problems", str(tmp_path / "x.jsonl"), "--out", "o"]) == 2
    assert "problem file not found" in capsys.readouterr().err
    assert main(["notebook", "--model", str(tmp_path), "--problems", str(problems), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_context_limit_defaults_to_the_model(tiny_model, tmp_path):
    import argparse

    from numina_kit.kaggle import notebook as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_model), "--problems", "p.jsonl", "--out", str(tmp_path)])
    injected = command.build_parameters(args, num_problems=1, problems_file=tmp_path / "p.jsonl", out=tmp_path)
    assert injected["MAX_CONTEXT_TOKENS"] == 512
    args.max_context_tokens = 300
    assert (
        command.build_parameters(args, num_problems=1, problems_file=tmp_path, out=tmp_path)["MAX_CONTEXT_TOKENS"]
        == 300
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from numina_kit.models.demo import save_demo_model
    from numina_kit.protocols.tora import render_example

    texts = [
        render_example(
            f"What is {a} + {b}?",
            f"```python\nprint({a} + {b})\n```\n```output\n{a + b}\n```\nThe answer is $\\boxed{{{a + b}}}$.",
            "<eos>",
        )
        for a in range(12)
        for b in range(5)
    ]
    folder = tmp_path_factory.mktemp("model") / "tiny"
    return save_demo_model(folder, texts, hidden_size=32, num_layers=1, max_position_embeddings=512)


@pytest.mark.slow
@pytest.mark.parametrize(("competition", "submission"), [("aimo3", "submission.parquet"), ("aimo1", "submission.csv")])
def test_notebook_runs_headless_in_local_mode_on_cpu(tiny_model, tmp_path, capsys, competition, submission):
    rows = [
        {"id": "000aaa", "problem": "What is 3 + 4?", "answer": "7"},
        {"id": "111bbb", "problem": "What is 10 + 2?", "answer": "12"},
        {"id": "222ccc", "problem": "What is 5 + 0?", "answer": "5"},
    ]
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    argv = ["notebook", "--model", str(tiny_model), "--problems", str(problems), "--out", str(out)]
    argv += ["--competition", competition, "--num-candidates", "2", "--max-rounds", "2", "--max-new-tokens", "16"]
    assert main([*argv, "--gateway", "stand-in", "--budget-s", "120", "--timeout", "300"]) == 0
    printed = capsys.readouterr().out
    path = out / submission
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"id": str})
    assert sorted(table["id"]) == [row["id"] for row in rows] and len(table) == len(rows)
    rule = COMPETITIONS[competition]
    assert all(isinstance(answer, int) and rule.low <= answer <= rule.high for answer in table["answer"].tolist())
    score = json.loads((out / "score.json").read_text())
    assert score["total"] == 3 and f"score: {score['correct']}/3" in printed
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 3 and all(answer["seconds"] < 120 for answer in answers)
    executed = nbformat.read(out / "submission.ipynb", as_version=4)
    assert any("injected-parameters" in cell.metadata.get("tags", []) for cell in executed.cells)
