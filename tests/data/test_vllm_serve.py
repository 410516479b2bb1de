"""training/generate_tir.py and `HTTPTeacher` against a real OpenAI-compatible server: `vllm serve` from vLLM's CPU
build (.venv-vllm), started and stopped by the tests on 127.0.0.1, serving the demo model when `make demo` has trained
it (models/tiny-tir), else a tiny random Llama built here.

Covered: the completions and the chat endpoint, `n > 1`, stop strings (`stop_reason` names the string the server cut
off, which the teacher puts back), seeds (the same request gives the same texts), and a server killed in the middle
of a generate_tir run, then restarted, with a rerun that resumes from the journal. Fault injection a real server
cannot produce on demand (429s, malformed replies) stays with the scripted `numina_kit.testing.OpenAIServer`.
"""

import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from numina_kit.data.teacher import HTTPTeacher, TeacherConfig
from numina_kit.models.base import SamplingParams
from numina_kit.models.demo import save_demo_model
from numina_kit.protocols.tora import STOP
from numina_kit.testing import VLLM_MISSING, VLLMServer


pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "models" / "tiny-tir"
DEMO_PROBLEMS = REPO / "tests" / "fixtures" / "demo_problems.jsonl"
PROMPT = "### Problem: What is the remainder when $77258 \\times 8347$ is divided by $1000$?\n### Solution: "
# CPU serving: float32, no torch.compile, the worker inside the engine process, a small KV cache.
SERVE_ARGS = ("--dtype", "float32", "--enforce-eager", "--distributed-executor-backend", "uni")
SERVE_ARGS += ("--kv-cache-memory-bytes", str(2**28), "--max-model-len", "1024", "--seed", "0")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_MISSING)
    root = tmp_path_factory.mktemp("serve")
    model = DEMO_MODEL
    if not (model / "config.json").is_file():
        text = "### Problem: What is 2+3?\n### Solution: ```python\nprint(2+3)\n```\n```output\n5\n```\n$\\boxed{5}$"
        model = save_demo_model(root / "model", [text] * 8, vocab_size=300, hidden_size=64, num_heads=2)
    with VLLMServer(model, root / "serve.log", args=SERVE_ARGS) as running:
        yield running


def post(server: VLLMServer, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        server.url + path, json.dumps({"model": "teacher", **body}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


def test_completions_n_seeds_and_stop_strings(server: VLLMServer) -> None:
    body = {"prompt": PROMPT, "n": 4, "temperature": 1.0, "max_tokens": 48, "seed": 7}
    first = post(server, "/completions", body)
    texts = [choice["text"] for choice in first["choices"]]
    assert len(texts) == 4 and len(set(texts)) > 1  # n samples of one prompt, not one sample four times
    assert [c["text"] for c in post(server, "/completions", body)["choices"]] == texts  # seeded: repeatable
    # A stop string taken from a sampled text: the same request with it cuts every sample that contains it just
    # before it and names it in stop_reason (the OpenAI server drops the string itself from the text).
    text = max(texts, key=len)
    stop = next(
        text[i : i + 3]
        for i in range(len(text) // 2, len(text) - 2)
        if text[i : i + 3].isascii() and text[i : i + 3].isprintable()
    )
    cut = post(server, "/completions", {**body, "stop": [stop]})["choices"]
    for full, choice in zip(texts, cut, strict=True):
        if stop in full:
            assert choice["text"] == full[: full.find(stop)]
            assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stop
        else:
            assert choice["text"] == full and choice["stop_reason"] is None


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_http_teacher_on_both_endpoints(server: VLLMServer, api: str) -> None:
    teacher = HTTPTeacher(TeacherConfig(base_url=server.url, model="teacher", api=api, max_retries=1))
    params = SamplingParams(temperature=1.0, max_new_tokens=40, stop=(STOP,), seed=3)
    out = teacher.generate([PROMPT] * 3, params)
    assert len(out) == 3 and all(c.num_tokens > 0 and c.prompt_tokens > 0 for c in out)
    assert [c.text for c in teacher.generate([PROMPT] * 3, params)] == [c.text for c in out]
    for completion in out:  # a completion cut at the stop string keeps it at the end, as the Generator contract says
        assert (completion.stop_reason == STOP) == completion.text.endswith(STOP)


def run_generate_tir(server: VLLMServer, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "training" / "generate_tir.py"), "--problems", str(DEMO_PROBLEMS)]
    command += ["--limit", "24", "--output", str(out / "tir.jsonl"), "--base_url", server.url, "--model", "teacher"]
    command += ["--api", "completions", "--passes", "2", "--max_rounds", "2", "--max_new_tokens", "160"]
    command += ["--concurrency", "2", "--seed", "0", "--progress", "false", "--max_retries", "1"]
    command += ["--backoff_s", "0.1", "--backoff_max_s", "0.2", "--max_consecutive_teacher_failures", "2", *extra]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def journal(out: Path) -> list[dict]:
    path = out / "tir.journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_generate_tir_survives_a_killed_server_and_resumes(server: VLLMServer, tmp_path: Path) -> None:
    run = run_generate_tir(server, tmp_path)
    deadline = time.monotonic() + 600
    while len(journal(tmp_path)) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.poll() is None, f"the run ended before the server could be killed:\n{run.stdout.read()[-2000:]}"
    server.kill()
    output, _ = run.communicate(timeout=300)
    assert run.returncode != 0 and "rerun to resume" in output, output[-2000:]
    before = journal(tmp_path)
    attempts_before = {record["id"] for record in before}

    server.start()  # the same port: the rerun is the same command
    rerun = run_generate_tir(server, tmp_path)
    output, _ = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, output[-2000:]
    after = journal(tmp_path)
    assert after[: len(before)] == before  # the first run's records are kept, not redone
    stats = json.loads((tmp_path / "tir.stats.json").read_text())
    assert stats["this_run"]["skipped_finished"] >= 1 and attempts_before <= {record["id"] for record in after}
    assert stats["attempts"] == len(after) and stats["problems_pending"] == 0
    kept = [record for record in after if record.get("outcome") == "kept"]
    rows = (tmp_path / "tir.jsonl").read_text().splitlines() if (tmp_path / "tir.jsonl").exists() else []
    assert len(rows) == len(kept)
    per_problem: dict[str, int] = {}
    for record in after:
        per_problem[record["id"]] = per_problem.get(record["id"], 0) + 1
    assert max(per_problem.values()) <= 2  # never more attempts than passes, across both runs
