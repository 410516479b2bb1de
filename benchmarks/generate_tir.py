"""Benchmark of TIR data generation (numina_kit.data.synthesis, numina_kit.data.teacher, numina_kit.data.decontamination).

- Throughput against a scripted OpenAI-compatible server on 127.0.0.1 that takes a fixed time per reply (a stand-in
  for a remote teacher): problems per second and teacher calls per second at several `concurrency` values, against
  one attempt at a time (the baseline, concurrency 1), with the real sandbox running every code block.
- Decontamination on ../shared/data: the ToRA traces' problems (GSM8K test and MATH train) against the evaluation
  sets, by 10-gram overlap and by exact text match (the baseline), with the time per problem.

Run: `python benchmarks/generate_tir.py` (writes the `generate_tir` section of docs/benchmarks.md).
"""

import logging
import re
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import markdown_table, write_section  # noqa: E402

from numina_kit.data.decontamination import build_index, decontaminate  # noqa: E402
from numina_kit.data.problems import Problem, load_problems  # noqa: E402
from numina_kit.data.synthesis import OutputPaths, SynthesisConfig, synthesize  # noqa: E402
from numina_kit.data.teacher import HTTPTeacher, TeacherConfig  # noqa: E402
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox  # noqa: E402
from numina_kit.testing import OpenAIServer, TIRModel, make_tir_problem  # noqa: E402


DATA = REPO.parent / "shared" / "data"
EVAL_FILES = [
    "aime_2022.jsonl",
    "aime_2023.jsonl",
    "amc_2022.jsonl",
    "math500.jsonl",
    "gsm8k_test.jsonl",
    "aimo1_train.jsonl",
    "aimo3_reference.jsonl",
]
LATENCY_S = 0.2
NUM_PROBLEMS = 60


def throughput(sandbox: Sandbox) -> list[list[object]]:
    kinds = ["right", "right", "pass2", "never", "crash", "e429"]
    problems = [make_tir_problem(i, kinds[i % len(kinds)]) for i in range(NUM_PROBLEMS)]
    rows = []
    baseline = None
    for concurrency in (1, 4, 16, 32):
        with tempfile.TemporaryDirectory() as folder, OpenAIServer(TIRModel(delay_s=LATENCY_S)) as server:
            teacher = HTTPTeacher(
                TeacherConfig(base_url=server.url, max_concurrency=concurrency, backoff_s=0.05, timeout_s=30)
            )
            start = time.perf_counter()
            stats = synthesize(
                problems, teacher, SynthesisConfig(concurrency=concurrency), OutputPaths.beside(Path(folder) / "o.jsonl"),
                sandbox=sandbox,
            )  # fmt: skip
            seconds = time.perf_counter() - start
        baseline = baseline or seconds
        rows.append(
            [
                concurrency if concurrency > 1 else "1 (baseline)",
                f"{seconds:.1f}",
                f"{NUM_PROBLEMS / seconds:.2f}",
                f"{stats['teacher_calls'] / seconds:.1f}",
                stats["teacher_calls"],
                stats["code_runs"],
                stats["problems_kept"],
                f"{baseline / seconds:.1f}x",
            ]
        )
    return rows


def decontamination() -> tuple[list[list[object]], int, int]:
    evaluation = [p.problem for name in EVAL_FILES for p in load_problems(DATA / name)]
    traces = load_problems(DATA / "tir_traces_sample.jsonl")
    # the same problems with every number changed, as a rewrite of an evaluation problem would have them
    altered = [Problem(p.id, re.sub(r"\d+", lambda m: str(int(m.group()) + 1), p.problem), p.answer) for p in traces]
    start = time.perf_counter()
    index = build_index(evaluation, n=10)
    build_s = time.perf_counter() - start
    exact_texts = {" ".join(text.split()) for text in evaluation}
    rows = []
    for name, problems in (("verbatim", traces), ("numbers changed", altered)):
        start = time.perf_counter()
        exact = [p for p in problems if " ".join(p.problem.split()) in exact_texts]
        exact_us = (time.perf_counter() - start) / len(problems) * 1e6
        start = time.perf_counter()
        _, removed = decontaminate(problems, index, text=lambda p: p.problem)
        ngram_us = (time.perf_counter() - start) / len(problems) * 1e6
        rows.append([name, "exact text match (baseline)", len(exact), f"{exact_us:.1f}"])
        rows.append([name, "10-gram overlap", len(removed), f"{ngram_us:.1f}"])
    gsm8k = sum(p.id.startswith("gsm8k_test_") for p in traces)
    return rows, gsm8k, int(build_s * 1000)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with Sandbox(ExecutorConfig()) as sandbox:
        speed = throughput(sandbox)
    body = (
        f"Throughput: {NUM_PROBLEMS} problems (right, right at pass 2, never right, crashing code, a 429 first) "
        f"against a scripted server on 127.0.0.1 answering each request after {LATENCY_S} s, up to 3 passes, the "
        "real sandbox running each code block.\n\n"
        + markdown_table(
            [
                "concurrency",
                "wall s",
                "problems/s",
                "teacher calls/s",
                "teacher calls",
                "code runs",
                "kept",
                "speed-up",
            ],
            speed,
        )
    )
    if DATA.exists():
        rows, gsm8k, build_ms = decontamination()
        body += (
            "\n\nDecontamination: the 2130 problems of `tir_traces_sample.jsonl` "
            f"({gsm8k} are GSM8K test problems, which `gsm8k_test.jsonl` holds) against the 7 evaluation files "
            f"(index built in {build_ms} ms).\n\n"
            + markdown_table(["training problems", "method", "problems removed", "us per problem"], rows)
        )
    write_section("generate_tir", "TIR data generation", body)
    print(body)


if __name__ == "__main__":
    main()
