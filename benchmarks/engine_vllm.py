"""Benchmark: the async SC-TIR engine against the synchronous loop on the real vLLM engine (its CPU build).

The demo model (`models/tiny-tir`, `make demo`'s first step) on the 50 held-out demo problems, N=16 candidates x M=4
rounds, 128 new tokens a round, the same seeds for every engine (problem i: seed 1000 i), the real sandbox. Rows:
- sync loop on `VLLMGenerator` (vLLM's offline `LLM`: one `generate` call per round): the baseline;
- sync loop on `AsyncVLLMGenerator` (the same rounds, each prompt its own `AsyncLLM` request): isolates the cost
  of per-request serving from the schedule;
- async engine on `AsyncVLLMGenerator`;
- both engines with early stopping at 4 agreeing answers, and the async engine stopping once the vote is decided
  (no running candidate could change the winner, so the answers cannot change): the savings in generated tokens;
- both engines with a deadline too short for the problem (1 s): how far past it each ends.
Reported: wall time, generated tokens per second, accuracy, and for the async engine the time from the stop
(agreement or deadline) to the last aborted request (`Solution.cancel_s`); after every problem the engine must hold
no unfinished request. Run it in the vLLM environment (the guard below is needed: vLLM spawns its engine core):
`.venv-vllm/bin/python benchmarks/engine_vllm.py [--model models/tiny-tir] [--quick]` (from .venv it reruns
itself there).
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import markdown_table, write_section  # noqa: E402

from numina_kit.models.load import load_generator  # noqa: E402
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox  # noqa: E402
from numina_kit.sctir.loop import SCTIRConfig, solve  # noqa: E402
from numina_kit.sctir.voting import ConsistencyRule  # noqa: E402
from numina_kit.testing import IN_PROCESS_VLLM_ARGS, open_vllm_in_process  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
PROBLEMS = REPO / "tests" / "fixtures" / "demo_problems.jsonl"
SETTINGS = {"num_candidates": 16, "max_rounds": 4, "max_new_tokens": 128, "max_context_tokens": 1024}
DEADLINE_S = 1.0


def run(name: str, generator, problems: list[dict], sandbox: Sandbox, *, engine: str, **extra) -> dict:
    """Solve every problem with one engine; totals and the worst cancellation and deadline overrun."""
    deadline_s = extra.pop("deadline_s", None)
    correct, tokens, cancel, overrun, leftover, reasons = 0, 0, [], [], 0, {}
    start = time.perf_counter()
    for index, problem in enumerate(problems):
        config = SCTIRConfig(**SETTINGS, seed=1000 * index, engine=engine, **extra)
        began = time.monotonic()
        deadline = None if deadline_s is None else began + deadline_s
        solution = solve(problem["problem"], generator, config, executor=sandbox, deadline=deadline)
        ended = time.monotonic()
        correct += solution.answer == int(problem["answer"])
        tokens += solution.generated_tokens
        reasons[solution.stop_reason] = reasons.get(solution.stop_reason, 0) + 1
        if solution.stop_reason in ("early stop", "vote decided", "deadline") and engine == "async":
            cancel.append(solution.cancel_s)
        if deadline is not None:
            overrun.append(ended - deadline)
        engine_core = getattr(generator, "engine", None)
        if engine_core is not None:
            leftover += engine_core.get_num_unfinished_requests()
    wall = time.perf_counter() - start
    result = {
        "name": name,
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "correct": correct,
        "max_cancel_s": max(cancel) if cancel else None,
        "mean_cancel_s": statistics.mean(cancel) if cancel else None,
        "max_overrun_s": max(overrun) if overrun else None,
        "leftover": leftover,
        "stops": reasons,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "tiny-tir"), help="the demo model folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems (a quick look)")
    parser.add_argument("--quick", action="store_true", help="skip the two rows that only explain the others")
    args = parser.parse_args()
    if importlib.util.find_spec("vllm") is None:  # e.g. `make bench` from .venv: rerun in the vLLM environment
        vllm_python = REPO / ".venv-vllm" / "bin" / "python"
        if vllm_python.exists():
            os.execv(vllm_python, [str(vllm_python), __file__, *sys.argv[1:]])
        print("engine_vllm: skipped, vLLM is not installed (`make vllm-env` sets up .venv-vllm)")
        return
    if not (Path(args.model) / "config.json").exists():
        raise SystemExit(f"engine_vllm: no model at {args.model} (`make demo` trains the demo model first)")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # leave other processes' CPU affinity alone
    problems = [json.loads(line) for line in PROBLEMS.read_text().splitlines()][: args.limit]
    offline = open_vllm_in_process(args.model)
    streaming = load_generator(args.model, backend="vllm", streaming=True, **IN_PROCESS_VLLM_ARGS)
    rule = ConsistencyRule(4)
    with Sandbox(ExecutorConfig(timeout=5.0)) as sandbox:
        run("warm-up", streaming, problems[:2], sandbox, engine="async")
        run("warm-up", offline, problems[:2], sandbox, engine="sync")
        rows = [
            run("sync loop, offline LLM (baseline)", offline, problems, sandbox, engine="sync"),
            run("async engine, AsyncLLM", streaming, problems, sandbox, engine="async"),
            run("async engine, early stop 4", streaming, problems, sandbox, engine="async", early_stop=rule),
            run("async engine, stop when decided", streaming, problems, sandbox, engine="async",
                stop_when_decided=True),
            run(f"sync loop, offline LLM, {DEADLINE_S:g} s deadline", offline, problems, sandbox, engine="sync",
                deadline_s=DEADLINE_S),
            run(f"async engine, {DEADLINE_S:g} s deadline", streaming, problems, sandbox, engine="async",
                deadline_s=DEADLINE_S),
        ]  # fmt: skip
        if not args.quick:
            rows[1:1] = [run("sync loop, AsyncLLM requests", streaming, problems, sandbox, engine="sync")]
            rows[5:5] = [
                run("sync loop, offline LLM, early stop 4", offline, problems, sandbox, engine="sync", early_stop=rule)
            ]
    streaming.close()
    base = rows[0]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    table = [
        [
            r["name"],
            f"{r['wall_s']:.0f}",
            f"{base['wall_s'] / r['wall_s']:.2f}x",
            f"{r['tokens']:,}",
            f"{r['tokens_per_s']:.0f}",
            f"{r['correct']}/{len(problems)}",
            seconds(r["max_cancel_s"]),
            seconds(r["max_overrun_s"]),
            r["leftover"],
        ]
        for r in rows
    ]
    body = (
        f"The demo model on the {len(problems)} demo problems, N={SETTINGS['num_candidates']} x "
        f"M={SETTINGS['max_rounds']}, {SETTINGS['max_new_tokens']} new tokens a round, seed 1000 i for problem i in "
        "every row, the real sandbox (2 workers), vLLM's CPU build in this process (AsyncLLM's engine core in its "
        "own process). 'Stop to last abort' is the async engine's `Solution.cancel_s` (agreement or deadline to "
        "the last request ended), worst problem; 'past deadline' is when `solve` returned after the deadline, "
        "worst problem; 'unfinished' counts requests the engine still held after the problems (summed).\n\n"
        + markdown_table(
            [
                "run",
                "wall s",
                "speed vs baseline",
                "generated tokens",
                "tokens/s",
                "correct",
                "stop to last abort (s)",
                "past deadline (s)",
                "unfinished",
            ],
            table,
        )
    )
    write_section("engine_vllm", "Async engine on vLLM's CPU build: the demo model", body)


if __name__ == "__main__":
    main()
