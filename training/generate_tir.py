"""Generate NuminaMath-TIR-style training data: a teacher solves problems with code, wrong answers are thrown away.

Usage:

    # A local vLLM server (`vllm serve <model> --port 8000`), the settings of a recipe:
    python training/generate_tir.py --config training/recipes/generate_tir/vllm_local.yaml

    # A hosted OpenAI-compatible API; the key is read from the environment variable named by --api_key_env:
    OPENAI_API_KEY=... python training/generate_tir.py --config training/recipes/generate_tir/openai_chat.yaml \\
        --problems data/cot_numeric.jsonl --output data/tir.jsonl

Every recipe key is also a flag (`--passes 3`, `--eval_sets a.jsonl b.jsonl`); flags override the recipe and a
misspelt key is an error. Rerunning the same command resumes: finished problems are skipped (see docs/generate_tir.md).
Writes `<output>` (rows: problem, solution, messages), `<output stem>.journal.jsonl` and `<output stem>.stats.json`.
"""

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from numina_kit.answers import extract_answer, parse_integer
from numina_kit.configs import read_mapping, reject_unknown_keys
from numina_kit.data.decontamination import DEFAULT_N, build_index
from numina_kit.data.problems import Problem, load_problems
from numina_kit.data.synthesis import OutputPaths, SynthesisConfig, synthesize
from numina_kit.data.teacher import GeneratorTeacher, HTTPTeacher, TeacherConfig, TeacherError
from numina_kit.errors import InputError
from numina_kit.sandbox.pool import ExecutorConfig


logger = logging.getLogger("generate_tir")


@dataclass
class Arguments:
    """Every setting of a run (recipe keys and flags)."""

    # input and output
    problems: str = ""  # JSONL/CSV/Parquet file, or a dataset id (needs `datasets` and the Hub)
    split: str = "train"  # for a dataset id
    limit: int | None = None
    integer_answers_only: bool = False  # keep only problems whose reference is an integer (Numina's "value outputs")
    output: str = "data/tir/solutions.jsonl"
    stats: str | None = None  # default: <output stem>.stats.json
    # decontamination
    eval_sets: list[str] = field(default_factory=list)  # problem files whose problems must not be trained on
    ngram: int = DEFAULT_N
    # teacher
    teacher: str = "http"  # "http" (OpenAI-compatible server) or "generator" (in-process numina_kit generator)
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api: str = "completions"  # or "chat"
    api_key_env: str = ""  # name of the environment variable holding the key; empty: no key (local server)
    system_prompt: str | None = None  # chat only; default: teacher.DEFAULT_SYSTEM_PROMPT
    timeout_s: float = 300.0
    max_retries: int = 6
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    extra_body: dict = field(default_factory=dict)
    model_path: str = ""  # teacher: generator
    backend: str = "auto"
    # the TIR loop
    passes: int = 3
    max_rounds: int = 4
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 2048
    max_context_tokens: int = 8192
    concurrency: int = 16
    seed: int | None = None
    code_timeout_s: float = 5.0
    max_consecutive_teacher_failures: int = 20
    progress: bool = True
    log_level: str = "INFO"


def parse_arguments(argv: list[str]) -> Arguments:
    """Recipe values (`--config`), overridden by flags; unknown recipe keys raise `InputError`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML recipe; its keys are the flags below")
    hints = typing.get_type_hints(Arguments)
    for f in dataclasses.fields(Arguments):
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(f"--{f.name}", type=_boolean, default=None, metavar="true|false")
        elif typing.get_origin(kind) is list:
            parser.add_argument(f"--{f.name}", nargs="*", default=None)
        elif kind is dict:
            parser.add_argument(f"--{f.name}", type=json.loads, default=None, metavar="JSON")
        else:
            parser.add_argument(f"--{f.name}", type=_base_type(kind), default=None)
    flags = parser.parse_args(argv)
    values: dict = {}
    if flags.config:
        values.update(_read_recipe(Path(flags.config)))
    values.update({k: v for k, v in vars(flags).items() if k != "config" and v is not None})
    return Arguments(**values)


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _base_type(kind: object) -> type:
    if isinstance(kind, types.UnionType):
        return next(a for a in typing.get_args(kind) if a is not type(None))
    return kind  # type: ignore[return-value]


def _read_recipe(path: Path) -> dict:
    data = read_mapping(path, what="settings")
    reject_unknown_keys(data, Arguments, source=str(path))
    return data


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


def build_teacher(args: Arguments) -> HTTPTeacher | GeneratorTeacher:
    if args.teacher == "http":
        config = TeacherConfig(
            base_url=args.base_url,
            model=args.model,
            api=args.api,  # type: ignore[arg-type]
            api_key_env=args.api_key_env,
            max_concurrency=args.concurrency,
            timeout_s=args.timeout_s,
            max_retries=args.max_retries,
            backoff_s=args.backoff_s,
            backoff_max_s=args.backoff_max_s,
            extra_body=args.extra_body,
        )
        if args.system_prompt is not None:
            config.system_prompt = args.system_prompt
        return HTTPTeacher(config)
    if args.teacher == "generator":
        if not args.model_path:
            raise InputError("teacher: generator needs model_path")
        from numina_kit.models.load import load_generator

        return GeneratorTeacher(load_generator(args.model_path, backend=args.backend), max_batch=args.concurrency)
    raise InputError(f"teacher must be 'http' or 'generator', got {args.teacher!r}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_arguments(sys.argv[1:] if argv is None else argv)
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=args.log_level.upper())
        problems = load_reference_problems(args.problems, split=args.split, limit=args.limit)
        if args.integer_answers_only:
            problems = [p for p in problems if p.answer is not None and parse_integer(p.answer) is not None]
        index = None
        if args.eval_sets:
            texts = [p.problem for path in args.eval_sets for p in load_problems(path)]
            index = build_index(texts, n=args.ngram)
        config = SynthesisConfig(
            passes=args.passes,
            max_rounds=args.max_rounds,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            max_context_tokens=args.max_context_tokens,
            concurrency=args.concurrency,
            seed=args.seed,
            max_consecutive_teacher_failures=args.max_consecutive_teacher_failures,
            executor=ExecutorConfig(timeout=args.code_timeout_s),
        )
        teacher = build_teacher(args)
        paths = OutputPaths.beside(args.output, args.stats)
        stats = synthesize(problems, teacher, config, paths, eval_index=index, progress=args.progress)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TeacherError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    print(
        f"kept {stats['problems_kept']} of {stats['problems']} problems "
        f"(per pass {stats['kept_per_pass']}; {stats['problems_failed_all_passes']} failed every pass, "
        f"{stats['problems_pending']} pending); {stats['removed_by_decontamination']} removed by decontamination; "
        f"{stats['teacher_calls']} teacher calls, {stats['completion_tokens']} tokens; wrote {paths.output}, "
        f"stats in {paths.stats}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
