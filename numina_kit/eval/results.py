"""Evaluation records: one `ProblemResult` per problem and seed, and the `Evaluation` that computes the figures.

Shared by `numina_kit.eval.evaluate` (which produces them), `numina_kit.eval.report` (which writes them out) and the
validation suite (`numina_kit.eval.validate`, which stores them per model and set). `solution_row` is the one JSON
line a run log keeps per problem and seed: the result and every candidate of the solution behind it.
"""

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from numina_kit.sctir.loop import SCTIRConfig
from numina_kit.sctir.voting import majority_vote


SUBSETS_PER_K = 32  # random subsets of candidates drawn per point of the accuracy-vs-candidates curve


@dataclass
class ProblemResult:
    """One problem under one seed: the voted answer, whether it and any candidate were right, and the costs."""

    id: str
    seed: int
    reference: str
    answer: int | str
    correct: bool
    passed: bool  # some candidate's answer is right
    num_valid: int  # candidates whose answer was voted
    from_code: int  # of those, answers printed by the candidate's last code run
    is_fallback: bool
    rounds: int
    stop_reason: str
    total_s: float
    generation_s: float
    execution_s: float
    generated_tokens: int
    # one label per candidate, valid answers first in the order they finished: equivalent answers share a label;
    # None for a candidate without a valid answer. `right_labels` are those equal to the reference.
    labels: list[int | None] = field(default_factory=list)
    right_labels: list[int] = field(default_factory=list)

    @property
    def pass_at_1(self) -> float:
        """The share of candidates whose answer is right (pass@1 estimated from all N samples)."""
        right = set(self.right_labels)
        return sum(label in right for label in self.labels) / len(self.labels) if self.labels else 0.0

    @classmethod
    def from_dict(cls, data: dict) -> "ProblemResult":
        """A result read back from a run log (`solution_row`'s "result"), ignoring keys it does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def solution_row(result: ProblemResult, solution: object) -> dict:
    """The run log's line for one problem and seed: its id, seed, result and the full solution (every candidate)."""
    return {"id": result.id, "seed": result.seed, "result": result, "solution": solution}


# Per-problem figures, each a function of one ProblemResult (averaged over seeds by `Evaluation.per_problem`).
METRICS: dict[str, Callable[[ProblemResult], float]] = {
    "pass@1": lambda r: r.pass_at_1,
    "maj@k": lambda r: float(r.correct),
    "pass@k": lambda r: float(r.passed),
}


@dataclass
class Evaluation:
    """All results of a run and the figures computed from them."""

    data: str
    model: str
    config: SCTIRConfig
    seeds: list[int]
    results: list[ProblemResult]

    def for_seed(self, seed: int) -> list[ProblemResult]:
        return [r for r in self.results if r.seed == seed]

    def per_problem(self, metric: str) -> dict[str, float]:
        """One of `METRICS` per problem, averaged over the seeds it was run with (problems in first-seen order)."""
        totals: dict[str, list[float]] = {}
        for row in self.results:
            totals.setdefault(row.id, []).append(METRICS[metric](row))
        return {problem: sum(values) / len(values) for problem, values in totals.items()}

    def maj(self, seed: int) -> float:
        rows = self.for_seed(seed)
        return sum(r.correct for r in rows) / len(rows) if rows else 0.0

    def pass_at_n(self, seed: int) -> float:
        rows = self.for_seed(seed)
        return sum(r.passed for r in rows) / len(rows) if rows else 0.0

    def summary(self) -> dict:
        """The headline figures: maj@N and pass@N per seed and their means, code share, costs per problem."""
        n, count = self.config.num_candidates, max(len(self.results), 1)
        valid = sum(r.num_valid for r in self.results)
        per_seed = {seed: {"maj": self.maj(seed), "pass": self.pass_at_n(seed)} for seed in self.seeds}
        return {
            "problems": len(self.results) // max(len(self.seeds), 1),
            "num_candidates": n,
            "max_rounds": self.config.max_rounds,
            f"maj@{n}": sum(s["maj"] for s in per_seed.values()) / len(per_seed),
            f"pass@{n}": sum(s["pass"] for s in per_seed.values()) / len(per_seed),
            "per_seed": per_seed,
            "answers_from_code": sum(r.from_code for r in self.results) / valid if valid else 0.0,
            "valid_answers_per_problem": valid / count,
            "fallback_share": sum(r.is_fallback for r in self.results) / count,
            "seconds_per_problem": sum(r.total_s for r in self.results) / count,
            "generation_s_per_problem": sum(r.generation_s for r in self.results) / count,
            "execution_s_per_problem": sum(r.execution_s for r in self.results) / count,
            "tokens_per_problem": sum(r.generated_tokens for r in self.results) / count,
            "rounds_per_problem": sum(r.rounds for r in self.results) / count,
        }

    def accuracy_by_candidates(self, seed: int | None = None) -> dict[int, float]:
        """maj@k for k = 1, 2, 4, ... N: the mean over problems of the vote of k candidates drawn without replacement.

        Each point averages `SUBSETS_PER_K` random subsets per problem (k = N uses all candidates, i.e. maj@N).
        Ties go to the answer that finished first, as in `solve`.
        """
        rows = self.results if seed is None else self.for_seed(seed)
        n = self.config.num_candidates
        ks = sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})
        rng = random.Random(0)
        curve = {}
        for k in ks:
            total = 0.0
            for row in rows:
                draws = 1 if k == n else SUBSETS_PER_K
                for _ in range(draws):
                    picked = sorted(rng.sample(range(n), k)) if k < n else range(n)
                    votes = [row.labels[i] for i in picked if i < len(row.labels) and row.labels[i] is not None]
                    winner = majority_vote(votes).winner if votes else None
                    total += (winner in row.right_labels) / draws
            curve[k] = total / len(rows) if rows else 0.0
        return curve
