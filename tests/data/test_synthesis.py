"""Tests for TIR data generation (numina_kit.data.synthesis, numina_kit.data.ledger, training/generate_tir.py).

A scripted teacher model (`numina_kit.testing.TIRModel`) answers over real HTTP; each problem's tag picks
its behaviour: right, always wrong, right only on the 2nd or 3rd pass, no code, crashing code, a fraction answer
(checked by equivalence), and a first request that fails (429, 500, malformed reply, hang past the client timeout).
Covers: exactly the matching solutions are written, in NuminaMath-TIR schema; statistics; resuming skips finished
problems; crash repair of the journal and output; decontamination before any call; no-answer problems skipped;
a fatal teacher error stops the run; the script's recipe/flags; the output loads through training/components.py;
an in-process model as teacher (called by one thread at a time); per-call seeds, reproducible across runs.
Slow: 200 problems through the script with a SIGKILL mid-run and a rerun; the output trains through sft.py.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from numina_kit.data.decontamination import build_index
from numina_kit.data.jsonl import JsonlAppender, read_jsonl
from numina_kit.data.problems import Problem
from numina_kit.data.synthesis import OutputPaths, SynthesisConfig, attempt_seed, synthesize
from numina_kit.data.teacher import HTTPTeacher, TeacherConfig, TeacherError
from numina_kit.errors import InputError
from numina_kit.models.base import Completion, SamplingParams
from numina_kit.protocols.tora import render_messages
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.testing import TIR_KINDS, OpenAIServer, Reply, TIRModel, make_tir_problem


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "training" / "generate_tir.py"

KINDS = TIR_KINDS
make_problem = make_tir_problem


def make_problems(n: int) -> list[Problem]:
    kinds = list(KINDS)
    return [make_problem(i, kinds[i % len(kinds)]) for i in range(n)]


def expected_kept(problems: list[Problem]) -> dict[str, int]:
    """Problem id -> pass it is kept at."""
    kept = {}
    for p in problems:
        kind = p.problem.split("[")[1].rstrip("]")
        if KINDS[kind][0] is not None:
            kept[p.id] = KINDS[kind][0]
    return kept


def http_teacher(url: str, **overrides) -> HTTPTeacher:
    settings = dict(base_url=url, timeout_s=1.0, max_retries=3, backoff_s=0.01, backoff_max_s=0.05)
    return HTTPTeacher(TeacherConfig(**(settings | overrides)))


def read_rows(path: Path) -> list[dict]:
    return read_jsonl(path)


def read_records(path: Path, **options) -> list[dict]:
    return read_jsonl(path, appended=True, **options)


FAST = SynthesisConfig(concurrency=6, seed=1)


@pytest.fixture(scope="module")
def sandbox():
    """One sandbox for the in-process runs of this file (its workers take a second or two to start)."""
    with Sandbox(ExecutorConfig(num_workers=2)) as shared:
        yield shared


def test_run_writes_exactly_the_matching_solutions(tmp_path: Path, sandbox: Sandbox) -> None:
    problems = make_problems(2 * len(KINDS))
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    with OpenAIServer(TIRModel()) as server:
        stats = synthesize(problems, http_teacher(server.url), FAST, paths, sandbox=sandbox)

    kept = expected_kept(problems)
    rows = read_rows(paths.output)
    by_problem = {p.problem: p for p in problems}
    assert sorted(by_problem[r["problem"]].id for r in rows) == sorted(kept)
    for row in rows:
        assert set(row) == {"problem", "solution", "messages"}
        assert row["messages"] == render_messages(row["problem"], row["solution"])
        assert row["solution"].startswith("Let me add.\n```python\n") and "```output\n" in row["solution"]
        assert row["solution"].endswith("$.")
    # the statistics agree with the script of every kind
    attempts = {p.id: KINDS[p.problem.split("[")[1].rstrip("]")][1] for p in problems}
    code_runs = {p.id: KINDS[p.problem.split("[")[1].rstrip("]")][2] for p in problems}
    assert stats["problems"] == stats["problems_tried"] == len(problems)
    assert stats["problems_kept"] == len(kept) == len(rows)
    assert stats["kept_per_pass"] == {str(k): sum(v == k for v in kept.values()) for k in (1, 2, 3)}
    assert stats["problems_failed_all_passes"] == len(problems) - len(kept) and stats["problems_pending"] == 0
    assert stats["attempts"] == sum(attempts.values())
    assert stats["code_runs"] == sum(attempts[i] * code_runs[i] for i in attempts)
    assert stats["teacher_calls"] == stats["attempts"] + stats["code_runs"]  # code: 2 calls, no code: 1 call
    assert stats["code_errors"] == 3 * sum("[crash]" in p.problem for p in problems)
    assert stats["outcomes"]["no code"] == 3 * sum("[nocode]" in p.problem for p in problems)
    assert stats["completion_tokens"] > 0 and stats["prompt_tokens"] == 10 * stats["teacher_calls"]
    teacher = stats["this_run"]["teacher"]
    errors = dict(teacher["errors"])
    timeouts = errors.pop("timeout")  # at least the 2 hangs; a loaded machine may add some
    assert errors == {"http_429": 2, "http_500": 2, "malformed": 2} and timeouts >= 2
    assert teacher["failures"] == 0 and stats["this_run"]["teacher_failures"] == 0
    assert json.loads(paths.stats.read_text()) == stats
    assert stats["removed_by_decontamination"] == 0 and stats["skipped_no_answer"] == 0


def test_rerun_skips_finished_problems_and_resumes_passes(tmp_path: Path, sandbox: Sandbox) -> None:
    problems = make_problems(len(KINDS))
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    model = TIRModel()
    with OpenAIServer(model) as server:
        first = synthesize(
            problems, http_teacher(server.url), SynthesisConfig(passes=1, seed=1), paths, sandbox=sandbox
        )
        assert first["problems_pending"] == 0 and first["kept_per_pass"] == {"1": len(KINDS) - 5}
        second = synthesize(problems, http_teacher(server.url), SynthesisConfig(passes=1), paths, sandbox=sandbox)
        assert second["this_run"]["teacher"]["requests"] == 0  # everything was finished: no call at all
        assert second["this_run"]["skipped_finished"] == len(KINDS) and second["attempts"] == first["attempts"]
        # more passes: only the failed problems are tried again, starting at pass 2
        stats = synthesize(
            problems, http_teacher(server.url), SynthesisConfig(passes=3, seed=1), paths, sandbox=sandbox
        )
    kept = expected_kept(problems)
    assert stats["kept_per_pass"] == {str(k): sum(v == k for v in kept.values()) for k in (1, 2, 3)}
    assert stats["this_run"]["skipped_finished"] == len(kept) - 2
    assert len(read_rows(paths.output)) == len(kept)
    assert Counter(r["id"] for r in read_records(paths.journal))["p003"] == 3  # "never": exactly 3 attempts


def test_crash_repair_restores_kept_rows_and_cuts_partial_lines(tmp_path: Path, sandbox: Sandbox) -> None:
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    problem = make_problem(0, "right")
    record = {"id": problem.id, "pass": 1, "outcome": "kept", "problem": problem.problem, "solution": "S"}
    with JsonlAppender(paths.journal) as journal:
        journal.append(record)
    with paths.journal.open("a") as handle:
        handle.write('{"id": "p001", "pass": 1, "outc')  # killed while writing
    paths.output.write_text("")  # killed before the kept row was written
    with OpenAIServer(TIRModel()) as server:
        stats = synthesize([problem, make_problem(1, "right")], http_teacher(server.url), FAST, paths, sandbox=sandbox)
        assert all("Item 0" not in body["prompt"] for _, body, _ in server.requests)
    assert stats["this_run"]["restored_rows"] == 1 and stats["problems_kept"] == 2
    assert [r["solution"] for r in read_rows(paths.output)][0] == "S"
    assert [r["id"] for r in read_records(paths.journal)] == ["p000", "p001"]


def test_foreign_output_file_is_refused(tmp_path: Path, sandbox: Sandbox) -> None:
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    paths.output.write_text('{"problem": "x", "solution": "y", "messages": []}\n')
    with pytest.raises(InputError, match="not this run's output"):
        synthesize([make_problem(0, "right")], http_teacher("http://127.0.0.1:9/v1"), FAST, paths, sandbox=sandbox)


def test_corrupt_journal_line_is_an_input_error(tmp_path: Path, sandbox: Sandbox) -> None:
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    paths.journal.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        synthesize([make_problem(0, "right")], http_teacher("http://127.0.0.1:9/v1"), FAST, paths, sandbox=sandbox)


def test_decontamination_and_missing_answers_before_any_call(tmp_path: Path, sandbox: Sandbox) -> None:
    problems = make_problems(6)
    planted = Problem(
        id="leak",
        problem="Find the number of ordered pairs of positive integers (m, n) such that "
        "m^2 n = 20^{20} [right] add 1 and 2",
        answer="3",
    )
    unanswered = Problem(id="noref", problem="add 5 and 6 [right]", answer=None)
    index = build_index(["Find the number of ordered pairs of positive integers $(m,n)$ such that $m^2n = 20^{20}$."])
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    with OpenAIServer(TIRModel()) as server:
        stats = synthesize(
            [*problems, planted, unanswered], http_teacher(server.url), FAST, paths, eval_index=index, sandbox=sandbox
        )
        prompts = [body["prompt"] for _, body, _ in server.requests]
    assert stats["removed_by_decontamination"] == 1 and stats["removed_ids"] == ["leak"]
    assert stats["skipped_no_answer"] == 1 and stats["input_problems"] == 8 and stats["problems"] == 6
    assert not any("ordered pairs" in p or "add 5 and 6" in p for p in prompts)


def test_fatal_teacher_error_stops_the_run_and_keeps_the_journal(tmp_path: Path, sandbox: Sandbox) -> None:
    def respond(path: str, body: dict, headers: dict) -> Reply:
        return Reply(status=401, body=b'{"error": "invalid api key"}')

    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    with OpenAIServer(respond) as server, pytest.raises(TeacherError, match="HTTP 401.*rerun to resume"):
        synthesize(make_problems(30), http_teacher(server.url), SynthesisConfig(concurrency=2), paths, sandbox=sandbox)
    assert len(server.requests) <= 2  # stopped at once, no retries
    stats = json.loads(paths.stats.read_text())
    assert stats["problems_pending"] == 30 and stats["attempts"] == 0


def test_teacher_down_stops_after_consecutive_failures(tmp_path: Path, sandbox: Sandbox) -> None:
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    config = SynthesisConfig(concurrency=2, max_consecutive_teacher_failures=3)
    with OpenAIServer(lambda *_: Reply(status=503, body=b"down")) as server, pytest.raises(TeacherError):
        synthesize(make_problems(40), http_teacher(server.url, max_retries=1), config, paths, sandbox=sandbox)
    assert 3 * 2 <= len(server.requests) <= 4 * 2  # 2 tries per attempt, 3-4 attempts before it stops


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def write_problems(problems: list[Problem], path: Path) -> Path:
    path.write_text("".join(json.dumps(p.__dict__) + "\n" for p in problems))
    return path


def test_script_with_recipe_and_flags(tmp_path: Path) -> None:
    problems = make_problems(len(KINDS))
    eval_file = write_problems(
        [Problem("e", f"Warm up: {problems[0].problem} and think hard about it", "1")], tmp_path / "eval.jsonl"
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"problems: {write_problems(problems, tmp_path / 'in.jsonl')}\npasses: 3\nconcurrency: 4\n"
        f"timeout_s: 1.0\nbackoff_s: 0.01\nbackoff_max_s: 0.05\nprogress: false\nngram: 5\n"
    )
    with OpenAIServer(TIRModel()) as server:
        done = run_script(
            "--config",
            str(recipe),
            "--base_url",
            server.url,
            "--output",
            str(tmp_path / "o.jsonl"),
            "--eval_sets",
            str(eval_file),
        )
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "o.stats.json").read_text())
    assert stats["removed_by_decontamination"] == 1
    assert stats["problems_kept"] == len(expected_kept(problems[1:])) == len(read_rows(tmp_path / "o.jsonl"))
    assert f"kept {stats['problems_kept']} of {len(problems) - 1} problems" in done.stdout


@pytest.mark.parametrize(
    ("recipe", "flags", "message"),
    [
        ("problems: x.jsonl\nmax_roundz: 3\n", [], "Unknown arguments from config file"),
        ("problems: missing.jsonl\n", [], "problem file not found"),
        ("problems: in.jsonl\n", ["--teacher", "magic"], "teacher must be"),
        ("problems: in.jsonl\n", ["--api_key_env", "NO_SUCH_KEY_VAR"], "NO_SUCH_KEY_VAR"),
        ("problems: in.jsonl\n", ["--passes", "0"], "passes must be"),
    ],
)
def test_script_input_errors(tmp_path: Path, recipe: str, flags: list[str], message: str) -> None:
    write_problems(make_problems(2), tmp_path / "in.jsonl")
    (tmp_path / "r.yaml").write_text(recipe.replace("in.jsonl", str(tmp_path / "in.jsonl")))
    done = run_script("--config", str(tmp_path / "r.yaml"), "--output", str(tmp_path / "o.jsonl"), *flags)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("recipe", sorted((REPO / "training" / "recipes" / "generate_tir").glob("*.yaml")), ids=str)
def test_shipped_recipes_parse(recipe: Path) -> None:
    sys.path.insert(0, str(REPO / "training"))
    try:
        from generate_tir import make_parser
    finally:
        sys.path.remove(str(REPO / "training"))
    args, config, teacher = make_parser().parse_args_and_config(["--config", str(recipe), "--passes", "2"])
    assert config.passes == 2 and args.problems and args.eval_sets and args.ngram == 10
    assert teacher.max_concurrency == config.concurrency and teacher.api in ("completions", "chat")


def test_output_loads_through_training_data_loading(tmp_path: Path, sandbox: Sandbox) -> None:
    sys.path.insert(0, str(REPO / "training"))
    try:
        from data import DataArguments, load_rows  # training/data.py
    finally:
        sys.path.remove(str(REPO / "training"))
    from numina_kit.data.problems import to_messages

    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    with OpenAIServer(TIRModel()) as server:
        synthesize(make_problems(len(KINDS)), http_teacher(server.url), FAST, paths, sandbox=sandbox)
    rows = load_rows(DataArguments(dataset_name=str(paths.output)))["train"]
    assert rows.num_rows == len(read_rows(paths.output)) > 0
    assert all(to_messages(row)[1]["content"].endswith("$.") for row in rows)


class InProcessTIRModel:
    """`TIRModel` behind the in-process `Generator` interface (stop string kept in the text, as the contract says)."""

    def __init__(self) -> None:
        self.model = TIRModel()
        self.calls: list[tuple[int, int | None]] = []  # (prompts, seed) of every call
        self.active = 0
        self.max_active = 0

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.calls.append((len(prompts), params.seed))
        completions = []
        for prompt in prompts:
            choice = self.model("/v1/completions", {"prompt": prompt}, {}).body["choices"][0]
            text = choice["text"] + (choice["stop_reason"] or "")
            completions.append(Completion(text=text, finish_reason="stop", num_tokens=len(text)))
        time.sleep(0.001)  # long enough for a second thread to enter, were calls not serialized
        self.active -= 1
        return completions

    def count_tokens(self, text: str) -> int:
        return len(text)


def test_in_process_generator_teacher(tmp_path: Path, sandbox: Sandbox) -> None:
    """A model object is a teacher as it is: one attempt at a time calls it, through the same `solve`."""
    problems = [p for p in make_problems(3 * len(KINDS)) if "[e" not in p.problem and "[hang]" not in p.problem]
    problems = [p for p in problems if "[malformed]" not in p.problem]
    generator = InProcessTIRModel()
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    stats = synthesize(problems, generator, SynthesisConfig(concurrency=8), paths, sandbox=sandbox)
    kept = expected_kept(problems)
    assert stats["problems_kept"] == len(kept) == len(read_rows(paths.output))
    assert stats["kept_per_pass"] == {str(k): sum(v == k for v in kept.values()) for k in (1, 2, 3)}
    assert generator.max_active == 1  # never called from two threads at once
    assert sum(n for n, _ in generator.calls) == stats["teacher_calls"] and stats["this_run"]["teacher"] == {}


def test_seeds_differ_per_call_and_repeat_across_runs(tmp_path: Path, sandbox: Sandbox) -> None:
    problems = [make_problem(i, kind) for i, kind in enumerate(["right", "pass2", "never", "right"])]
    seeds = []
    for run in range(2):
        generator = InProcessTIRModel()
        config = SynthesisConfig(concurrency=1, seed=11)
        synthesize(problems, generator, config, OutputPaths.beside(tmp_path / f"{run}.jsonl"), sandbox=sandbox)
        seeds.append(sorted(seed for _, seed in generator.calls))
    assert seeds[0] == seeds[1] and len(set(seeds[0])) == len(seeds[0]) == 2 * (1 + 2 + 3 + 1)
    assert attempt_seed(11, "p000", 1) in seeds[0] and attempt_seed(None, "p000", 1) is None


@pytest.mark.slow
def test_script_with_an_in_process_model(tmp_path: Path) -> None:
    from numina_kit.models.demo import save_demo_model

    problems = make_problems(4)
    model = save_demo_model(tmp_path / "model", [p.problem for p in problems] + ["```python\nprint(1)\n```"])
    done = run_script(
        "--problems", str(write_problems(problems, tmp_path / "in.jsonl")), "--output", str(tmp_path / "o.jsonl"),
        "--teacher", "generator", "--model_path", str(model), "--max_new_tokens", "16", "--passes", "2",
        "--progress", "false", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((tmp_path / "o.stats.json").read_text())
    # an untrained model writes noise: every problem is tried twice and nothing is kept
    assert stats["problems_tried"] == 4 and stats["attempts"] == 8 and stats["teacher_calls"] >= 8
    assert stats["problems_kept"] == 0 and (tmp_path / "o.jsonl").read_text() == ""


@pytest.mark.slow
def test_200_problems_survive_kill_and_rerun(tmp_path: Path) -> None:
    problems = make_problems(200)
    planted = [
        Problem(f"leak{i}", f"Contest problem {i}: {EVAL_TEXT} add 1 and {i} [right]", str(1 + i)) for i in range(5)
    ]
    source = write_problems(problems[:100] + planted + problems[100:], tmp_path / "in.jsonl")
    eval_file = write_problems([Problem("e", EVAL_TEXT, "0")], tmp_path / "eval.jsonl")
    output = tmp_path / "tir.jsonl"
    args = [
        "--problems",
        str(source),
        "--output",
        str(output),
        "--eval_sets",
        str(eval_file),
        "--concurrency",
        "4",
        "--timeout_s",
        "0.5",
        "--backoff_s",
        "0.01",
        "--backoff_max_s",
        "0.05",
        "--progress",
        "false",
        "--seed",
        "3",
    ]
    journal = output.with_suffix(".journal.jsonl")
    with OpenAIServer(TIRModel(delay_s=0.01)) as server:
        args += ["--base_url", server.url]
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= 80:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_at = len(read_records(journal, repair=False))
        assert 80 <= killed_at < 400
        done = run_script(*args, timeout=300)
        assert done.returncode == 0, done.stderr
        assert not any("Contest problem" in body["prompt"] for _, body, _ in server.requests)

    kept = expected_kept(problems)
    rows = read_rows(output)
    ids = [next(p.id for p in problems if p.problem == r["problem"]) for r in rows]
    assert len(ids) == len(set(ids)), "duplicate solutions"
    assert sorted(ids) == sorted(kept), "lost or wrong solutions"
    records = read_records(journal)
    attempts = Counter(r["id"] for r in records)
    for p in problems:
        kind = p.problem.split("[")[1].rstrip("]")
        assert attempts[p.id] <= KINDS[kind][1], p.id  # no pass repeated after the kill
        if KINDS[kind][0] is None:
            assert attempts[p.id] == 3, p.id
    stats = json.loads(output.with_suffix(".stats.json").read_text())
    assert stats["input_problems"] == 205 and stats["removed_by_decontamination"] == 5
    assert stats["problems"] == stats["problems_tried"] == 200 and stats["problems_pending"] == 0
    assert stats["problems_kept"] == len(kept) and sum(stats["kept_per_pass"].values()) == len(kept)
    assert stats["problems_failed_all_passes"] == 200 - len(kept)
    assert stats["attempts"] == len(records) and stats["this_run"]["skipped_finished"] > 0


EVAL_TEXT = "Let ABC be a triangle whose circumcircle has radius eleven and whose incircle touches BC at D."


@pytest.mark.slow
def test_output_trains_through_sft_tiny_recipe(tmp_path: Path, sandbox: Sandbox) -> None:
    paths = OutputPaths.beside(tmp_path / "tir.jsonl")
    with OpenAIServer(TIRModel()) as server:
        synthesize(make_problems(48), http_teacher(server.url), FAST, paths, sandbox=sandbox)
    out = tmp_path / "model"
    done = subprocess.run(
        [
            sys.executable,
            "training/sft.py",
            "--config",
            "training/recipes/tiny/sft.yaml",
            "--dataset_name",
            str(paths.output),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--max_steps",
            "2",
            "--held_out_problems",
            "",
            "--logging_steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "config.json").exists()
