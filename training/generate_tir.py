"""Generate NuminaMath-TIR-style training data: a teacher solves problems with code, wrong answers are thrown away.

Usage:

    # A local vLLM server (`vllm serve <model> --port 8000`), the settings of a recipe:
    python training/generate_tir.py --config training/recipes/generate_tir/vllm_local.yaml

    # A hosted OpenAI-compatible API; the key is read from the environment variable named by --api_key_env:
    OPENAI_API_KEY=... python training/generate_tir.py --config training/recipes/generate_tir/openai_chat.yaml \\
        --problems data/cot_numeric.jsonl --output data/tir.jsonl

Every recipe key is also a flag (`--passes 3`, `--eval_sets a.jsonl b.jsonl`), read by TRL's parser like the
training recipes: flags override the recipe and a misspelt key is an error. The keys are the fields of
`RunArguments` (below), `numina_kit.data.synthesis.SynthesisConfig` and `numina_kit.data.teacher.TeacherConfig`.
Rerunning the same command resumes: finished problems are skipped (see docs/generate_tir.md).
Writes `<output>` (rows: problem, solution, messages), `<output stem>.journal.jsonl` and `<output stem>.stats.json`.
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from components import RECIPES, run_script
from trl import TrlParser

from numina_kit.answers import extract_answer, parse_integer
from numina_kit.data.decontamination import DEFAULT_N, build_index
from numina_kit.data.problems import Problem, load_problems
from numina_kit.data.synthesis import OutputPaths, SynthesisConfig, synthesize
from numina_kit.data.teacher import TeacherConfig, TeacherError, open_teacher
from numina_kit.errors import InputError


logger = logging.getLogger("generate_tir")


@dataclass
class RunArguments:
    """What to read and write, and which teacher; the TIR loop's settings are `SynthesisConfig`, the HTTP client's
    `TeacherConfig` (both read from the same recipe)."""

    problems: str = ""  # JSONL/CSV/Parquet file, or a dataset id (needs `datasets` and the Hub)
    split: str = "train"  # for a dataset id
    limit: int | None = None
    integer_answers_only: bool = False  # keep only problems whose reference is an integer (Numina's "value outputs")
    output: str = "data/tir/solutions.jsonl"
    stats: str | None = None  # default: <output stem>.stats.json
    eval_sets: list[str] = field(default_factory=list)  # problem files whose problems must not be trained on
    ngram: int = DEFAULT_N
    teacher: str = "http"  # "http" (OpenAI-compatible server, TeacherConfig) or "generator" (in-process model)
    model_path: str = ""  # teacher: generator
    backend: str = "auto"
    progress: bool = True
    log_level: str = "INFO"


def make_parser() -> TrlParser:
    """The recipe parser: every key of the three dataclasses is a recipe key and a flag."""
    return TrlParser((RunArguments, SynthesisConfig, TeacherConfig), allow_abbrev=False)


def load_reference_problems(source: str, *, split: str = "train", limit: int | None = None) -> list[Problem]:
    """Problems with reference answers from a file, or from a dataset id (NuminaMath-CoT rows: the answer is the
    last `\\boxed{}` of the reference solution when there is no `answer` column)."""
    path = Path(source)
    if path.exists() or path.suffix.lower() in (".jsonl", ".json", ".csv", ".parquet"):
        return load_problems(path, limit=limit)
    if not source or "/" not in source:
        raise InputError(f"problems {source!r}: not a file, nor a dataset id like 'AI-MO/NuminaMath-CoT'")
    from datasets import load_dataset

    try:
        rows = load_dataset(source, split=split)
    except Exception as error:
        raise InputError(f"could not load dataset {source!r} split {split!r}: {error}") from None
    problems = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        answer = row.get("answer") or (extract_answer(row["solution"]) if row.get("solution") else None)
        problem = Problem(id=str(row.get("id", index)), problem=row["problem"], answer=answer)
        if problem.id in seen:
            raise InputError(f"dataset {source!r}: duplicate id {problem.id!r} (ids must be unique to resume)")
        seen.add(problem.id)
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    return problems


def main(args: RunArguments, config: SynthesisConfig, teacher_config: TeacherConfig) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=args.log_level.upper())
    logging.getLogger("numina_kit.sctir.loop").setLevel(logging.WARNING)  # one line per attempt otherwise
    problems = load_reference_problems(args.problems, split=args.split, limit=args.limit)
    if args.integer_answers_only:
        problems = [p for p in problems if p.answer is not None and parse_integer(p.answer) is not None]
    index = None
    if args.eval_sets:
        index = build_index([p.problem for path in args.eval_sets for p in load_problems(path)], n=args.ngram)
    teacher = open_teacher(args.teacher, teacher_config, model_path=args.model_path, backend=args.backend)
    paths = OutputPaths.beside(args.output, args.stats)
    try:
        stats = synthesize(problems, teacher, config, paths, eval_index=index, progress=args.progress)
    except TeacherError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)
    print(
        f"kept {stats['problems_kept']} of {stats['problems']} problems "
        f"(per pass {stats['kept_per_pass']}; {stats['problems_failed_all_passes']} failed every pass, "
        f"{stats['problems_pending']} pending); {stats['removed_by_decontamination']} removed by decontamination; "
        f"{stats['teacher_calls']} teacher calls, {stats['completion_tokens']} tokens; wrote {paths.output}, "
        f"stats in {paths.stats}"
    )


if __name__ == "__main__":
    recipes = ", ".join(
        str(p.relative_to(RECIPES.parent.parent)) for p in sorted((RECIPES / "generate_tir").glob("*.yaml"))
    )
    run_script(
        main,
        make_parser(),
        f"usage: python training/generate_tir.py --config RECIPE [--key value ...]; recipes: {recipes}",
    )
