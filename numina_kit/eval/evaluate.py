"""Evaluation: run SC-TIR over a problem set with reference answers and score it, for one or more seeds.

`python -m numina_kit evaluate --model PATH --data FILE [--num-candidates 48 --max-rounds 4 --limit K --seeds 1,2,3
--out DIR --competition aimo1|aimo2|aimo3|general --no-code --config YAML]` writes `results.json`, `report.md`,
`accuracy_vs_candidates.png` and `solutions.jsonl` (every candidate of every problem) to DIR.

What is measured (numina.md §4: Numina scored maj@48 at depth 4 over 5-10 seeds but never published the script):
- maj@N: the voted answer equals the reference, per seed and averaged over seeds.
- pass@N: some candidate's answer equals the reference (the ceiling a better vote could reach).
- the share of valid answers that came from code (the answer is printed by the candidate's last code run).
- time, tokens and rounds per problem, and accuracy against the number of candidates voted (subsets of the N).

References are read as the files write them (`"142.0"` included). Integer competitions compare
`to_competition_answer` of both sides (so AIMO-1 reduces AMC's `8178` to 178, as Numina's notebook did; under
aimo2/aimo3 an out-of-range reference cannot be matched and is counted wrong); "general" compares with
`answers.is_equivalent`.
"""

import argparse
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from numina_kit.answers.extract import is_equivalent, to_competition_answer
from numina_kit.data.problems import Problem, load_problems
from numina_kit.errors import InputError
from numina_kit.models.base import Generator
from numina_kit.sandbox.pool import Sandbox
from numina_kit.sctir.loop import GENERAL, SCTIRConfig, Solution, solve
from numina_kit.sctir.voting import majority_vote


logger = logging.getLogger(__name__)

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


def evaluate(
    problems: Sequence[Problem],
    generator: Generator,
    config: SCTIRConfig,
    *,
    seeds: Sequence[int] = (0,),
    executor: Sandbox | None = None,
    on_result: Callable[[ProblemResult, Solution], None] | None = None,
    data: str = "",
    model: str = "",
) -> Evaluation:
    """Solve every problem once per seed and score the answers; `on_result` sees each result as it comes."""
    missing = [p.id for p in problems if p.answer is None]
    if missing:
        raise InputError(
            f"{len(missing)} problem(s) have no reference answer (first: {missing[0]}); evaluate needs one"
        )
    if executor is None:
        with Sandbox(config.executor) as sandbox:
            return evaluate(
                problems, generator, config, seeds=seeds, executor=sandbox, on_result=on_result, data=data, model=model
            )
    results = []
    for seed in seeds:
        seeded = replace(config, seed=seed)
        for problem in problems:
            solution = solve(problem.problem, generator, seeded, executor=executor)
            result = score(problem, seed, solution, config.competition)
            results.append(result)
            if on_result is not None:
                on_result(result, solution)
    return Evaluation(data=data, model=model, config=config, seeds=list(seeds), results=results)


def score(problem: Problem, seed: int, solution: Solution, competition: str) -> ProblemResult:
    """Compare a solution and each of its candidates with the problem's reference answer."""
    reference = problem.answer or ""
    voted = sorted((c for c in solution.candidates if c.voted), key=lambda c: (c.finished_round, c.index))
    classes: list[int | str] = []  # one representative answer per label
    labels: list[int | None] = []
    for candidate in voted:
        label = _label_of(candidate.answer, classes, competition)
        labels.append(label)
    labels += [None] * (len(solution.candidates) - len(voted))
    right = [i for i, answer in enumerate(classes) if is_right(reference, answer, competition)]
    return ProblemResult(
        id=problem.id,
        seed=seed,
        reference=reference,
        answer=solution.answer,
        correct=not solution.is_fallback and is_right(reference, solution.answer, competition),
        passed=bool(right),
        num_valid=len(voted),
        from_code=sum(c.from_code for c in voted),
        is_fallback=solution.is_fallback,
        rounds=solution.rounds,
        stop_reason=solution.stop_reason,
        total_s=solution.total_s,
        generation_s=solution.generation_s,
        execution_s=solution.execution_s,
        generated_tokens=solution.generated_tokens,
        labels=labels,
        right_labels=right,
    )


def is_right(reference: str, answer: int | str, competition: str) -> bool:
    """Whether `answer` (a competition integer, or a string for "general") matches the reference as written."""
    if competition == GENERAL:
        return bool(str(answer).strip()) and is_equivalent(reference, str(answer))
    gold = to_competition_answer(reference, competition)
    return gold is not None and answer == gold


def _label_of(answer: int | str, classes: list[int | str], competition: str) -> int:
    for label, representative in enumerate(classes):
        same = answer == representative if competition != GENERAL else is_equivalent(str(representative), str(answer))
        if same:
            return label
    classes.append(answer)
    return len(classes) - 1


# ---------------------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model folder (or id) for numina_kit.models.load.load_generator"
    )
    parser.add_argument("--data", required=True, help="JSONL, CSV or Parquet with problem and answer columns")
    parser.add_argument("--config", help="SCTIRConfig YAML; the flags below override it")
    parser.add_argument("--num-candidates", type=int, help="candidates per problem (default 48)")
    parser.add_argument("--max-rounds", type=int, help="generation rounds per candidate (default 4)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per round (default 2048)")
    parser.add_argument("--competition", choices=["aimo1", "aimo2", "aimo3", GENERAL], help="answer rule")
    parser.add_argument("--no-code", action="store_true", help="do not run code; append empty output blocks")
    parser.add_argument("--limit", type=int, help="only the first K problems")
    parser.add_argument("--seeds", default="0", help="comma-separated sampling seeds, one full run each")
    parser.add_argument("--out", default="outputs/evaluate", help="folder for results.json, report.md and the plot")
    parser.add_argument("--backend", default="auto", help="generation backend: auto, hf or vllm")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from numina_kit.eval.report import write_report
    from numina_kit.models.load import load_generator

    config = SCTIRConfig.from_yaml(args.config) if args.config else SCTIRConfig()
    overrides = {
        "num_candidates": args.num_candidates,
        "max_rounds": args.max_rounds,
        "max_new_tokens": args.max_new_tokens,
        "competition": args.competition,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.no_code:
        config = replace(config, execute_code=False)
    seeds = _parse_seeds(args.seeds)
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    problems = load_problems(args.data, limit=args.limit)
    generator = load_generator(args.model, backend=args.backend)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    solutions_path = out / "solutions.jsonl"
    with (
        Sandbox(config.executor) as sandbox,
        tqdm(total=len(problems) * len(seeds), desc="evaluate", unit="problem") as bar,
        solutions_path.open("w", encoding="utf-8") as solutions,
    ):
        for line in sandbox.isolation.missing() if config.execute_code else []:
            logger.warning(line)
        correct = 0

        def update(result: ProblemResult, solution: Solution) -> None:
            nonlocal correct
            correct += result.correct
            head = f'{{"id": {json.dumps(result.id)}, "seed": {result.seed}, "correct": {json.dumps(result.correct)}, '
            solutions.write(head + '"solution": ' + solution.to_json() + "}\n")
            bar.update(1)
            bar.set_postfix(correct=f"{correct}/{bar.n}", answer=result.answer)

        evaluation = evaluate(
            problems, generator, config, seeds=seeds, executor=sandbox, on_result=update, data=str(args.data),
            model=str(args.model),
        )  # fmt: skip
    paths = [*write_report(evaluation, out), solutions_path]
    summary = evaluation.summary()
    n = config.num_candidates
    print(
        f"maj@{n} {summary[f'maj@{n}']:.1%}  pass@{n} {summary[f'pass@{n}']:.1%}  "
        f"answers from code {summary['answers_from_code']:.1%}  {summary['seconds_per_problem']:.1f} s/problem"
    )
    for path in paths:
        print(f"wrote {path}")
    return 0


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise InputError("--seeds is empty")
    return seeds
