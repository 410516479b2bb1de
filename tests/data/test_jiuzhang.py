"""Tests for numina_kit.data.jiuzhang and training/jiuzhang_write.py: JiuZhang problem writing as a resumable run.

The writer is the toy's scripted teacher (`numina_kit.data.toy.ScriptedTeacher`, a stand-in for GPT-4) over real
HTTP, or an in-process scripted model driven through the TIR loop. Covers: kept rows and the reasons for dropped
ones (malformed replies, boxed answers the code contradicts); claimed outputs replaced by the sandbox's; both row
kinds and question styles; decontamination of texts and problems; near duplicates; the TIR loop for tool
requests; a failing writer records nothing; two shards merged equal one run; the script's recipe keys; a SIGKILL
mid-run and a rerun lose and duplicate nothing.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from numina_kit.data.corpus import Text, chunk_documents
from numina_kit.data.decontamination import build_index
from numina_kit.data.jiuzhang import WritingConfig, merge_shards, plan_requests, write_problems
from numina_kit.data.jsonl import read_jsonl
from numina_kit.data.ledger import OutputPaths
from numina_kit.data.stages import split_blocks
from numina_kit.data.teacher import HTTPTeacher, TeacherConfig, TeacherError
from numina_kit.data.toy import ScriptedTeacher, make_corpus
from numina_kit.errors import InputError
from numina_kit.models.base import Completion, SamplingParams
from numina_kit.protocols.tora import OUTPUT_START, STOP
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.testing import OpenAIServer, Reply


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "training" / "jiuzhang_write.py"
TEXTS = make_corpus(60, relevant_share=0.2, seed=5)
AFTER = {"tool_execution": "after", "batch_size": 16}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(ExecutorConfig(timeout=5.0, stateful=True, num_workers=2)) as shared:
        yield shared


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(ScriptedTeacher()) as running:
        yield running


def teacher(url: str, **overrides) -> HTTPTeacher:
    return HTTPTeacher(TeacherConfig(**({"base_url": url, "max_concurrency": 8, "backoff_s": 0.01} | overrides)))


def run(tmp_path: Path, server, sandbox, name: str = "rows", texts=TEXTS, index=None, **config) -> tuple[dict, list]:
    paths = OutputPaths.beside(tmp_path / f"{name}.jsonl")
    stats = write_problems(
        texts, teacher(server.url), WritingConfig(**(AFTER | config)), paths, sandbox=sandbox, eval_index=index
    )
    return stats, read_jsonl(paths.output)


def real_outputs_only(solution: str, sandbox: Sandbox) -> bool:
    """Every output block of `solution` is what its code block prints, re-run here."""
    pieces = split_blocks(solution)
    for i, (kind, text) in enumerate(pieces):
        if kind == "code":
            assert pieces[i + 1][0] == "output"
            if sandbox.run(text).output.strip() != pieces[i + 1][1].strip():
                return False
    return True


def test_teacher_rows_are_checked_and_counted(tmp_path, server, sandbox):
    stats, rows = run(tmp_path, server, sandbox, rows="request")
    journal = read_jsonl(tmp_path / "rows.journal.jsonl")
    assert stats["requests"] == len(journal) == len(TEXTS) == stats["planned"] and stats["pending"] == 0
    assert stats["kept"] == len(rows) and stats["kept"] + sum(stats["dropped"].values()) == len(TEXTS)
    assert (
        {"no [Solution]", "\\boxed disagrees with the output"}
        <= set(stats["dropped"])
        <= {"no [Solution]", "\\boxed disagrees with the output", "near duplicate"}
    )
    assert stats["kept_claims_wrong"] > 0  # the teacher's wrong claims were replaced, not kept
    malformed = [r for r in journal if r["outcome"] == "no [Solution]"]  # a dropped reply is kept to be read
    assert malformed and all(r["reply"].startswith("[Problem]") and "[Solution]" not in r["reply"] for r in malformed)
    assert sum(stats["kept_per_stage"].values()) == len(rows)
    for row in rows:
        assert set(row) == {"input", "output", "text_id", "stage"}
        assert row["input"].endswith("## New Problem\n") and row["output"].startswith("[Problem]\n")
        assert real_outputs_only(row["output"].split("[Solution]\n", 1)[1], sandbox)


@pytest.mark.parametrize(
    ("style", "prefix"), [("tora", "### Problem: What"), ("jiuzhang", "## Question\nWhat")], ids=["tora", "jiuzhang"]
)
def test_problem_rows(tmp_path, server, sandbox, style, prefix):
    texts = [t for t in TEXTS if "remainder" in t.text][:6]
    _, rows = run(tmp_path, server, sandbox, texts=texts, rows="problem", style=style)
    assert rows and all(r["input"].startswith(prefix) and "```python" in r["output"] for r in rows)
    assert all(r["input"].endswith("### Solution: " if style == "tora" else "## Code Solution\n") for r in rows)
    assert all(real_outputs_only(r["output"], sandbox) for r in rows)  # what the model claimed was replaced


def test_decontamination_of_texts_and_problems(tmp_path, server, sandbox):
    leaked = TEXTS[0]
    problem_of_text1 = "What is the"  # every toy problem starts so: a short evaluation text contained in all of them
    index = build_index([leaked.text])
    stats, rows = run(tmp_path, server, sandbox, texts=TEXTS[:10], index=index, rows="problem")
    assert stats["texts_removed_by_decontamination"] == 1 and stats["planned"] == 9
    assert not any(r["text_id"] == leaked.id for r in rows)
    stats, rows = run(tmp_path, server, sandbox, "b", texts=TEXTS[1:10], index=build_index([problem_of_text1]))
    assert stats["dropped"]["overlaps an evaluation set"] >= 1 and all("What is the" not in r["input"] for r in rows)


def test_near_duplicates_are_dropped(tmp_path, server, sandbox):
    # the scripted teacher writes the same problem for every sample of a text: the second is a copy
    stats, rows = run(tmp_path, server, sandbox, texts=TEXTS[:8], samples_per_text=2)
    assert stats["dropped"]["near duplicate"] >= 6 and len({r["text_id"] for r in rows}) == len(rows)


class LoopModel:
    """An in-process model that writes a tool reply in TIR style: it stops at an output block and, once the output
    is there, boxes it. It records every call's batch size."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        self.batches.append(len(prompts))
        assert STOP in params.stop
        texts = []
        for prompt in prompts:
            if OUTPUT_START in prompt.split("## New Problem\n")[-1]:
                value = prompt.rsplit(OUTPUT_START, 1)[1].split("\n")[0]
                texts.append(f"The answer is $\\boxed{{{value}}}$.")
            else:
                n = len(prompt) % 97
                texts.append(f"[Problem]\nWhat is {n} squared?\n\n[Solution]\n```python\nprint({n} ** 2)\n```\n{STOP}")
        return [Completion(text=t, finish_reason="stop", num_tokens=len(t)) for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(text) // 4


def test_tool_requests_go_through_the_tir_loop_in_batches(tmp_path, sandbox):
    model = LoopModel()
    paths = OutputPaths.beside(tmp_path / "loop.jsonl")
    stats = write_problems(TEXTS[:12], model, WritingConfig(batch_size=12), paths, sandbox=sandbox)
    rows = read_jsonl(paths.output)
    assert model.batches == [12, 12] and stats["kept"] == len(rows) >= 10  # two rounds, each one batched call
    assert all(real_outputs_only(r["output"], sandbox) for r in rows) and stats["kept_claims_wrong"] == 0


def test_a_failing_writer_records_nothing(tmp_path, sandbox):
    with OpenAIServer(lambda *_: Reply(status=503, body=b"down")) as down:
        paths = OutputPaths.beside(tmp_path / "down.jsonl")
        config = WritingConfig(**AFTER)
        with pytest.raises(TeacherError):
            write_problems(TEXTS[:4], teacher(down.url, max_retries=1), config, paths, sandbox=sandbox)
    assert read_jsonl(paths.journal) == [] and json.loads(paths.stats.read_text())["pending"] == 4


def test_two_shards_merge_into_one_run(tmp_path, server, sandbox):
    _, whole = run(tmp_path, server, sandbox, "whole", samples_per_text=2)
    journals = []
    for shard in (0, 1):
        stats, _ = run(tmp_path, server, sandbox, f"s{shard}", samples_per_text=2, shard=shard, num_shards=2)
        assert 0 < stats["planned"] < 2 * len(TEXTS)
        journals.append(tmp_path / f"s{shard}.journal.jsonl")
    summary = merge_shards(journals, tmp_path / "merged.jsonl")
    assert read_jsonl(tmp_path / "merged.jsonl") == whole and summary["shards"] == 2
    with pytest.raises(InputError, match="run twice"):
        merge_shards([journals[0], journals[0]], tmp_path / "x.jsonl")


def test_plan_is_fixed_and_config_is_checked():
    config = WritingConfig(mode="all", samples_per_text=2)
    plan = plan_requests([*TEXTS[:5], Text("thm", "x", kind="theorem")], config)
    assert [r.order for r in plan] == list(range(len(plan))) and len({r.id for r in plan}) == len(plan)
    assert sum(r.text.id == "thm" for r in plan) == 16  # 8 stages x 2 samples
    for bad in ({"rows": "pairs"}, {"style": "x"}, {"shard": 2, "num_shards": 2}, {"batch_size": 0}):
        with pytest.raises(InputError):
            WritingConfig(**bad)


def write_corpus(path: Path, texts: list[Text]) -> Path:
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in texts))
    return path


def script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@pytest.mark.parametrize("name", ["distill_gpt4o.yaml", "synthesize_vllm.yaml"])
def test_shipped_writing_recipes_parse(name):
    recipe = REPO / "training" / "recipes" / "jiuzhang" / name
    sys.path.insert(0, str(REPO / "training"))
    try:
        from jiuzhang_write import make_parser
    finally:
        sys.path.remove(str(REPO / "training"))
    args, config, teacher_config = make_parser().parse_args_and_config(
        ["--config", str(recipe), "--shard", "1", "--num_shards", "4"]
    )
    assert args.corpus and args.eval_sets and config.shard == 1
    if recipe.stem == "synthesize_vllm":  # the authors' large-scale sampling
        assert (config.cot_temperature, config.tool_temperature, config.tool_top_p) == (1.0, 0.1, 0.95)
        assert config.max_new_tokens == 2500 and config.rows == "problem" and args.writer == "generator"
    else:
        assert config.rows == "request" and teacher_config.api_key_env and config.tool_execution == "after"


def test_script_errors_are_one_line(tmp_path):
    done = script("--corpus", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2 and "corpus path not found" in done.stderr and "Traceback" not in done.stderr


def test_script_survives_kill_and_resumes(tmp_path, sandbox):
    texts = make_corpus(120, relevant_share=0.2, seed=9)
    corpus = write_corpus(tmp_path / "corpus.jsonl", texts)
    scripted = ScriptedTeacher()

    def slow(path: str, body: dict, headers: dict) -> Reply:
        reply = scripted(path, body, headers)
        reply.delay_s = 0.02
        return reply

    output = tmp_path / "rows.jsonl"
    with OpenAIServer(slow) as server:
        args = ["--corpus", str(corpus), "--output", str(output), "--base_url", server.url, "--rows", "request"]
        args += ["--tool_execution", "after", "--batch_size", "4", "--progress", "false", "--log_level", "WARNING"]
        process = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=REPO, stderr=subprocess.PIPE)
        journal = tmp_path / "rows.journal.jsonl"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= 30:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"finished before the kill: {process.stderr.read()[-2000:]}"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_at = len(read_jsonl(journal, appended=True))
        assert 30 <= killed_at < len(texts)
        done = script(*args)
        assert done.returncode == 0, done.stderr[-2000:]
    records = read_jsonl(journal)
    rows = read_jsonl(output)
    plan = plan_requests(chunk_documents(texts), WritingConfig(rows="request"))
    assert sorted(r["id"] for r in records) == sorted(r.id for r in plan)
    kept = [r for r in records if r["outcome"] == "kept"]
    assert [(r["input"], r["output"]) for r in kept] == [
        (r["input"], r["output"]) for r in rows
    ]  # none lost or doubled
    stats = json.loads((tmp_path / "rows.stats.json").read_text())
    assert stats["this_run"]["skipped_done"] >= killed_at and stats["pending"] == 0
