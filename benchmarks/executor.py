"""Benchmark the sandboxed executor against what Numina did (a fresh `python3` per block), measured in the same run.

Measures: the median per-call latency of a typical sympy block through `run_code` against the spawn-per-call
baseline with the same imports; the wall time of 48 such blocks through `run_codes` (one SC-TIR round); and, when
../shared/data is present, the replay of every code block of the ToRA traces (how many reproduce, how long it takes,
and why each miss does not); with `--base-tree`, `run_code`'s per-call latency against another checkout's sandbox
(e.g. `git worktree add /tmp/sandbox-base main`), both running at once and timed in alternation. Writes the
`executor` section of docs/benchmarks.md.

    python benchmarks/executor.py [--reps 30] [--baseline-reps 15] [--base-tree /tmp/sandbox-base]
"""

import argparse
import contextlib
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _results import markdown_table, write_section  # noqa: E402

from numina_kit.sandbox.pool import DEFAULT_PREAMBLE, ExecutorConfig, Sandbox, run_code, run_codes  # noqa: E402
from numina_kit.sandbox.worker import WARMUP  # noqa: E402
from numina_kit.testing import load_trace_blocks, reproduces  # noqa: E402


SHARED_DATA = Path(os.environ.get("NUMINA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# "A typical sympy block": the block of median cost among the trace sample's sympy blocks (its own work inside a
# warm fork), gsm8k_test_562 by tora-code-34b, as the model wrote it (docstring shortened).
TYPICAL_BLOCK = """from sympy import symbols, solve, cos, rad

def sun_angle():
    \"\"\"How many degrees will there be from the ground to the sun?\"\"\"
    # Define the variables
    theta = symbols('theta')
    theta_at_tip = solve(90 - theta - 32, theta)[0]
    theta_after_movement = theta_at_tip + 50
    return theta_after_movement

result = sun_angle()
print(result)
"""
# A heavy block (about the 80th percentile of that set): math-train-1459-0, `solve` on two equations with a float.
HEAVY_BLOCK = """from sympy import symbols, Eq, solve

def find_difference():
    x, y = symbols('x y')
    eq1 = Eq(x + y, 399)
    eq2 = Eq(x/y, 0.9)
    solution = solve((eq1, eq2), (x, y))
    return solution[y] - solution[x]

result = find_difference()
print(result)
"""
LIGHT_BLOCK = """from sympy import Rational
total = sum(Rational(1, n * (n + 1)) for n in range(1, 50))
print(total)
"""
# Why each block of the sample that does not reproduce cannot: checked by hand against the trace.
KNOWN_MISSES = {
    "math-train-1527-0": "fabricated output in the ToRA corpus: the code calls `f()` (no parameters) with an argument and "
    "raises `TypeError`; the recorded output `4` is the intended answer, not what the code prints",
    "gsm8k_test_881__tora-70b-v1.0": "the loop `while present_age != 3 * present_age` never ends: ToRA's executor timed "
    "out too, but reported it as `timeout_decorator.timeout_decorator.TimeoutError: 'Timed Out'`; we say `Timed out "
    "after 5 seconds.`",
    "gsm8k_test_1132__tora-code-34b-v1.0": "NameError wording: Python 3.11's interpreter appends `Did you mean: ...?` to "
    "the message; our compact traceback does not, so this one usually reproduces",
    "math-train-4251-0": "1024 symbolic `floor(log(N, 2))` evaluations: about 10-12 s measured on this machine at "
    "load average 10, so it exceeds the 5 s timeout only on a busy machine (it reproduces when the machine is idle "
    "enough)",
}


def spawn_per_call(code: str) -> tuple[float, str]:
    """Numina's executor: write preamble + code to a file, run a fresh `python3` on it, capture its output."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(DEFAULT_PREAMBLE + code)
    try:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, handle.name], capture_output=True, text=True, timeout=60)
        elapsed = time.perf_counter() - started
    finally:
        os.unlink(handle.name)
    return elapsed, done.stdout.strip()


_WARM: dict = {}


def bare_fork(code: str) -> float:
    """The floor: fork this (warm) process and exec the block in the child, with no isolation at all."""
    if not _WARM:
        exec(DEFAULT_PREAMBLE, _WARM)
        exec(WARMUP, dict(_WARM))
        gc.collect()
        gc.freeze()
    read_fd, write_fd = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            exec(code, dict(_WARM))
        os.write(write_fd, out.getvalue().encode() or b"-")
        os._exit(0)
    os.close(write_fd)
    os.read(read_fd, 65536)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return time.perf_counter() - started


def measure_latency(codes: list[str], reps: int, baseline_reps: int) -> tuple[float, float, float, list[float]]:
    """Median seconds per call over `codes`: spawn-per-call, `run_code` and a bare fork, interleaved."""
    run_code("1")  # start the default sandbox outside the timing
    ours, baseline, floor = [], [], []
    for i in range(max(reps, baseline_reps)):
        code = codes[i % len(codes)]
        if i < baseline_reps:
            elapsed, expected = spawn_per_call(code)
            baseline.append(elapsed)
        if i < reps:
            started = time.perf_counter()
            result = run_code(code)
            ours.append(time.perf_counter() - started)
            assert i >= baseline_reps or result.output == expected, (result, expected)
            floor.append(bare_fork(code))
    return statistics.median(baseline), statistics.median(ours), statistics.median(floor), ours


def trace_blocks() -> list[str]:
    """Every sympy-using code block of the trace sample that runs cleanly: what "a typical sympy block" looks like."""
    blocks = [code for trace, _, code, out in load_trace_blocks(SHARED_DATA / "tir_traces_sample.jsonl")]
    blocks = [code for code in blocks if "sympy" in code]
    results = run_codes(blocks)
    return [code for code, result in zip(blocks, results, strict=True) if result.ok]


def measure_batch(codes: list[str], rounds: int) -> list[float]:
    """Wall seconds for 48 blocks (`codes` cycled) through `run_codes`: one SC-TIR round of 48 candidates."""
    batch = [codes[i % len(codes)] for i in range(48)]
    expected = [r.output for r in run_codes(batch)]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        results = run_codes(batch)
        times.append(time.perf_counter() - started)
        assert [r.output for r in results] == expected
    return times


# Times `run_code` in a checkout given by its working directory: the codes come as one JSON line, then each line
# "N" asks for N timed calls (cycling through the codes), answered with a JSON list of seconds.
LATENCY_PROBE = """
import json, sys, time
from numina_kit.sandbox.pool import run_code
codes = json.loads(sys.stdin.readline())
run_code("1")
print(json.dumps(__import__("numina_kit").__file__), flush=True)
for line in sys.stdin:
    times = []
    for i in range(int(line)):
        started = time.perf_counter()
        run_code(codes[i % len(codes)])
        times.append(time.perf_counter() - started)
    print(json.dumps(times), flush=True)
"""


def compare_trees(base: Path, codes: list[str], rounds: int, calls: int) -> tuple[list[float], list[float]]:
    """`run_code` seconds per call in the `base` checkout and in this one: both sandboxes started, then timed in
    alternating rounds of `calls` calls, so that both see the same machine load."""
    probes = []
    for tree in (base, REPO):
        env = {**os.environ, "PYTHONPATH": str(tree)}
        probe = subprocess.Popen(
            [sys.executable, "-c", LATENCY_PROBE], cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        probe.stdin.write(json.dumps(codes) + "\n")
        probe.stdin.flush()
        loaded = Path(json.loads(probe.stdout.readline())).resolve()
        assert loaded.is_relative_to(tree.resolve()), f"{tree} imported numina_kit from {loaded}"
        probes.append(probe)
    times: list[list[float]] = [[], []]
    for _ in range(rounds):
        for probe, seconds in zip(probes, times, strict=True):
            probe.stdin.write(f"{calls}\n")
            probe.stdin.flush()
            seconds += json.loads(probe.stdout.readline())
    for probe in probes:
        probe.stdin.close()
        probe.wait(timeout=60)
    return times[0], times[1]


def git_short(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or str(tree)


def measure_replay() -> tuple[str, int, int, float]:
    """Replay every block of the trace sample; return a Markdown table of the misses and the counts."""
    blocks = load_trace_blocks(SHARED_DATA / "tir_traces_sample.jsonl")
    started = time.perf_counter()
    with Sandbox(ExecutorConfig(timeout=5.0)) as sandbox:
        results = sandbox.run_many([code for _, _, code, _ in blocks])
    elapsed = time.perf_counter() - started
    rows = []
    for (trace, index, _, recorded), result in zip(blocks, results, strict=True):
        if not reproduces(recorded, result.status, result.output):
            ours = result.output.splitlines()[-1] if result.output else ""
            why = KNOWN_MISSES.get(trace, "**not explained**")
            rows.append([f"`{trace}` #{index}", f"`{recorded[:60]}`", f"{result.status}: `{ours[:80]}`", why])
    table = markdown_table(["block", "recorded", "ours (last line)", "why"], rows) if rows else "(none)"
    return table, len(blocks) - len(rows), len(blocks), elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40, help="run_code calls to time")
    parser.add_argument("--baseline-reps", type=int, default=15, help="spawn-per-call runs to time")
    parser.add_argument("--batch-rounds", type=int, default=7, help="rounds of 48 blocks through run_codes")
    parser.add_argument("--base-tree", type=Path, help="another checkout whose run_code latency to compare with")
    parser.add_argument("--base-rounds", type=int, default=8, help="alternating rounds of the --base-tree comparison")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    real = trace_blocks() if (SHARED_DATA / "tir_traces_sample.jsonl").exists() else []
    cases = [("**typical: the median-cost sympy block (`gsm8k_test_562`)**", [TYPICAL_BLOCK]),
             ("heavy: `solve` on two equations with a float (`math-train-1459-0`)", [HEAVY_BLOCK]),
             ("light: a sum of 49 `Rational`s", [LIGHT_BLOCK])]  # fmt: skip
    if real:
        cases.insert(1, (f"all {len(real)} sympy blocks of the trace sample, in turn", real))
    rows, samples = [], []
    for name, codes in cases:
        baseline, ours, floor, times = measure_latency(codes, args.reps, args.baseline_reps)
        samples += times if not rows else []
        rows.append(
            [
                name,
                f"{baseline * 1000:.1f} ms",
                f"{ours * 1000:.1f} ms",
                f"{baseline / ours:.0f}x",
                f"{floor * 1000:.1f} ms",
            ]
        )
    batches = [
        ("**the typical block x 48**", measure_batch([TYPICAL_BLOCK], args.batch_rounds)),
        ("the heavy `solve` block x 48", measure_batch([HEAVY_BLOCK], args.batch_rounds)),
    ]
    if real:
        quick = [code for code in real if "floor(log(" not in code]  # all but math-train-4251-0 (seconds alone)
        batches.append((f"the {len(quick)} real sympy blocks under 1 s, cycled to 48", measure_batch(quick, 3)))
        batches.append((f"all {len(real)} real sympy blocks, cycled to 48", measure_batch(real, 3)))
    load_after = os.getloadavg()[0]
    batch_rows = [[name, f"{statistics.median(t):.3f} s", f"{min(t):.3f} s"] for name, t in batches]
    body = [
        f"Median wall time per call, {args.baseline_reps} spawn-per-call runs (Numina: a fresh `python3` with "
        f"`import math, numpy as np, sympy as sp` per block) interleaved with {args.reps} `run_code` calls in one "
        f'process. The first row is the target\'s "typical sympy block": every block of the trace sample that uses '
        f"sympy, run in turn (their own work inside a warm fork has a median of about 5 ms). The `solve` row is a "
        f"heavy block (about the 80th percentile of that set: ~20 ms of sympy work in any process). `run_code` "
        f"p10/p90 on the first row: {statistics.quantiles(samples, n=10)[0] * 1000:.1f} / "
        f"{statistics.quantiles(samples, n=10)[-1] * 1000:.1f} ms.",
        "",
        markdown_table(
            ["block", "spawn per call", "`run_code`", "speed-up", "naive fork per block, no sandbox"], rows
        ),
        "",
        "The last column is a naive fork server with no sandbox: the benchmark process (preamble imported, sympy "
        "warmed, GC frozen) forks per block, execs it and waits for the child. `run_code` is faster than that despite "
        "its isolation and the extra process hop, because the next child is forked while the previous block runs and "
        "a finished child is collected after the answer is sent. Both pay the block's own sympy work, which no "
        "executor avoids: per-expression caches start cold in every fresh child, so the heavy `solve` block costs "
        "tens of milliseconds anywhere, and its speed-up stays below the typical blocks'.",
        "",
        f"48 blocks through `run_codes` ({os.cpu_count()} workers; one SC-TIR round of 48 candidates; target: at "
        f"most 0.5 s), {args.batch_rounds} rounds each:",
        "",
        markdown_table(["48 blocks", "median", "best"], batch_rows),
        "",
        "A round cannot finish before its slowest block: `math-train-4251-0` (1024 symbolic `floor(log(N, 2))` "
        "evaluations) alone takes about 3 s of CPU, so any batch that contains it takes seconds whatever the "
        "executor; the 5 s timeout is what bounds it.",
        "",
        f"Load average (1 min) {load_before:.1f} before and {load_after:.1f} after on {os.cpu_count()} cores: when "
        "it is above 0, other jobs shared the machine and every figure above includes their contention.",
    ]
    if args.base_tree is not None:
        rows = []
        for name, codes in cases[:2]:
            base, ours = compare_trees(args.base_tree, codes, args.base_rounds, 20)
            rows.append([name, f"{statistics.median(base) * 1000:.1f} ms", f"{statistics.median(ours) * 1000:.1f} ms",
                         f"{statistics.mean(base) * 1000:.1f} / {statistics.mean(ours) * 1000:.1f} ms"])  # fmt: skip
        body += [
            "",
            f"### Against the sandbox of commit `{git_short(args.base_tree)}`",
            "",
            f"`run_code` per call in that commit's checkout and in this one, both sandboxes started side by side "
            f"({os.cpu_count()} workers each) and timed in {args.base_rounds} alternating rounds of 20 calls each, "
            "so that both see the same load:",
            "",
            markdown_table(["block", "base: median", "this tree: median", "mean (base / this tree)"], rows),
        ]
    if (SHARED_DATA / "tir_traces_sample.jsonl").exists():
        table, reproduced, total, elapsed = measure_replay()
        body += [
            "",
            "### Replay of the ToRA traces",
            "",
            f"Every code block of `tir_traces_sample.jsonl` rerun through one `Sandbox` (5 s timeout, "
            f"`run_many`): **{reproduced} of {total}** reproduce their recorded output ({reproduced / total:.2%}; "
            f"errors compare on the last line), in {elapsed:.1f} s. The blocks that do not:",
            "",
            table,
        ]
    write_section("executor", "Sandboxed executor", "\n".join(body))
    print("\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
