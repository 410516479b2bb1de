"""Benchmark: what serving adds to each problem, and how close to its deadline `predict` answers an overrunning solver.

1. Overhead per problem of the serving path with an instant solver (so only serving is timed): the bare solver call
   (baseline), `make_predict` (watchdog thread, budget, checks, polars reply), and the whole local mode through the
   stand-in gateway (CSV, worker thread, reply checks, parquet) - and through Kaggle's `kaggle_evaluation` gRPC
   gateway when it can be imported (put a copy on PYTHONPATH; none ships with numina_kit).
2. Lateness: a solver that ignores its deadline and sleeps past it; `predict` must answer at the deadline. Reported:
   how long after the deadline the fallback arrived (baseline: how late the solver alone would have been).

Run: `python benchmarks/kaggle.py [problems]`.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

from _results import markdown_table, write_section

from numina_kit.data.problems import Problem
from numina_kit.kaggle import serving
from numina_kit.kaggle.predict import make_predict
from numina_kit.sctir.budget import TimeBudget


def instant_solver(problem: str, deadline: float | None) -> int:
    return len(problem) % 1000


def time_serving(num_problems: int, folder: Path) -> list[list[object]]:
    problems = [Problem(id=f"{i:06x}", problem=f"What is {i} + {i}?", answer=str(2 * i % 1000)) for i in range(200)]
    problems = problems[:num_problems]
    path = folder / "problems.jsonl"
    path.write_text(
        "".join(f'{{"id": "{p.id}", "problem": "{p.problem}", "answer": "{p.answer}"}}\n' for p in problems)
    )

    started = time.perf_counter()
    for problem in problems:
        instant_solver(problem.problem, None)
    bare = (time.perf_counter() - started) / num_problems

    budget = TimeBudget(total_s=3600, num_problems=num_problems, reserve_s=0, floor_s=0, ceiling_s=3600)
    predict = make_predict(instant_solver, competition="aimo1", budget=budget)
    started = time.perf_counter()
    for problem in problems:
        predict(problem.id, problem.problem)
    wrapped = (time.perf_counter() - started) / num_problems

    rows = [["bare solver call (baseline)", f"{bare * 1e3:.3f}", "-"]]
    rows.append(
        ["`make_predict` (watchdog, budget, reply frame)", f"{wrapped * 1e3:.3f}", f"{(wrapped - bare) * 1e3:.3f}"]
    )
    gateways = ["stand-in"] + (["kaggle"] if serving.import_server("aimo2") is not None else [])
    for gateway in gateways:
        predict = make_predict(instant_solver, competition="aimo2")
        started = time.perf_counter()
        run = serving.run_local(predict, path, "aimo2", out_dir=folder / gateway, gateway=gateway)
        whole = (time.perf_counter() - started) / num_problems
        assert run.score is not None and run.score.total == num_problems
        name = "Kaggle `kaggle_evaluation` 0.3.0 gateway (gRPC)" if gateway == "kaggle" else "stand-in gateway"
        rows.append([f"local mode, {name}", f"{whole * 1e3:.3f}", f"{(whole - bare) * 1e3:.3f}"])
    return rows


def time_lateness(trials: int, slot_s: float = 0.2, overrun_s: float = 0.5) -> list[list[object]]:
    """Seconds between the deadline and the answer: the solver called alone (baseline), and through `predict`."""

    def late(call) -> float:
        budget = TimeBudget(total_s=slot_s, num_problems=1, reserve_s=0, floor_s=0, ceiling_s=slot_s)
        deadline = budget.deadline()
        call(budget)
        return time.monotonic() - deadline

    def sleepy_solver(problem: str, soft_deadline: float | None) -> int:
        time.sleep(slot_s + overrun_s)
        return 1

    alone = [late(lambda budget: sleepy_solver("What is 1 + 1?", budget.deadline())) for _ in range(trials)]
    wrapped = []
    for _ in range(trials):
        wrapped.append(late(lambda budget: make_predict(sleepy_solver, budget=budget)("a", "What is 1 + 1?")))
        time.sleep(slot_s + overrun_s)  # let the abandoned solve finish before the next trial
    return [
        ["solver alone (baseline)", f"{statistics.median(alone) * 1e3:.1f}", f"{max(alone) * 1e3:.1f}"],
        ["`predict` around it", f"{statistics.median(wrapped) * 1e3:.1f}", f"{max(wrapped) * 1e3:.1f}"],
    ]


def main() -> int:
    num_problems = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as folder:
        serving = time_serving(num_problems, Path(folder))
    lateness = time_lateness(10)
    body = (
        f"Serving overhead per problem, {num_problems} problems, instant solver (AIMO-2 API for the gateways):\n\n"
        + markdown_table(["path", "ms per problem", "added vs baseline (ms)"], serving)
        + "\n\nAnswer time after the deadline, a solver that overruns a 0.2 s slot by 0.5 s (10 trials):\n\n"
        + markdown_table(["", "median late (ms)", "max late (ms)"], lateness)
        + "\n\nServing costs milliseconds against minutes of SC-TIR per problem; `predict` answers within a few "
        "milliseconds of the deadline however long the solver overruns (the solver's thread finishes in the "
        "background and the next problem waits for it). The gRPC row appears only when `kaggle_evaluation` is "
        "importable (here: a copy of the AIMO-2 0.3.0 package rebuilt outside the repository).\n"
    )
    write_section("kaggle", "Kaggle serving: overhead and deadline", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
