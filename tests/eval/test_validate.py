"""Tests for the validation suite (numina_kit.eval.suite, runs, comparison, validate): `python -m numina_kit validate`
over local sets with models served by a scripted OpenAI-compatible endpoint (real HTTP, numina_kit.testing).

Covers the report (models x sets with intervals, plot, paired comparisons with the number of problems they rest on),
resuming from a log cut by a crash (only the missing problems are asked for, nothing is solved twice), adding a model
without rerunning the others, refusing a log made with other settings, problems solved concurrently on an endpoint,
set loading (id column, subset, CSV), every malformed suite as a one-line error, and a Hub set offline as one line.
The end-to-end test with real tiny models, merges and a killed process is tests/training/test_merge.py.
"""

import csv
import json
import os
import subprocess
import sys
import threading
from contextlib import chdir
from pathlib import Path

import pytest
import yaml

from numina_kit.__main__ import main
from numina_kit.errors import InputError
from numina_kit.eval.suite import SuiteSet, load_set, read_suite
from numina_kit.testing import AnsweringModel, OpenAIServer


REPO = Path(__file__).resolve().parents[2]
INTEGERS = {f"What is {i} squared plus 100?": str(i * i + 100) + ".0" for i in range(6)}  # written as AMC writes it
FRACTIONS = {f"Write 1/{i} as a fraction.": f"\\frac{{1}}{{{i}}}" for i in range(2, 6)}
REFERENCE = INTEGERS | FRACTIONS


def answer_of(model: str, problem: str, seed: int) -> str:
    """`right` is always right, `wrong` never, `half` on even seeds only (so candidates of a problem disagree)."""
    right = REFERENCE[problem].removesuffix(".0")
    return {"right": right, "wrong": "999", "half": right if seed % 2 == 0 else "998"}[model]


class Models:
    """One endpoint serving the three scripted models, told apart by the request's `model` field.

    The first requests are held until more than one problem's candidates are in flight (or 10 s pass, once), so a
    suite run with `concurrency` 2 overlaps two problems on any machine, however loaded, and one that does not shows.
    """

    def __init__(self) -> None:
        self.models = {
            name: AnsweringModel(lambda p, s, name=name: answer_of(name, p, s)) for name in REFERENCE_MODELS
        }
        self._condition = threading.Condition()
        self._in_flight, self._held = 0, True

    def __call__(self, path: str, body: dict, headers: dict):
        with self._condition:
            self._in_flight += 1
            if self._in_flight > 3:  # 3 candidates a problem: a second problem is in flight
                self._held = False
                self._condition.notify_all()
            if self._held and not self._condition.wait_for(lambda: not self._held, timeout=10):
                self._held = False  # no overlap came: let everything through and let the test say so
        try:
            return self.models[body["model"]](path, body, headers)
        finally:
            with self._condition:
                self._in_flight -= 1


REFERENCE_MODELS = ("right", "wrong", "half")


@pytest.fixture
def sets(tmp_path: Path) -> dict[str, Path]:
    ints = tmp_path / "ints.jsonl"
    ints.write_text(
        "".join(
            json.dumps({"id": f"i{n}", "problem": p, "answer": a}) + "\n" for n, (p, a) in enumerate(INTEGERS.items())
        )
    )
    fractions = tmp_path / "fractions.csv"
    with fractions.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["key", "problem", "answer"])
        writer.writeheader()
        writer.writerows({"key": f"f{n}", "problem": p, "answer": a} for n, (p, a) in enumerate(FRACTIONS.items()))
    return {"ints": ints, "fractions": fractions}


def write_suite(path: Path, sets: dict[str, Path], url: str, models=REFERENCE_MODELS, **extra) -> Path:
    suite = {
        "seeds": [0, 1],
        "sctir": {"num_candidates": 3, "max_rounds": 2, "max_new_tokens": 64, "executor": {"warmup": False}},
        "sets": [
            {"name": "ints", "file": str(sets["ints"]), "rule": "aimo1"},
            {"name": "fractions", "file": str(sets["fractions"]), "rule": "general", "id_field": "key"},
        ],
        "models": [
            {"name": name, "endpoint": {"base_url": url, "model": name, "max_retries": 0}, "concurrency": 2}
            for name in models
        ],
        **extra,
    }
    path.write_text(yaml.safe_dump(suite))
    return path


def validate(suite: Path, out: Path, *extra: str) -> int:
    return main(["validate", "--suite", str(suite), "--out", str(out), *extra])


def log_rows(out: Path, model: str, set_name: str) -> list[dict]:
    return [
        json.loads(line) for line in (out / "runs" / model / set_name / "solutions.jsonl").read_text().splitlines()
    ]


def test_report_table_plot_and_paired_comparisons(tmp_path, sets, capsys):
    with OpenAIServer(Models()) as server:
        assert validate(write_suite(tmp_path / "suite.yaml", sets, server.url), tmp_path / "out") == 0
    out = tmp_path / "out"
    assert "report.md" in capsys.readouterr().out
    assert server.max_active > 3  # 3 candidates of a problem: concurrency 2 had two problems in flight
    summary = json.loads((out / "summary.json").read_text())
    figures = {(s["model"], s["set"]): s for s in summary["scores"]}
    assert (
        figures["right", "ints"]["maj@k"]["estimate"] == 1.0
        and figures["right", "fractions"]["pass@1"]["estimate"] == 1.0
    )
    assert figures["wrong", "ints"]["pass@k"]["estimate"] == 0.0
    # candidate seeds are seed + i: seed 0 gives 2 of 3 right (maj right), seed 1 gives 1 of 3 (maj wrong)
    assert figures["half", "ints"]["maj@k"]["estimate"] == 0.5 and figures["half", "ints"]["pass@1"]["estimate"] == 0.5
    assert figures["half", "fractions"]["n"] == 4 and figures["half", "fractions"]["total"] == 4
    pooled = next(
        c
        for c in summary["comparisons"]
        if (c["a"], c["b"], c["metric"], c["set"]) == ("right", "wrong", "maj@k", "all sets")
    )
    assert pooled["n"] == 10 and pooled["a_better"] == 10 and pooled["p_value"] == pytest.approx(2 / 2**10)
    assert len(summary["comparisons"]) == 3 * 2 * 3  # 3 pairs x 2 figures x (2 sets + all sets)
    report = (out / "report.md").read_text()
    assert "| right | 100.0% [100.0, 100.0] | 100.0% [100.0, 100.0] |" in report
    assert (
        "| right | wrong | all sets | 10 | 100.0% | 0.0% | +100.0 pts [+100.0, +100.0] | 10 | 0 | 0.00195 |" in report
    )
    assert (out / "suite.png").read_bytes()[:4] == b"\x89PNG"
    assert "| i0 | 100.0 |" in (out / "runs" / "half" / "ints" / "report.md").read_text()  # each model's own report
    row = log_rows(out, "half", "fractions")[0]
    assert row["result"]["labels"] and len(row["solution"]["candidates"]) == 3  # every candidate is kept


def test_a_crash_resumes_where_it_stopped_and_a_new_model_runs_alone(tmp_path, sets):
    suite, out = write_suite(tmp_path / "suite.yaml", sets, "unused", models=("right", "half")), tmp_path / "out"
    served = Models()
    with OpenAIServer(served) as server:
        suite = write_suite(tmp_path / "suite.yaml", sets, server.url, models=("right", "half"))
        assert validate(suite, out) == 0
        before = log_rows(out, "half", "ints")
        assert len(before) == 12  # 6 problems x 2 seeds
        # a crash: the log keeps 5 rows and half of the 6th
        log = out / "runs" / "half" / "ints" / "solutions.jsonl"
        lines = log.read_text().splitlines(keepends=True)
        log.write_text("".join(lines[:5]) + lines[5][:40])
        asked = sum(served.models["half"].problems.values())
        assert validate(suite, out) == 0
        assert sum(served.models["half"].problems.values()) - asked == 7 * 3  # 7 (problem, seed) x 3 candidates
        after = log_rows(out, "half", "ints")
        assert after[:5] == before[:5] and len(after) == 12
        assert {(r["id"], r["seed"]) for r in after} == {(r["id"], r["seed"]) for r in before}
        # a new model: the others are not asked again
        asked = {name: sum(model.problems.values()) for name, model in served.models.items()}
        assert validate(write_suite(tmp_path / "suite.yaml", sets, server.url), out) == 0
        now = {name: sum(model.problems.values()) for name, model in served.models.items()}
    assert now["right"] == asked["right"] and now["half"] == asked["half"] and now["wrong"] == 10 * 2 * 3
    assert "| wrong |" in (out / "report.md").read_text()


def test_a_log_made_with_other_settings_is_refused(tmp_path, sets, capsys):
    with OpenAIServer(Models()) as server:
        suite = write_suite(tmp_path / "suite.yaml", sets, server.url, models=("right",))
        assert validate(suite, tmp_path / "out") == 0
        text = suite.read_text().replace("num_candidates: 3", "num_candidates: 4")
        suite.write_text(text)
        assert validate(suite, tmp_path / "out") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the first run's progress bars
    assert error.startswith("error: ") and "other settings (sctir changed)" in error


def test_report_only_shows_partial_results_with_their_counts(tmp_path, sets):
    with OpenAIServer(Models()) as server:
        suite = write_suite(tmp_path / "suite.yaml", sets, server.url, models=("right", "wrong"))
        assert validate(suite, tmp_path / "out", "--only", "right") == 0
    log = tmp_path / "out" / "runs" / "right" / "ints" / "solutions.jsonl"
    kept = [
        line
        for line in log.read_text().splitlines(keepends=True)
        if json.loads(line)["id"] in ("i0", "i1", "i2", "i3")
        or json.loads(line)["id"] == "i4"
        and json.loads(line)["seed"] == 0
    ]
    log.write_text("".join(kept))  # problems i0..i3 under both seeds, i4 under one
    assert validate(suite, tmp_path / "out", "--report-only") == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| right | 100.0% [100.0, 100.0] (4/6) |" in report and "| wrong | not run | not run |" in report
    assert "| right | wrong | ints | 0 |" in report  # nothing to compare yet, and the report says so


def test_load_set_id_column_and_reproducible_subset(sets):
    every = load_set(SuiteSet(name="f", file=str(sets["fractions"]), rule="general", id_field="key"))
    assert [p.id for p in every] == ["f0", "f1", "f2", "f3"] and every[0].answer == "\\frac{1}{2}"
    subset = SuiteSet(name="i", file=str(sets["ints"]), rule="aimo1", subset=3, subset_seed=5)
    chosen = load_set(subset)
    assert len(chosen) == 3 and chosen == load_set(subset) and [p.id for p in chosen] == sorted(p.id for p in chosen)
    assert chosen != load_set(SuiteSet(name="i", file=str(sets["ints"]), rule="aimo1", subset=3, subset_seed=6))
    kept = load_set(
        SuiteSet(name="f", file=str(sets["fractions"]), rule="general", id_field="key", where={"key": ["f1", "f3"]})
    )
    assert [p.id for p in kept] == ["f1", "f3"]
    with pytest.raises(InputError, match="no problems in .* key in"):
        load_set(SuiteSet(name="f", file=str(sets["fractions"]), rule="general", where={"key": ["zz"]}))


def test_the_demo_suite_splits_the_demo_problems_into_two_sets():
    demo = read_suite(REPO / "configs" / "suites" / "demo.yaml", extra_models=["models/m"])
    with chdir(REPO):
        sizes = {s.name: len(load_set(s)) for s in demo.sets}
    assert sizes == {"remainders": 30, "counting": 20}


def test_the_local_suite_reads_numinas_sets_from_local_copies(shared_data, tmp_path):
    local = read_suite(REPO / "configs" / "suites" / "local.yaml", extra_models=["models/m"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval").symlink_to(shared_data)  # the suite names data/eval/ under the working directory
    with chdir(tmp_path):
        sizes = {s.name: len(load_set(s)) for s in local.sets}
    assert sizes == {"aime2022": 30, "aime2023": 30, "amc2022": 43, "math500": 100}


BASE = {"sets": [{"name": "s", "file": "x.jsonl", "rule": "aimo1"}], "models": ["models/a"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sets": [{"name": "s", "file": "x.jsonl", "rule": "aimo9"}]}, "unknown competition 'aimo9'"),
        ({"sets": [{"name": "s", "file": "x", "hub": "a/b", "rule": "aimo1"}]}, "exactly one of file"),
        ({"sets": [{"name": "s", "file": "x", "rule": "aimo1", "subsets": 3}]}, "unknown key(s) subsets"),
        ({"sets": [{"name": "s/t", "file": "x", "rule": "aimo1"}]}, "must be letters, digits"),
        ({"sets": []}, "no sets"),
        ({"models": []}, "no models"),
        ({"models": ["a/m", "b/m"]}, "model name(s) m used twice"),
        (
            {"models": [{"name": "m", "endpoint": {"base_url": "http://x/v1", "modle": "m"}}]},
            "unknown endpoint key(s) modle",
        ),
        ({"models": [{"name": "m", "path": "models/m", "concurrency": 4}]}, "concurrency > 1 needs an endpoint"),
        ({"models": [{"name": "m"}]}, "exactly one of path, hub or endpoint"),
        ({"sets": [{"name": "s", "file": "x", "rule": "aimo1", "where": {"level": 5}}]}, "where maps a field"),
        ({"seeds": [1, 1]}, "distinct integers"),
        ({"baseline": "zz"}, "baseline 'zz' is not one of the models"),
        ({"sctir": {"num_candidate": 3}}, "unknown SCTIRConfig key(s) num_candidate"),
        ({"extra": 1}, "unknown key(s) extra"),
    ],
)
def test_malformed_suites_are_one_line_errors(tmp_path, change, message):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(BASE | change))
    with pytest.raises(InputError, match="^[^\n]*$") as caught:
        read_suite(path)
    assert message in str(caught.value)


def test_models_in_one_line_and_from_the_command_line(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(BASE | {"models": ["models/sft", {"hub": "org/instruct"}], "baseline": "sft"}))
    suite = read_suite(path, extra_models=["models/merged/"])
    assert [(m.name, m.path, m.hub) for m in suite.models] == [
        ("sft", "models/sft", None), ("instruct", None, "org/instruct"), ("merged", "models/merged/", None)
    ]  # fmt: skip
    assert suite.pairs() == [("instruct", "sft"), ("merged", "sft")]


def test_a_missing_model_folder_fails_before_anything_runs(tmp_path, sets, capsys):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"sets": [{"name": "s", "file": str(sets["ints"]), "rule": "aimo1"}]}))
    assert validate(path, tmp_path / "out", "--model", str(tmp_path / "nope")) == 2
    assert "model path not found" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


def test_the_default_suite_is_numinas_and_a_hub_set_offline_is_one_line(tmp_path):
    suite = read_suite(REPO / "configs" / "suites" / "numina.yaml", extra_models=["models/m"])
    assert [(s.hub, s.rule) for s in suite.sets] == [
        ("AI-MO/aimo-validation-aime", "aimo1"), ("AI-MO/aimo-validation-amc", "aimo1"), ("HuggingFaceH4/MATH-500", "general")
    ]  # fmt: skip
    assert suite.sctir.num_candidates == 48 and suite.sctir.max_rounds == 4
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "numina_kit", "validate", "--model", "models/m", "--out", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: set aime: could not load AI-MO/aimo-validation-aime")
