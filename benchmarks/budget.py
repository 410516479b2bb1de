"""Benchmark: which time-allocation policy gets the most answers right, wherever the hard problems fall? (simulated)

Four policies hand out per-problem deadlines on the same simulated runs (common random numbers: every policy sees
the same problems, the same candidates and the same answers):
- fair share: time left / problems left;
- TimeBudget before this benchmark (stretch rule): up to 2 fair shares, a floor of 60 s promised to every later
  problem, a ceiling of 20 min (the notebook's defaults then);
- the AIMO-3 winners' clamp rule, `clamp(left - r x (problems left - 1), r, 3r)` with r = 300/348 of the first fair
  share (300 s and 900 s on 17,400 s for 50 problems, the values every AIMO-3 prize team used);
- `numina_kit.sctir.budget.TimeBudget` (the default): spends what early stops save on the hard problems expected
  to come (see its docstring).
Each with and without early stops (half the candidates agree, or the leader cannot be caught), under two ways of
running SC-TIR: the async engine that cancels a problem at its deadline (`cancel`), and the synchronous loop in
which a started round runs to its end and `predict` waits for it up to the run's end or the per-call limit (`sync`).

Runs: 50 problems, 35 basic and 15 hard (the 70/30 mix of TAMU-TACO's AIMO-3 search), the hard ones placed first,
in the middle, last or at random; the same problems in every placement. The answer model is a toy, stated in full
in `sample_problem`: each problem has its own rate of right answers (Beta around 0.7-0.8 for basic, 0.4 for hard);
a wrong answer falls on one popular wrong value with probability 0.3 (basic) or 0.4 (hard), else on one of 58
others; answer and completion lengths follow per-class lognormals. Three curves of "right" against length are
compared (flat, falling, rising). The latency model of 2x T4 is derived, not measured (see `T4`); the L4 and H100
ones are scaled to give the per-problem times their competitions report (AIMO-3 winners: 300-400 s per problem).

Run: `python benchmarks/budget.py [runs]` (writes the `budget` section of docs/benchmarks.md).
"""

import math
import statistics
import sys
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import markdown_table, write_section  # noqa: E402

from numina_kit.models.base import Completion, SamplingParams  # noqa: E402
from numina_kit.prompts import STOP  # noqa: E402
from numina_kit.sandbox.pool import ExecResult  # noqa: E402
from numina_kit.sctir.budget import CLAMP_FLOOR, TimeBudget  # noqa: E402
from numina_kit.testing import FakeClock  # noqa: E402


# ---------------------------------------------------------------------------------- latency (shared with engine.py)
# 2x T4, 8-bit 7B: decoding step = 30 ms + 1.2 us x context tokens of the running sequences. 30 ms: the 7.4 GB of
# 8-bit weights are read once per step, 3.7 GB per T4 at an effective ~125 GB/s of its 320 GB/s (AutoAWQ PR #92
# measured 29 ms/step for a 4-bit Mistral-7B on one T4, the same bytes per GPU). 1.2 us: the fp16 KV cache of a
# 30-layer, 4096-wide model is 0.49 MB per token, half per T4, read at ~200 GB/s effective. Prefill 2,000 tokens/s.
STEP_S, KV_S_PER_TOKEN, PREFILL_TOKENS_PER_S = 0.030, 1.2e-6, 2000.0
LOAD_S, API_S = 240.0, 0.5  # model loading before the first problem; the API's own time per problem
NUM_PROBLEMS, RUNS = 50, 40
CODE = "```python\nprint(1)\n```\n" + STOP


@dataclass(frozen=True)
class Hardware:
    step_s: float
    kv_s_per_token: float
    prefill_tokens_per_s: float
    code_workers: int = 4


T4 = Hardware(STEP_S, KV_S_PER_TOKEN, PREFILL_TOKENS_PER_S)
L4 = Hardware(0.028, 0.35e-6, 6000.0)  # 4x L4, a 14B model in 8 bits, tensor parallel
H100 = Hardware(0.010, 0.02e-6, 20000.0, code_workers=16)  # 1x H100, gpt-oss-120b (MXFP4 experts)


def round_seconds(prompt_tokens, completion_tokens, hw: Hardware = T4) -> float:
    """Prefill, then batched decoding in which each sequence leaves the batch when its completion ends."""
    lengths = np.sort(np.asarray(completion_tokens))
    if not len(lengths):
        return 0.0
    order = np.argsort(np.asarray(completion_tokens), kind="stable")
    prompts = np.asarray(prompt_tokens, dtype=float)[order]
    suffix = np.concatenate([np.cumsum(prompts[::-1])[::-1], [0.0]])  # prompt tokens of sequences i..end
    steps = np.arange(int(lengths[-1]))
    first_running = np.searchsorted(lengths, steps, side="right")
    running = len(lengths) - first_running
    context = suffix[first_running] + steps * running
    return float(np.sum(prompts) / hw.prefill_tokens_per_s + np.sum(hw.step_s + hw.kv_s_per_token * context))


def block_seconds(rng: np.random.Generator, count: int) -> np.ndarray:
    """How long `count` code blocks run: lognormal around 0.3 s, 5% time out at 5 s."""
    times = np.minimum(rng.lognormal(math.log(0.3), 1.0, count), 5.0)
    times[rng.random(count) < 0.05] = 5.0
    return times


def sample_completion(rng: np.random.Generator, d: float, answer: int, step: int, room: int) -> str:
    """One completion of a problem of difficulty `d` after `step` code outputs (the engine benchmark's model)."""
    length = int(min(rng.lognormal(math.log(220 * d**0.7), 0.6), room))
    u = rng.random()
    if length >= room:
        return "z" * length  # ran out of tokens: no answer, no code
    if u < 0.05:
        return "w" * length + " so $\\boxed{7}$"  # a prose answer without code
    if u < 0.05 + (0.25 if step == 0 else 0.55) / math.sqrt(d):
        right = rng.random() < 0.8 / math.sqrt(d)
        answer = answer if right else int(rng.integers(0, 6)) * 111
        return "y" * length + f" so $\\boxed{{{answer}}}$"
    return "x" * max(length - len(CODE), 0) + CODE


class SimulatedSandbox:
    """Runs nothing; advances a fake clock by `block_seconds` on `workers` workers."""

    def __init__(self, clock, rng: np.random.Generator, workers: int = 4) -> None:
        self.clock, self.rng, self.workers = clock, rng, workers

    def run_many(self, codes, *, keys=None, timeout=None) -> list[ExecResult]:
        times = block_seconds(self.rng, len(codes))
        self.clock.now += max(float(times.max()), float(times.sum()) / self.workers)
        return [ExecResult("ok", "1", float(t)) for t in times]

    def forget(self, key: str) -> None:
        pass


# ---------------------------------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    total_s: float  # the whole notebook
    load_s: float  # spent before the first problem
    reserve_s: float  # kept back by every policy
    hardware: Hardware
    candidates: int
    rounds: int
    max_new_tokens: int
    prompt_tokens: int
    tokens: dict  # class -> median tokens per round (lognormal, sigma 0.6)
    answer_rate: dict  # class -> P(a round ends with an answer): (first round, later rounds)
    right: dict  # class -> mean rate of right answers over problems
    per_call_limit_s: float | None = None


AIMO1 = dict(
    hardware=T4,
    candidates=48,
    rounds=4,
    max_new_tokens=2048,
    prompt_tokens=150,
    tokens={"basic": 250, "hard": 700},
    answer_rate={"basic": (0.35, 0.6), "hard": (0.15, 0.35)},
    right={"basic": 0.7, "hard": 0.4},
)
SCENARIOS = [
    Scenario("AIMO-1: 9 h, 2x T4, 48x4", 9 * 3600.0, LOAD_S, 15 * 60.0, **AIMO1),
    Scenario("stress: 3 h, 2x T4, 48x4", 3 * 3600.0, LOAD_S, 15 * 60.0, **AIMO1),
    Scenario(
        "AIMO-2-like: 5 h, 4x L4, 16 samples, 30-min calls",
        5 * 3600.0,
        300.0,
        10 * 60.0,
        L4,
        candidates=16,
        rounds=8,
        max_new_tokens=8192,
        prompt_tokens=300,
        tokens={"basic": 700, "hard": 2500},
        answer_rate={"basic": (0.2, 0.3), "hard": (0.08, 0.15)},
        right={"basic": 0.75, "hard": 0.4},
        per_call_limit_s=30 * 60.0,
    ),
    Scenario(
        "AIMO-3-like: 17,400 s, 1x H100, 8 attempts",
        17400.0,
        0.0,
        0.0,
        H100,
        candidates=8,
        rounds=16,
        max_new_tokens=16384,
        prompt_tokens=500,
        tokens={"basic": 1200, "hard": 4500},
        answer_rate={"basic": (0.1, 0.15), "hard": (0.03, 0.05)},
        right={"basic": 0.8, "hard": 0.4},
    ),
]
CURVES = {  # P(right | answered) for a problem whose rate is p, a candidate that wrote x times its class median
    "flat": lambda p, x: p,
    "falling": lambda p, x: min(0.98, p * 1.5 * math.exp(-0.5 * x)),
    "rising": lambda p, x: min(0.98, p * min(1.6, 0.4 + 0.6 * x)),
}
PLACEMENTS = ["front", "middle", "back", "random"]


# ------------------------------------------------------------------------------------------------- one problem


@dataclass
class Problem:
    """One problem's candidates, sampled once and replayed under every policy."""

    round_ends: list[float]  # sync: when round j ends, counted from the problem's start
    round_answers: list[list[int]]  # sync: the answers that arrived in round j (0 is the right one)
    round_running: list[int]  # sync: candidates still running after round j
    arrivals: list[tuple[float, int | None]]  # async: (when a candidate ended, its answer or None)


def sample_problem(rng: np.random.Generator, s: Scenario, kind: str, curve) -> Problem:
    """Each candidate writes rounds of lognormal length; a round ends with an answer with the class's rate, else
    with code (a block runs) and the next round, or, out of tokens or rounds, with nothing. An answer is right with
    `curve(p, x)`; a wrong one is the problem's popular wrong value (30%/40%) or one of 58 others."""
    n, median = s.candidates, s.tokens[kind]
    p = rng.beta(4 * s.right[kind], 4 * (1 - s.right[kind]))
    popular = 0.4 if kind == "hard" else 0.3
    tokens = np.zeros((n, s.rounds), dtype=int)
    ends, answers = np.zeros(n, dtype=int), [None] * n
    for c in range(n):
        written = 0
        for j in range(s.rounds):
            tokens[c, j] = int(min(rng.lognormal(math.log(median), 0.6), s.max_new_tokens))
            written, ends[c] = written + tokens[c, j], j
            if tokens[c, j] >= s.max_new_tokens:
                break
            if rng.random() < s.answer_rate[kind][0 if j == 0 else 1]:
                right = rng.random() < curve(p, written / (median * (j + 1)))
                answers[c] = 0 if right else 1 if rng.random() < popular else int(rng.integers(2, 60))
                break
    code = block_seconds(rng, n * s.rounds).reshape(n, s.rounds)
    context = np.full(n, float(s.prompt_tokens))
    round_ends, round_answers, round_running, steps, now = [], [], [], [], 0.0
    for j in range(s.rounds):
        live = [c for c in range(n) if ends[c] >= j]
        if not live:
            break
        seconds = round_seconds(context[live], tokens[live, j], s.hardware)
        steps.append(seconds / max(1, tokens[live, j].max()))
        going_on = [c for c in live if ends[c] > j]
        if going_on:
            blocks = code[going_on, j]
            seconds += max(float(blocks.max()), float(blocks.sum()) / s.hardware.code_workers)
        now += seconds
        context[live] += tokens[live, j]
        round_ends.append(now)
        round_answers.append([answers[c] for c in live if ends[c] == j and answers[c] is not None])
        round_running.append(len(going_on))
    # async: a candidate decodes at its round's step time and never waits for the slowest one of a round
    arrivals = [
        (sum(tokens[c, j] * steps[j] + (code[c, j] if j < ends[c] else 0.0) for j in range(ends[c] + 1)), answers[c])
        for c in range(n)
    ]
    return Problem(round_ends, round_answers, round_running, sorted(arrivals, key=lambda a: a[0]))


def vote(answers: list[int]) -> int | None:
    counts = {a: answers.count(a) for a in answers}
    return next((a for a in answers if counts[a] == max(counts.values())), None)  # ties: the earliest


def decided(answers: list[int], running: int, agree: int) -> bool:
    """The early stop: `agree` answers are equal, or the leader cannot be caught by the candidates still running."""
    counts = sorted((answers.count(a) for a in set(answers)), reverse=True) + [0, 0]
    return counts[0] >= agree or counts[0] > counts[1] + running


def solve_sync(pr: Problem, soft: float, agree: int | None) -> tuple[float, int | None]:
    """(end, voted answer): rounds start while the clock is before `soft`, and a started round runs to its end."""
    got, end = [], 0.0
    for j, round_end in enumerate(pr.round_ends):
        if (pr.round_ends[j - 1] if j else 0.0) >= soft:
            break
        end, got = round_end, got + pr.round_answers[j]
        if agree is not None and got and decided(got, pr.round_running[j], agree):
            break
    return end, vote(got)


def solve_cancel(pr: Problem, soft: float, agree: int | None, latency_s: float = 1.0) -> tuple[float, int | None]:
    """(end, voted answer): candidates stream on their own; at `soft` the rest are cancelled within `latency_s`."""
    got = []
    for i, (t, answer) in enumerate(pr.arrivals):
        if t > soft:
            return min(soft + latency_s, t), vote(got)
        if answer is not None:
            got.append(answer)
            if agree is not None and decided(got, len(pr.arrivals) - i - 1, agree):
                return t, vote(got)
    return (pr.arrivals[-1][0] if pr.arrivals else 0.0), vote(got)


# ---------------------------------------------------------------------------------------------------- policies


class FairShare(TimeBudget):
    def allotment(self) -> float:
        return max(min(self.remaining() / self.problems_left, self._cap()), 0.0)

    def _cap(self) -> float:
        return min(self.remaining(), self.ceiling_s if self.ceiling_s is not None else math.inf)


class StretchRule(FairShare):
    """TimeBudget as it was: min(2 x left / n, left - floor x (n - 1)), clamped to [60 s, 20 min]."""

    def allotment(self) -> float:
        left, n, floor = self.remaining(), self.problems_left, 60.0
        share = min(max(min(2 * left / n, left - floor * (n - 1)), floor), 1200.0)
        return max(min(share, self._cap()), 0.0)


class ClampRule(FairShare):
    """The AIMO-3 winners' rule, scaled to the budget: clamp(left - r x (n - 1), r, 3r), r = 300/348 share."""

    def allotment(self) -> float:
        r = CLAMP_FLOOR * self.first_share
        return max(min(max(self.remaining() - r * (self.problems_left - 1), r), 3 * r, self._cap()), 0.0)


POLICIES = {"fair share": FairShare, "stretch (before)": StretchRule, "clamp (AIMO-3)": ClampRule, "default": TimeBudget}


# ---------------------------------------------------------------------------------------------------- one run


@dataclass
class Run:
    correct: int = 0
    empty: int = 0  # problems the solver could not start although time remained
    overrun: float = 0.0  # the largest (end of a solve - the deadline the solver was told)
    total: float = 0.0


def simulate(problems: list[Problem], s: Scenario, policy: type, early_stop: bool, mode: str, grace_s=5.0) -> Run:
    """One run through `make_predict`'s logic: deadline from the budget, capped at the per-call limit less 60 s;
    the solver is told `grace_s` less; `predict` waits for it up to the run's end (or the per-call limit)."""
    clock = FakeClock(s.load_s)
    cap = None if s.per_call_limit_s is None else s.per_call_limit_s - 60.0
    budget = policy(
        total_s=s.total_s - s.load_s, num_problems=len(problems), reserve_s=s.reserve_s, ceiling_s=cap, clock=clock
    )
    agree = (s.candidates + 1) // 2 if early_stop else None
    busy_until, run = clock.now, Run()
    for pr in problems:
        clock.now += API_S
        called = clock.now
        deadline = budget.deadline() if cap is None else min(budget.deadline(), called + cap)
        limit = budget.end if cap is None else min(budget.end, called + cap)
        start = max(called, busy_until)
        soft = deadline - start - grace_s
        if soft <= 0:
            run.empty += budget.end - called > grace_s
            clock.now = max(called, min(start, deadline))
            budget.done()
            continue
        end, answer = solve_cancel(pr, soft, agree) if mode == "cancel" else solve_sync(pr, soft, agree)
        run.overrun = max(run.overrun, end - soft)
        busy_until = start + end
        run.correct += answer == 0 and busy_until <= limit
        clock.now = min(busy_until, limit)
        budget.done()
    run.total = max(clock.now, busy_until)
    return run


def placed(basic: list, hard: list, where: str, seed: int) -> list:
    if where == "front":
        return hard + basic
    if where == "middle":
        return basic[:17] + hard + basic[17:]
    if where == "back":
        return basic + hard
    problems = basic + hard
    return [problems[i] for i in np.random.default_rng(seed + 10**6).permutation(len(problems))]


def run_task(task: tuple) -> dict:
    """Every policy, placement, mode and early-stop setting on one seed's problems."""
    curve, scenario_index, seed = task
    s, rng = SCENARIOS[scenario_index], np.random.default_rng(seed)
    basic = [sample_problem(rng, s, "basic", CURVES[curve]) for _ in range(35)]
    hard = [sample_problem(rng, s, "hard", CURVES[curve]) for _ in range(15)]
    results = {}
    for where in PLACEMENTS:
        problems = placed(basic, hard, where, seed)
        for mode in ("cancel", "sync") if curve == "flat" else ("cancel",):
            for early in (False, True):
                for name, policy in POLICIES.items():
                    results[where, mode, early, name] = simulate(problems, s, policy, early, mode)
    return results


# ---------------------------------------------------------------------------------------------------- report


def paired(rows: list[dict], key: tuple, other: tuple) -> str:
    d = np.array([r[key].correct - r[other].correct for r in rows])
    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    return f"{d.mean():+.2f} ± {2 * se:.2f}"


def policy_table(results: dict, mode: str, early: bool) -> str:
    header = ["scenario", "hard problems", *[f"{name}: mean (worst)" for name in POLICIES]]
    header += ["default - clamp", "default - fair"]
    rows = []
    for si, s in enumerate(SCENARIOS):
        for where in PLACEMENTS:
            runs = results["flat", si]
            cells = []
            for name in POLICIES:
                correct = [r[where, mode, early, name].correct for r in runs]
                cells.append(f"{statistics.mean(correct):.2f} ({min(correct)})")
            key = (where, mode, early, "default")
            cells += [paired(runs, key, (where, mode, early, name)) for name in ("clamp (AIMO-3)", "fair share")]
            rows.append([s.name.split(":")[0], where, *cells])
    return markdown_table(header, rows)


def safety_table(results: dict) -> str:
    header = ["scenario", "execution", *[f"{name}: no time / overrun s / hours" for name in POLICIES]]
    rows = []
    for si, s in enumerate(SCENARIOS):
        for mode in ("cancel", "sync"):
            cells = []
            for name in POLICIES:
                runs = [
                    r[where, mode, early, name]
                    for r in results["flat", si]
                    for where in PLACEMENTS
                    for early in (False, True)
                ]
                worst_total = max(run.total for run in runs) / 3600
                cells.append(
                    f"{max(r.empty for r in runs)} / {max(r.overrun for r in runs):.0f} / {worst_total:.2f}"
                )
            rows.append([s.name.split(":")[0], mode, *cells])
    return markdown_table(header, rows)


def sensitivity_table(results: dict) -> str:
    header = ["curve", "scenario", "hard problems"]
    header += [f"default - {name} ({stop})" for stop in ("no early stop", "early stop") for name in ("clamp", "fair")]
    rows = []
    for curve in ("falling", "rising"):
        for si, s in enumerate(SCENARIOS):
            for where in PLACEMENTS:
                runs = results[curve, si]
                cells = [
                    paired(runs, (where, "cancel", early, "default"), (where, "cancel", early, name))
                    for early in (False, True)
                    for name in ("clamp (AIMO-3)", "fair share")
                ]
                rows.append([curve, s.name.split(":")[0], where, *cells])
    return markdown_table(header, rows)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    tasks = [(curve, si, seed) for curve in CURVES for si in range(len(SCENARIOS)) for seed in range(runs)]
    with Pool(2) as pool:
        flat = pool.map(run_task, tasks)
    results: dict = {}
    for (curve, si, _), result in zip(tasks, flat, strict=True):
        results.setdefault((curve, si), []).append(result)
    scenarios = "\n".join(
        f"- {s.name}: {s.total_s:,.0f} s budget, {s.load_s:.0f} s loading, {s.reserve_s:.0f} s reserve; "
        f"{s.candidates} candidates x {s.rounds} rounds of at most {s.max_new_tokens} tokens; median tokens per round "
        f"{s.tokens['basic']} (basic) / {s.tokens['hard']} (hard); answer per round {s.answer_rate['basic']} / "
        f"{s.answer_rate['hard']}; right answers {s.right['basic']} / {s.right['hard']}"
        + (f"; {s.per_call_limit_s / 60:.0f}-minute limit per call" if s.per_call_limit_s else "")
        for s in SCENARIOS
    )
    body = "\n\n".join(
        [
            f"{runs} runs per scenario; in each, the same 50 problems (35 basic, 15 hard) in four placements, and every "
            "policy, early-stop setting and execution model replays the same candidates. Cells: correct answers of 50, "
            "mean over runs (worst run); `default - X`: the paired mean difference ± twice its standard error "
            "(a tie when the interval holds 0). The answer model is a toy (module docstring of the script): its "
            "absolute numbers mean nothing, and which policy wins depends on it; the sensitivity tables rerun the "
            "comparison under two other curves.\n\n" + scenarios,
            "### Async engine (cancellation at the deadline), no early stop\n\n" + policy_table(results, "cancel", False),
            "### Async engine, early stops\n\n" + policy_table(results, "cancel", True),
            "### Synchronous loop (a started round runs to its end), no early stop\n\n"
            + policy_table(results, "sync", False),
            "### Synchronous loop, early stops\n\n" + policy_table(results, "sync", True),
            "### Problems left with no time (most in a run), largest deadline overrun, longest run\n\n"
            "Over every placement and early-stop setting. The overrun is how long after the deadline the solver was "
            "told a solve ended.\n\n" + safety_table(results),
            "### Sensitivity: other curves of right answers against length (async engine)\n\n"
            "falling: long candidates are less often right (rate x 1.5 exp(-x/2), x = length / class median); "
            "rising: they are more often right (rate x min(1.6, 0.4 + 0.6 x)).\n\n" + sensitivity_table(results),
        ]
    )
    write_section("budget", "Time allocation: policies on simulated runs", body)
    print(body)


if __name__ == "__main__":
    main()
