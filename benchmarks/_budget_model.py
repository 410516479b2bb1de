"""The simulated runs behind benchmarks/budget.py: latency of the three machines, the four scenarios, the toy answer
model, and one problem solved by the synchronous loop or by the async engine (cancellation at the deadline).

`benchmarks/engine.py` uses the 2x T4 latency model and the problem model of the engine benchmark from here too
(through `budget`).
"""

import math
from dataclasses import dataclass

import numpy as np

from numina_kit.protocols.tora import STOP
from numina_kit.sandbox.pool import ExecResult


# ---------------------------------------------------------------------------------- latency (shared with engine.py)
# 2x T4, 8-bit 7B: decoding step = 30 ms + 1.2 us x context tokens of the running sequences. 30 ms: the 7.4 GB of
# 8-bit weights are read once per step, 3.7 GB per T4 at an effective ~125 GB/s of its 320 GB/s (AutoAWQ PR #92
# measured 29 ms/step for a 4-bit Mistral-7B on one T4, the same bytes per GPU). 1.2 us: the fp16 KV cache of a
# 30-layer, 4096-wide model is 0.49 MB per token, half per T4, read at ~200 GB/s effective. Prefill 2,000 tokens/s.
STEP_S, KV_S_PER_TOKEN, PREFILL_TOKENS_PER_S = 0.030, 1.2e-6, 2000.0
LOAD_S, API_S = 240.0, 0.5  # model loading before the first problem; the API's own time per problem
NUM_PROBLEMS = 50
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
