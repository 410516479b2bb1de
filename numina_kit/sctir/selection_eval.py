"""Scoring selectors on the same stored candidates: accuracy against the number of candidates k, pass@k, and a paired
comparison of each selector with plain majority.

`python -m numina_kit evaluate` writes every candidate, with its evidence, to `solutions.jsonl`; `load_stored` reads
them back with the reference answers, and `score_selectors` votes each selector on the same random subsets of k
candidates per problem and seed, so that differences between selectors are differences of rule, not of sampling.
`paired_comparison` tests a selector against a baseline on those paired outcomes (McNemar's exact test at the full
k, and a bootstrap over problems of the accuracy difference at every k); `selection_headroom` puts the same
bootstrap on pass@k - maj@k, the most any selector could add.
"""

import dataclasses
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from numina_kit.answers import GENERAL, is_equivalent, judge
from numina_kit.data.jsonl import read_jsonl
from numina_kit.data.problems import Problem
from numina_kit.errors import InputError
from numina_kit.eval.statistics import pass_at_k, sign_test
from numina_kit.sctir.candidates import Candidate, CandidateStatus, voted_in_order
from numina_kit.sctir.selection import Selector


CANDIDATE_FIELDS = {f.name for f in dataclasses.fields(Candidate)}


@dataclass
class StoredProblem:
    """One problem under one seed as evaluate stored it: its reference and all its candidates."""

    id: str
    seed: int
    reference: str
    candidates: list[Candidate]

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)


def candidate_from_dict(data: dict) -> Candidate:
    """A `Candidate` from its stored JSON form (`Solution.to_json`); unknown keys (from newer versions) ignored."""
    kept = {key: value for key, value in data.items() if key in CANDIDATE_FIELDS}
    try:
        kept["status"] = CandidateStatus(kept.get("status", "stopped"))
        return Candidate(**kept)
    except (TypeError, ValueError) as error:
        raise InputError(f"not a stored candidate: {error}") from None


def load_stored(solutions: str | Path, problems: Iterable[Problem]) -> list[StoredProblem]:
    """The rows of an evaluate run's `solutions.jsonl`, with the reference answers of `problems`."""
    references = {p.id: p.answer for p in problems}
    stored = []
    for row in read_jsonl(Path(solutions)):
        if row.get("id") not in references or references[row["id"]] is None:
            raise InputError(f"{solutions}: problem {row.get('id')!r} has no reference answer in the problem file")
        candidates = [candidate_from_dict(c) for c in row["solution"]["candidates"]]
        stored.append(StoredProblem(row["id"], int(row["seed"]), references[row["id"]], candidates))
    if not stored:
        raise InputError(f"{solutions}: no stored solutions")
    return stored


@dataclass
class SelectionScores:
    """Per selector and k: one accuracy per stored problem (the mean over the subsets drawn), in `problems` order."""

    problems: list[tuple[str, int]]  # (id, seed)
    ks: list[int]
    accuracy: dict[str, dict[int, list[float]]]
    pass_k: dict[int, list[float]]

    def mean(self, name: str, k: int, seed: int | None = None) -> float:
        values = self._rows(self.accuracy[name][k], seed)
        return sum(values) / len(values)

    def pass_mean(self, k: int, seed: int | None = None) -> float:
        values = self._rows(self.pass_k[k], seed)
        return sum(values) / len(values)

    def seeds(self) -> list[int]:
        return sorted({seed for _, seed in self.problems})

    def _rows(self, values: list[float], seed: int | None) -> list[float]:
        return [v for (_, s), v in zip(self.problems, values, strict=True) if seed is None or s == seed]


def score_selectors(
    stored: Sequence[StoredProblem],
    selectors: Sequence[Selector],
    *,
    ks: Sequence[int] | None = None,
    draws: int = 32,
    competition: str = "aimo1",
    seed: int = 0,
) -> SelectionScores:
    """Vote every selector on the same subsets: for each problem and k, `draws` random k-subsets of its candidates
    (one, all of them, at k = N); a selector's accuracy there is the share of subsets whose winner is right."""
    n = min(p.num_candidates for p in stored)
    ks = sorted(set(ks or [k for k in (1, 2, 4, 8, 16, 32, 48, 64) if k <= n] + [n]))
    if ks[0] < 1 or ks[-1] > n:
        raise InputError(f"k must be between 1 and {n} (the fewest candidates any problem has), got {ks}")
    names = [s.name for s in selectors]
    if len(set(names)) != len(names):
        raise InputError(f"selectors need distinct names, got {names}")
    equivalent = is_equivalent if competition == GENERAL else None
    rng = random.Random(seed)
    accuracy: dict[str, dict[int, list[float]]] = {name: {k: [] for k in ks} for name in names}
    pass_k: dict[int, list[float]] = {k: [] for k in ks}
    for problem in stored:
        is_right = _judge(problem.reference, competition)
        candidates = problem.candidates[:n]
        correct = sum(c.voted and is_right(c.answer) for c in candidates)
        for k in ks:
            pass_k[k].append(pass_at_k(n, correct, k))
            subsets = [range(n)] if k == n else [sorted(rng.sample(range(n), k)) for _ in range(draws)]
            wins = dict.fromkeys(names, 0)
            for subset in subsets:
                voted = voted_in_order([candidates[i] for i in subset])
                for selector in selectors:
                    winner = selector.select(voted, equivalent=equivalent).winner if voted else None
                    wins[selector.name] += is_right(winner)
            for name in names:
                accuracy[name][k].append(wins[name] / len(subsets))
    return SelectionScores([(p.id, p.seed) for p in stored], ks, accuracy, pass_k)


def _judge(reference: str, competition: str) -> Callable[[object], bool]:
    """`judge` against one reference, remembering each answer's verdict (a problem's answers repeat a lot)."""
    verdicts: dict[object, bool] = {}

    def is_right(answer: object) -> bool:
        if answer not in verdicts:
            verdicts[answer] = answer is not None and judge(reference, answer, competition)
        return verdicts[answer]

    return is_right


@dataclass(frozen=True)
class Comparison:
    """A selector against a baseline at one k: the accuracy difference with its bootstrap 95% interval and
    one-sided p (share of resamples where the selector does not beat the baseline), and McNemar's exact test on
    the problems where exactly one of them is right (`wins`, `losses`; only at the full k, where each is 0 or 1)."""

    name: str
    baseline: str
    k: int
    difference: float
    low: float
    high: float
    bootstrap_p: float
    wins: int | None = None
    losses: int | None = None
    mcnemar_p: float | None = None


def paired_comparison(
    scores: SelectionScores, name: str, baseline: str = "majority", *, k: int, resamples: int = 2000, seed: int = 0
) -> Comparison:
    """Compare `name` with `baseline` on the same problems and seeds at `k`. The bootstrap resamples problem ids
    (all seeds of a drawn problem go together: they share its difficulty)."""
    ours, theirs = scores.accuracy[name][k], scores.accuracy[baseline][k]
    difference, low, high, bootstrap_p = bootstrap_difference(scores.problems, ours, theirs, resamples, seed)
    wins = losses = mcnemar = None
    if k == scores.ks[-1]:
        wins = sum(a > b for a, b in zip(ours, theirs, strict=True))
        losses = sum(a < b for a, b in zip(ours, theirs, strict=True))
        mcnemar = sign_test(wins, losses)  # McNemar's exact test on 0/1 outcomes
    return Comparison(name, baseline, k, difference, low, high, bootstrap_p, wins, losses, mcnemar)


def selection_headroom(scores: SelectionScores, *, k: int, resamples: int = 2000, seed: int = 0) -> Comparison:
    """pass@k against maj@k on the same candidates: the accuracy a perfect selector would add to plain majority
    (what a test bed must leave for selectors to show), with the same bootstrap over problems."""
    ours, theirs = scores.pass_k[k], scores.accuracy["majority"][k]
    difference, low, high, bootstrap_p = bootstrap_difference(scores.problems, ours, theirs, resamples, seed)
    return Comparison(f"pass@{k}", "majority", k, difference, low, high, bootstrap_p)


def bootstrap_difference(
    problems: Sequence[tuple[str, int]], ours: Sequence[float], theirs: Sequence[float], resamples: int, seed: int
) -> tuple[float, float, float, float]:
    """Mean of `ours - theirs` over (problem, seed) rows, its 95% bootstrap interval and one-sided p (share of
    resamples <= 0), resampling problem ids with all their seeds together."""
    by_problem: dict[str, list[float]] = {}
    for (pid, _), a, b in zip(problems, ours, theirs, strict=True):
        by_problem.setdefault(pid, []).append(a - b)
    groups = list(by_problem.values())
    total = sum(len(g) for g in groups)
    difference = sum(sum(g) for g in groups) / total
    rng = random.Random(seed)
    samples = []
    for _ in range(resamples):
        drawn = [groups[rng.randrange(len(groups))] for _ in groups]
        samples.append(sum(sum(g) for g in drawn) / sum(len(g) for g in drawn))
    samples.sort()
    low, high = samples[int(0.025 * resamples)], samples[min(resamples - 1, int(0.975 * resamples))]
    return difference, low, high, sum(s <= 0 for s in samples) / resamples
