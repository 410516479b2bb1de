"""Serving through Kaggle's APIs (numina_kit.kaggle.serving): `predict` never raises and always answers in range under
injected faults, it answers by the budget's deadline, the local mode (stand-in or real gateway) and its score, the
hidden-rerun path, and the fields of kernel-metadata.json."""

import json
import logging
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from numina_kit.answers.extract import COMPETITIONS
from numina_kit.errors import InputError
from numina_kit.kaggle import serving as kaggle
from numina_kit.sctir.budget import TimeBudget
from numina_kit.testing import FakeClock


REPO = Path(__file__).resolve().parents[2]


def in_range(value, competition):
    rule = COMPETITIONS[competition]
    return type(value) is int and rule.low <= value <= rule.high


def solver_ok(problem, deadline):
    return 7


def solver_raises(problem, deadline):
    raise RuntimeError("CUDA error: device-side assert triggered")


def solver_out_of_range(problem, deadline):
    return 123456


def solver_none(problem, deadline):
    return None


def solver_text(problem, deadline):
    return "12"


def solver_bool(problem, deadline):
    return True


def solver_negative(problem, deadline):
    return -4


def solver_numpy(problem, deadline):
    import numpy as np

    return np.int64(7)


@pytest.mark.parametrize("competition", ["aimo1", "aimo2", "aimo3"])
@pytest.mark.parametrize(
    ("solver", "expected_source"),
    [
        (solver_ok, "solver"),
        (solver_numpy, "solver"),
        (solver_raises, "fallback"),
        (solver_out_of_range, "fallback"),
        (solver_none, "fallback"),
        (solver_text, "fallback"),
        (solver_bool, "fallback"),
        (solver_negative, "fallback"),
    ],
)
def test_predict_always_returns_one_in_range_row(competition, solver, expected_source):
    records = []
    predict = kaggle.make_predict(solver, competition=competition, records=records)
    reply = predict(pl.Series("id", ["abc123"]), pl.Series("problem", ["What is $1+6$?"]))
    assert isinstance(reply, pl.DataFrame) and reply.columns == ["id", "answer"] and reply.height == 1
    assert reply["id"][0] == "abc123" and in_range(reply["answer"][0], competition)
    assert records[0].source == expected_source
    if expected_source == "fallback":
        assert reply["answer"][0] == COMPETITIONS[competition].fallback and records[0].reason


@pytest.mark.parametrize(
    "problem",
    [
        pl.Series("problem", [""]),
        pl.Series("problem", ["   \n"]),
        pl.Series("problem", [None], dtype=pl.String),
        pl.Series("problem", [], dtype=pl.String),
        pd.Series([float("nan")]),
        None,
        42,
        object(),
    ],
)
def test_empty_or_malformed_problem_gets_the_fallback_without_solving(problem):
    calls, records = [], []
    predict = kaggle.make_predict(lambda text, deadline: calls.append(text) or 5, records=records)
    reply = predict(pl.Series("id", ["x"]), problem)
    assert reply["answer"].to_list() == [0] and calls == []
    assert "not non-empty text" in records[0].reason


def test_predict_accepts_pandas_series_and_plain_values():
    predict = kaggle.make_predict(solver_ok)
    assert predict(pd.Series(["a1"]), pd.Series(["1+6"]))["answer"].to_list() == [7]
    assert predict("b2", "1+6").to_dicts() == [{"id": "b2", "answer": 7}]


def test_deadline_already_passed_answers_at_once_with_the_fallback(caplog):
    clock = FakeClock(1000.0)
    budget = TimeBudget(total_s=100, num_problems=2, reserve_s=0, floor_s=0, ceiling_s=100, clock=clock)
    clock.now += 500  # the whole budget is gone
    calls, records = [], []
    predict = kaggle.make_predict(
        lambda text, deadline: calls.append(text) or 5, budget=budget, clock=clock, records=records
    )
    with caplog.at_level(logging.WARNING, logger="numina_kit.kaggle.serving"):
        replies = [predict(f"id{i}", "What is 2+3?") for i in range(3)]
    assert [reply["answer"][0] for reply in replies] == [0, 0, 0] and calls == []
    assert {record.reason for record in records} == {"deadline already passed"}
    assert "deadline already passed" in caplog.text
    assert budget.solved == 3


def test_solver_is_told_a_deadline_before_the_budget_one():
    clock = FakeClock(1000.0)
    budget = TimeBudget(total_s=1000, num_problems=10, reserve_s=0, floor_s=0, ceiling_s=1000, clock=clock)
    seen = []
    predict = kaggle.make_predict(
        lambda text, deadline: seen.append(deadline) or 1, budget=budget, grace_s=5.0, clock=clock
    )
    expected = budget.deadline() - 5.0  # the clock is frozen, so the budget hands out the same deadline
    predict("a", "1+0")
    assert seen == [pytest.approx(expected)] and expected > clock.now


def test_a_solver_that_overruns_is_abandoned_at_the_deadline():
    release = threading.Event()
    starts = []

    def slow_solver(text, deadline):
        starts.append(time.monotonic())
        release.wait(5)
        return 9

    budget = TimeBudget(total_s=1.0, num_problems=2, reserve_s=0, floor_s=0, ceiling_s=0.3)
    records = []
    predict = kaggle.make_predict(slow_solver, budget=budget, grace_s=0.1, records=records)
    started = time.monotonic()
    first = predict("a", "1+8")
    assert first["answer"][0] == 0 and time.monotonic() - started < 0.6
    second = predict("b", "1+8")  # the first solve still holds the model: no second one starts
    assert second["answer"][0] == 0 and len(starts) == 1
    assert [record.reason for record in records] == [
        "solver missed the deadline",
        "the previous problem's solve is still running",
    ]
    release.set()


def test_a_broken_budget_still_gets_an_answer():
    class BrokenBudget:
        def deadline(self):
            raise OSError("clock gone")

        def done(self):
            raise OSError("clock gone")

    reply = kaggle.make_predict(solver_ok, budget=BrokenBudget())("a", "1+6")
    assert reply["answer"].to_list() == [0]


def test_unknown_competition_is_an_input_error():
    with pytest.raises(InputError, match="unknown competition 'aimo9'"):
        kaggle.make_predict(solver_ok, competition="aimo9")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


PROBLEMS = [
    {"id": "000aaa", "problem": "What is $1-1$?", "answer": "0"},
    {"id": "111bbb", "problem": "What is $3+4$?", "answer": "7"},
    {"id": "222ccc", "problem": "What is $2 \\times 500$?", "answer": "1000"},
    {"id": "333ddd", "problem": "Solve $4+x=11$ for $x$.", "answer": "7.0"},
]


def arithmetic_solver(text, deadline):
    """Fails on some problems, on purpose: 1000 is out of range for AIMO-1/2, 'Solve' raises."""
    if text.startswith("Solve"):
        raise RuntimeError("sandbox worker died")
    return {"What is $1-1$?": 0, "What is $3+4$?": 7}.get(text, 1000)


@pytest.mark.parametrize(
    ("competition", "submission", "correct"),
    [("aimo1", "submission.csv", 3), ("aimo2", "submission.parquet", 2), ("aimo3", "submission.parquet", 3)],
)
def test_local_mode_with_faults_answers_every_problem_and_scores(tmp_path, competition, submission, correct):
    problems = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
    predict = kaggle.make_predict(arithmetic_solver, competition=competition)
    run = kaggle.run_local(predict, problems, competition, out_dir=tmp_path / "out", gateway="stand-in")
    assert run.submission == tmp_path / "out" / submission and run.gateway == "stand-in"
    table = (
        pd.read_csv(run.submission, dtype={"id": str})
        if submission.endswith("csv")
        else pd.read_parquet(run.submission)
    )
    assert sorted(table["id"]) == [row["id"] for row in PROBLEMS]
    assert all(in_range(int(answer), competition) for answer in table["answer"])
    # 222ccc: the solver's 1000 is out of range for aimo1/2 (fallback 0); its reference is 1000 mod 1000 = 0 for
    # aimo1 (correct), out of range for aimo2 (never correct), and 1000 for aimo3 (correct). 333ddd always fails.
    assert (run.score.correct, run.score.total) == (correct, 4)
    saved = json.loads((tmp_path / "out" / "score.json").read_text())
    assert saved["correct"] == correct and saved["total"] == 4 and saved["competition"] == competition
    assert pl.read_csv(tmp_path / "out" / "test.csv").columns == ["id", "problem"]


def test_local_mode_reads_csv_without_answers(tmp_path):
    csv = tmp_path / "test.csv"
    pl.DataFrame({"id": ["a", "b"], "problem": ["1+1", "2+2"]}).write_csv(csv)
    run = kaggle.run_local(kaggle.make_predict(solver_ok, competition="aimo3"), csv, "aimo3", out_dir=tmp_path / "o")
    assert run.score is None and not (tmp_path / "o" / "score.json").exists()
    assert pl.read_parquet(run.submission)["answer"].to_list() == [7, 7]


def test_local_mode_rejects_bad_input(tmp_path):
    predict = kaggle.make_predict(solver_ok)
    with pytest.raises(InputError, match="problem file not found"):
        kaggle.run_local(predict, tmp_path / "missing.jsonl", "aimo1", out_dir=tmp_path)
    problems = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    with pytest.raises(InputError, match="unknown gateway"):
        kaggle.run_local(predict, problems, "aimo2", out_dir=tmp_path, gateway="grpc")


FAKE_SERVER = '''
"""A fake of kaggle_evaluation's inference server for these tests (records how it was used)."""
import os, polars as pl
CALLS = []
class {cls}:
    def __init__(self, predict):
        assert predict.__name__ == "predict"
        self.predict = predict
    def serve(self):
        CALLS.append(("serve", bool(os.getenv("KAGGLE_IS_COMPETITION_RERUN"))))
    def run_local_gateway(self, data_paths=None):
        CALLS.append(("run_local_gateway", data_paths, os.getcwd()))
        table = pl.read_csv(data_paths[0])
        replies = [self.predict(*row.get_columns()) for row in table.iter_slices(1)]
        pl.concat(replies).write_parquet("submission.parquet")
'''


@pytest.fixture
def fake_kaggle_evaluation(tmp_path, monkeypatch):
    package = tmp_path / "fake_site" / "kaggle_evaluation"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for number in (2, 3):
        source = FAKE_SERVER.format(cls=f"AIMO{number}InferenceServer")
        (package / f"aimo_{number}_inference_server.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path / "fake_site"))
    yield
    for name in [name for name in sys.modules if name.startswith("kaggle_evaluation")]:
        del sys.modules[name]


def test_local_mode_uses_kaggle_evaluation_when_importable(tmp_path, fake_kaggle_evaluation):
    problems = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    out = tmp_path / "out"
    run = kaggle.run_local(kaggle.make_predict(solver_ok, competition="aimo3"), problems, "aimo3", out_dir=out)
    server = sys.modules["kaggle_evaluation.aimo_3_inference_server"]
    assert run.gateway == "kaggle_evaluation" and server.CALLS[0][0] == "run_local_gateway"
    assert Path(server.CALLS[0][1][0]) == (out / "test.csv").resolve() and Path(server.CALLS[0][2]) == out.resolve()
    assert pl.read_parquet(run.submission).height == len(PROBLEMS)
    assert Path.cwd() != out.resolve()


def test_gateway_kaggle_requires_the_real_package(tmp_path, monkeypatch):
    monkeypatch.setattr(kaggle, "import_server", lambda competition: None)
    problems = write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    with pytest.raises(InputError, match="not importable"):
        kaggle.run_local(kaggle.make_predict(solver_ok), problems, "aimo2", out_dir=tmp_path, gateway="kaggle")


def test_rerun_serves_the_real_inference_server(monkeypatch, fake_kaggle_evaluation):
    monkeypatch.setenv(kaggle.RERUN_VARIABLE, "1")
    assert kaggle.serve(kaggle.make_predict(solver_ok, competition="aimo2"), "aimo2") is None
    assert sys.modules["kaggle_evaluation.aimo_2_inference_server"].CALLS == [("serve", True)]


def test_rerun_runs_the_aimo1_env_loop(tmp_path, monkeypatch):
    (tmp_path / "aimo.py").write_text(
        textwrap.dedent(
            '''
            """A fake AIMO-1 `aimo` module for this test."""
            import pandas as pd
            ANSWERS = []
            class Env:
                def iter_test(self):
                    for pid in ("000aaa", "111bbb"):
                        yield (pd.DataFrame({"id": [pid], "problem": ["What is $1-1$?"]}),
                               pd.DataFrame({"id": [pid], "answer": [0]}))
                def predict(self, sample):
                    ANSWERS.append((sample["id"].iloc[0], int(sample["answer"].iloc[0])))
            def make_env():
                return Env()
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(kaggle.RERUN_VARIABLE, "true")
    try:
        assert kaggle.serve(kaggle.make_predict(solver_ok), "aimo1") is None
        assert sys.modules["aimo"].ANSWERS == [("000aaa", 7), ("111bbb", 7)]
    finally:
        sys.modules.pop("aimo", None)


def test_serve_without_problems_needs_the_competition_test_csv(monkeypatch, tmp_path):
    monkeypatch.delenv(kaggle.RERUN_VARIABLE, raising=False)
    monkeypatch.setattr(kaggle, "KAGGLE_INPUT", tmp_path)
    with pytest.raises(InputError, match="set PROBLEMS_FILE"):
        kaggle.serve(kaggle.make_predict(solver_ok), "aimo3")
    folder = tmp_path / "ai-mathematical-olympiad-progress-prize-3"
    folder.mkdir()
    pl.DataFrame({"id": ["000aaa"], "problem": ["What is $1-1$?"]}).write_csv(folder / "test.csv")
    monkeypatch.chdir(tmp_path)
    run = kaggle.serve(kaggle.make_predict(solver_ok, competition="aimo3"), "aimo3", gateway="stand-in")
    assert pl.read_parquet(run.submission).to_dicts() == [{"id": "000aaa", "answer": 7}]


KERNEL_FIELDS = {
    "id": str,
    "title": str,
    "code_file": str,
    "language": str,
    "kernel_type": str,
    "is_private": str,
    "enable_gpu": str,
    "enable_internet": str,
    "machine_shape": str,
    "dataset_sources": list,
    "competition_sources": list,
    "kernel_sources": list,
    "model_sources": list,
}


def test_kernel_metadata_is_valid_for_kaggle_kernels_push():
    folder = REPO
    metadata = json.loads((folder / "kernel-metadata.json").read_text())
    for name, kind in KERNEL_FIELDS.items():
        assert isinstance(metadata.get(name), kind), f"{name} should be a {kind.__name__}"
    owner, _, slug = metadata["id"].partition("/")
    assert owner and slug and "/" not in slug
    assert len(metadata["title"]) >= 5 and metadata["title"].lower().replace(" ", "-") == slug
    assert (folder / metadata["code_file"]).is_file() and metadata["code_file"].endswith(".ipynb")
    assert (metadata["language"], metadata["kernel_type"]) == ("python", "notebook")
    assert metadata["enable_internet"] == "false" and metadata["enable_gpu"] == "true"
    assert metadata["is_private"] in ("true", "false")
    assert metadata["machine_shape"] == "NvidiaTeslaT4"
    assert metadata["competition_sources"] == [kaggle.KAGGLE_COMPETITIONS["aimo1"].slug]
    assert len(metadata["dataset_sources"]) == 2
    for source in [*metadata["dataset_sources"], *metadata["kernel_sources"]]:
        assert isinstance(source, str) and len(source.split("/")) == 2
    for source in metadata["model_sources"]:
        assert isinstance(source, str) and len(source.split("/")) == 5


class ScriptedGenerator:
    """Writes code printing 3 + 4, then boxes 7 only if the code's output said 7; or raises when told to."""

    def __init__(self, fail: Exception | None = None):
        self.fail = fail

    def generate(self, prompts, params):
        from numina_kit.models.base import Completion
        from numina_kit.prompts import CODE_START, OUTPUT_START

        if self.fail is not None:
            raise self.fail
        completions = []
        for prompt in prompts:
            if f"{OUTPUT_START}7\n" in prompt:
                completions.append(Completion("So the answer is $\\boxed{7}$.", "stop"))
            elif OUTPUT_START in prompt:  # the code did not print 7: give up without an answer
                completions.append(Completion("The computation failed.", "stop"))
            else:
                completions.append(Completion(f"{CODE_START}print(3 + 4)\n```\n{OUTPUT_START}", "stop", OUTPUT_START))
        return completions

    def count_tokens(self, text):
        return len(text.split())


class BrokenSandbox:
    """A sandbox whose worker processes are gone: every call raises."""

    def run(self, code, *, key=None, timeout=None):
        raise BrokenPipeError("sandbox worker died")

    def run_many(self, codes, *, keys=None, timeout=None):
        raise BrokenPipeError("sandbox worker died")

    def forget(self, key):
        raise BrokenPipeError("sandbox worker died")

    def close(self):
        pass


@pytest.mark.parametrize(
    ("generator", "sandbox", "expected"),
    [
        (ScriptedGenerator(), "real", 7),
        (ScriptedGenerator(fail=RuntimeError("CUDA out of memory")), "real", 0),
        (ScriptedGenerator(), "broken", 0),
    ],
    ids=["healthy", "generator-raises", "executor-broken"],
)
def test_faults_through_sctir_solve_still_answer_in_range(tmp_path, generator, sandbox, expected):
    from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
    from numina_kit.sctir.loop import SCTIRConfig

    config = SCTIRConfig(num_candidates=2, max_rounds=3, competition="aimo1", executor=ExecutorConfig(timeout=5.0))
    executor = Sandbox(config.executor) if sandbox == "real" else BrokenSandbox()
    try:
        budget = TimeBudget(total_s=120, num_problems=3, reserve_s=0, floor_s=0, ceiling_s=60)
        predict = kaggle.make_predict(kaggle.make_solver(generator, config, executor=executor), budget=budget)
        problems = write_jsonl(tmp_path / "p.jsonl", PROBLEMS[:3])
        run = kaggle.run_local(predict, problems, "aimo1", out_dir=tmp_path)
    finally:
        executor.close()
    table = pd.read_csv(run.submission, dtype={"id": str})
    assert len(table) == 3 and table["answer"].tolist() == [expected] * 3
