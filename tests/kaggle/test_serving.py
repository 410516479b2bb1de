"""Serving through Kaggle's APIs (numina_kit.kaggle.serving): the local mode (stand-in or real gateway) and its score,
`kaggle_evaluation` that cannot be imported (missing, or exiting from its `__init__`), the hidden-rerun path, faults
through the real `solve`, and the fields of kernel-metadata.json."""

import json
import sys
import textwrap
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from numina_kit.answers import COMPETITIONS
from numina_kit.data.jsonl import write_jsonl
from numina_kit.errors import InputError
from numina_kit.kaggle import serving as kaggle
from numina_kit.kaggle.predict import make_predict, make_solver
from numina_kit.sctir.budget import TimeBudget


REPO = Path(__file__).resolve().parents[2]


def solver_ok(problem, deadline):
    return 7


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
    problems = write_jsonl(PROBLEMS, tmp_path / "problems.jsonl")
    predict = make_predict(arithmetic_solver, competition=competition)
    run = kaggle.run_local(predict, problems, competition, out_dir=tmp_path / "out", gateway="stand-in")
    assert run.submission == tmp_path / "out" / submission and run.gateway == "stand-in"
    table = (
        pd.read_csv(run.submission, dtype={"id": str})
        if submission.endswith("csv")
        else pd.read_parquet(run.submission)
    )
    assert sorted(table["id"]) == [row["id"] for row in PROBLEMS]
    assert all(COMPETITIONS[competition].accepts(int(answer)) for answer in table["answer"])
    # 222ccc: the solver's 1000 is out of range for aimo1/2 (fallback 0); its reference is 1000 mod 1000 = 0 for
    # aimo1 (correct), out of range for aimo2 (never correct), and 1000 for aimo3 (correct). 333ddd always fails.
    assert (run.score.correct, run.score.total) == (correct, 4)
    saved = json.loads((tmp_path / "out" / "score.json").read_text())
    assert saved["correct"] == correct and saved["total"] == 4 and saved["competition"] == competition
    assert pl.read_csv(tmp_path / "out" / "test.csv").columns == ["id", "problem"]


def test_local_mode_reads_csv_without_answers(tmp_path):
    csv = tmp_path / "test.csv"
    pl.DataFrame({"id": ["a", "b"], "problem": ["1+1", "2+2"]}).write_csv(csv)
    run = kaggle.run_local(make_predict(solver_ok, competition="aimo3"), csv, "aimo3", out_dir=tmp_path / "o")
    assert run.score is None and not (tmp_path / "o" / "score.json").exists()
    assert pl.read_parquet(run.submission)["answer"].to_list() == [7, 7]


def test_local_mode_rejects_bad_input(tmp_path):
    predict = make_predict(solver_ok)
    with pytest.raises(InputError, match="problem file not found"):
        kaggle.run_local(predict, tmp_path / "missing.jsonl", "aimo1", out_dir=tmp_path)
    problems = write_jsonl(PROBLEMS, tmp_path / "p.jsonl")
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
    problems = write_jsonl(PROBLEMS, tmp_path / "p.jsonl")
    out = tmp_path / "out"
    run = kaggle.run_local(make_predict(solver_ok, competition="aimo3"), problems, "aimo3", out_dir=out)
    server = sys.modules["kaggle_evaluation.aimo_3_inference_server"]
    assert run.gateway == "kaggle_evaluation" and server.CALLS[0][0] == "run_local_gateway"
    assert Path(server.CALLS[0][1][0]) == (out / "test.csv").resolve() and Path(server.CALLS[0][2]) == out.resolve()
    assert pl.read_parquet(run.submission).height == len(PROBLEMS)
    assert Path.cwd() != out.resolve()


@pytest.fixture
def exiting_kaggle_evaluation(tmp_path, monkeypatch):
    """A copy of kaggle_evaluation without its generated gRPC files: its `__init__` exits, as the real one does."""
    package = tmp_path / "broken_site" / "kaggle_evaluation"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import sys\nprint('kaggle_evaluation: generated files missing')\nsys.exit(1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "broken_site"))
    yield
    for name in [name for name in sys.modules if name.startswith("kaggle_evaluation")]:
        del sys.modules[name]


def test_kaggle_evaluation_that_exits_on_import_counts_as_missing(tmp_path, exiting_kaggle_evaluation):
    assert kaggle.import_server("aimo3") is None
    problems = write_jsonl(PROBLEMS, tmp_path / "p.jsonl")
    run = kaggle.run_local(make_predict(solver_ok, competition="aimo3"), problems, "aimo3", out_dir=tmp_path / "o")
    assert run.gateway == "stand-in" and pl.read_parquet(run.submission).height == len(PROBLEMS)
    with pytest.raises(InputError, match="not importable"):
        kaggle.run_local(make_predict(solver_ok), problems, "aimo2", out_dir=tmp_path, gateway="kaggle")


def test_gateway_kaggle_requires_the_real_package(tmp_path, monkeypatch):
    monkeypatch.setattr(kaggle, "import_server", lambda competition: None)
    problems = write_jsonl(PROBLEMS, tmp_path / "p.jsonl")
    with pytest.raises(InputError, match="not importable"):
        kaggle.run_local(make_predict(solver_ok), problems, "aimo2", out_dir=tmp_path, gateway="kaggle")


def test_rerun_serves_the_real_inference_server(monkeypatch, fake_kaggle_evaluation):
    monkeypatch.setenv(kaggle.RERUN_VARIABLE, "1")
    assert kaggle.serve(make_predict(solver_ok, competition="aimo2"), "aimo2") is None
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
        assert kaggle.serve(make_predict(solver_ok), "aimo1") is None
        assert sys.modules["aimo"].ANSWERS == [("000aaa", 7), ("111bbb", 7)]
    finally:
        sys.modules.pop("aimo", None)


def test_serve_without_problems_needs_the_competition_test_csv(monkeypatch, tmp_path):
    monkeypatch.delenv(kaggle.RERUN_VARIABLE, raising=False)
    monkeypatch.setattr(kaggle, "KAGGLE_INPUT", tmp_path)
    with pytest.raises(InputError, match="set PROBLEMS_FILE"):
        kaggle.serve(make_predict(solver_ok), "aimo3")
    folder = tmp_path / "ai-mathematical-olympiad-progress-prize-3"
    folder.mkdir()
    pl.DataFrame({"id": ["000aaa"], "problem": ["What is $1-1$?"]}).write_csv(folder / "test.csv")
    monkeypatch.chdir(tmp_path)
    run = kaggle.serve(make_predict(solver_ok, competition="aimo3"), "aimo3", gateway="stand-in")
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
    assert metadata["competition_sources"] == [COMPETITIONS["aimo1"].kaggle_slug]
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
        from numina_kit.protocols.tora import CODE_START, OUTPUT_START

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
        predict = make_predict(make_solver(generator, config, executor=executor), budget=budget)
        problems = write_jsonl(PROBLEMS[:3], tmp_path / "p.jsonl")
        run = kaggle.run_local(predict, problems, "aimo1", out_dir=tmp_path)
    finally:
        executor.close()
    table = pd.read_csv(run.submission, dtype={"id": str})
    assert len(table) == 3 and table["answer"].tolist() == [expected] * 3
