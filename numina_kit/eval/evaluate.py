"""Evaluation: run SC-TIR over a problem set with reference answers and score it, for one or more seeds.

`python -m numina_kit evaluate --model PATH --data FILE [--config YAML --num-candidates 48 --max-rounds 4 --limit K
--seeds 1,2,3 --out DIR --competition aimo1|aimo2|aimo3|general --no-code]` writes `results.json`, `report.md`,
`accuracy_vs_candidates.png` and `solutions.jsonl` (every candidate of every problem) to DIR.

What is measured (Numina reported maj@48 at depth 4 over several seeds but published no evaluation script):
- maj@N: the voted answer is right, per seed and averaged over seeds.
- pass@N: some candidate's answer is right (the ceiling a better vote could reach).
- the share of valid answers that came from code (the answer is printed by the candidate's last code run).
- time, tokens and rounds per problem, and accuracy against the number of candidates voted (subsets of the N).

"Right" is `numina_kit.answers.judge` under the config's competition, on references as the files write them
(`"142.0"` included): AIMO-1 reduces AMC's `8178` to 178; under aimo2/aimo3 an out-of-range reference cannot be
matched; "general" compares by equivalence.
"""

import argparse
import logging
from collections.abc import Callable, Container, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from numina_kit.answers import GENERAL, is_equivalent, judge
from numina_kit.data.jsonl import JsonlAppender
from numina_kit.data.problems import Problem, load_problems
from numina_kit.errors import InputError
from numina_kit.eval.report import write_report
from numina_kit.eval.results import Evaluation, ProblemResult, solution_row
from numina_kit.models.base import Generator
from numina_kit.options import add_sctir_arguments, sctir_settings
from numina_kit.sandbox.pool import Sandbox
from numina_kit.sctir.loop import SCTIRConfig, Solution, solve


logger = logging.getLogger(__name__)


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
    done: Container[tuple[str, int]] = (),
    concurrency: int = 1,
) -> Evaluation:
    """Solve every problem once per seed and score the answers; `on_result` sees each result as it comes.

    `done` holds (problem id, seed) pairs already solved (a resumed run): they are skipped and not in the returned
    `Evaluation`. `concurrency` > 1 solves that many problems at once on threads, for a generator that serves
    concurrent calls (an OpenAI-compatible endpoint); results are then reported as they finish and returned in order.
    """
    missing = [p.id for p in problems if p.answer is None]
    if missing:
        raise InputError(
            f"{len(missing)} problem(s) have no reference answer (first: {missing[0]}); evaluate needs one"
        )
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, got {concurrency}")
    if executor is None:
        with Sandbox(config.executor) as sandbox:
            return evaluate(
                problems,
                generator,
                config,
                seeds=seeds,
                executor=sandbox,
                on_result=on_result,
                data=data,
                model=model,
                done=done,
                concurrency=concurrency,
            )
    jobs = [(seed, problem) for seed in seeds for problem in problems if (problem.id, seed) not in done]

    def run(job: tuple[int, Problem]) -> tuple[ProblemResult, Solution]:
        seed, problem = job
        solution = solve(problem.problem, generator, replace(config, seed=seed), executor=executor)
        return score(problem, seed, solution, config.competition), solution

    results = []

    def record(result: ProblemResult, solution: Solution) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result, solution)

    if concurrency == 1:
        for job in jobs:
            record(*run(job))
    else:
        pool = ThreadPoolExecutor(max_workers=concurrency)
        try:
            for future in as_completed([pool.submit(run, job) for job in jobs]):
                record(*future.result())
        finally:  # on an interrupt, problems not started yet are dropped instead of waited for
            pool.shutdown(wait=True, cancel_futures=True)
    order = {(problem.id, seed): i for i, (seed, problem) in enumerate(jobs)}
    results.sort(key=lambda r: order[r.id, r.seed])
    return Evaluation(data=data, model=model, config=config, seeds=list(seeds), results=results)


def score(problem: Problem, seed: int, solution: Solution, competition: str) -> ProblemResult:
    """Compare a solution and each of its candidates with the problem's reference answer."""
    reference = problem.answer or ""
    voted = solution.voted  # in the order they finished
    classes: list[int | str] = []  # one representative answer per label
    labels: list[int | None] = []
    for candidate in voted:
        label = _label_of(candidate.answer, classes, competition)
        labels.append(label)
    labels += [None] * (len(solution.candidates) - len(voted))
    right = [i for i, answer in enumerate(classes) if judge(reference, answer, competition)]
    return ProblemResult(
        id=problem.id,
        seed=seed,
        reference=reference,
        answer=solution.answer,
        correct=not solution.is_fallback and judge(reference, solution.answer, competition),
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
    add_sctir_arguments(parser)
    parser.add_argument("--no-code", action="store_true", help="do not run code; append empty output blocks")
    parser.add_argument("--limit", type=int, help="only the first K problems")
    parser.add_argument("--seeds", default="0", help="comma-separated sampling seeds, one full run each")
    parser.add_argument("--out", default="outputs/evaluate", help="folder for results.json, report.md and the plot")
    parser.add_argument("--backend", default="auto", help="generation backend: auto, hf or vllm")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from numina_kit.models.load import load_generator

    settings = sctir_settings(args) | ({"execute_code": False} if args.no_code else {})
    config = SCTIRConfig.from_dict(settings, source=str(args.config or "flags"))
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
        JsonlAppender(solutions_path) as solutions,
    ):
        for line in sandbox.isolation.missing() if config.execute_code else []:
            logger.warning(line)
        correct = 0

        def update(result: ProblemResult, solution: Solution) -> None:
            nonlocal correct
            correct += result.correct
            solutions.append(solution_row(result, solution))
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
