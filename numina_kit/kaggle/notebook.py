"""`python -m numina_kit notebook`: run the submission notebook headless, in local mode, with papermill.

The same `notebooks/submission.ipynb` that is pushed to Kaggle runs here unchanged: papermill injects the
parameters (model, problem file, N, M, budget) after its `parameters` cell and executes it in `--out`, which then
holds the executed notebook, `test.csv`, the submission file, `answers.jsonl` and, when the problems carry
reference answers, `score.json`. The defaults are a small CPU run (30 s per problem); pass the Kaggle settings to reproduce a
submission locally (`--num-candidates 48 --max-rounds 4 --max-new-tokens 2048`).
"""

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from numina_kit.data.jsonl import write_jsonl
from numina_kit.errors import InputError


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "submission.ipynb"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (e.g. models/tiny-tir)")
    parser.add_argument("--problems", required=True, help="JSONL/CSV/Parquet problem file (id, problem[, answer])")
    parser.add_argument("--out", required=True, help="output folder for the executed notebook and submission")
    parser.add_argument("--competition", default="aimo1", choices=["aimo1", "aimo2", "aimo3"])
    parser.add_argument("--num-candidates", type=int, default=8, help="N, candidates per problem (Kaggle: 48)")
    parser.add_argument("--max-rounds", type=int, default=4, help="M, rounds per candidate (Kaggle: 4)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens per round (Kaggle: 2048)")
    parser.add_argument(
        "--max-context-tokens", type=int, default=None, help="prompt + solution limit (default: the model's, <= 4096)"
    )
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--recipe", default=None, help="an SC-TIR YAML that replaces the settings above")
    parser.add_argument("--budget-s", type=float, default=None, help="whole-run budget (default: 30 s per problem)")
    parser.add_argument("--reserve-s", type=float, default=None, help="budget kept back (default: 10%% of it)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems of the file")
    parser.add_argument("--gateway", default="auto", choices=["auto", "kaggle", "stand-in"])
    parser.add_argument("--backend", default="auto", help="auto | vllm | hf")
    parser.add_argument("--notebook", default=str(NOTEBOOK), help="the notebook to run")
    parser.add_argument("--timeout", type=float, default=None, help="seconds any one cell may run")


def run(args: argparse.Namespace) -> int:
    from numina_kit.data.problems import load_problems

    model, notebook, out = Path(args.model), Path(args.notebook), Path(args.out).resolve()
    if not model.exists():
        raise InputError(f"model folder not found: {model} (train one with `make demo` or pass --model)")
    if not notebook.is_file():
        raise InputError(f"notebook not found: {notebook} (pass --notebook)")
    problems = load_problems(args.problems, limit=args.limit)
    out.mkdir(parents=True, exist_ok=True)
    problems_file = Path(args.problems).resolve()
    if args.limit is not None:
        problems_file = _write_subset(problems, out / "problems.jsonl")
    parameters = build_parameters(args, num_problems=len(problems), problems_file=problems_file, out=out)
    print(f"running {notebook} on {len(problems)} problems -> {out}")
    execute(notebook, out / notebook.name, parameters, cwd=out, timeout=args.timeout)
    score_file = out / "score.json"
    if score_file.is_file():
        score = json.loads(score_file.read_text())
        print(f"score: {score['correct']}/{score['total']} = {score['accuracy']:.1%} ({args.competition})")
    print(f"submission and executed notebook in {out}")
    return 0


def build_parameters(args: argparse.Namespace, *, num_problems: int, problems_file: Path, out: Path) -> dict:
    """The values papermill injects into the notebook's `parameters` cell, from the command's options.

    The context limit defaults to the model's own (`max_position_embeddings`, at most 4096), read from its folder.
    """
    from numina_kit.models.load import context_length, read_model_config

    max_context = args.max_context_tokens
    if max_context is None:
        max_context = context_length(read_model_config(args.model))
    budget_s = args.budget_s if args.budget_s is not None else 30.0 * num_problems
    if budget_s <= 0:
        raise InputError(f"--budget-s must be positive, got {budget_s}")
    share = budget_s / num_problems
    parameters = {
        "MODEL_PATH": str(Path(args.model).resolve()),
        "COMPETITION": args.competition,
        "NUM_CANDIDATES": args.num_candidates,
        "MAX_ROUNDS": args.max_rounds,
        "MAX_NEW_TOKENS": args.max_new_tokens,
        "MAX_CONTEXT_TOKENS": max_context,
        "TEMPERATURE": args.temperature,
        "SEED": args.seed,
        "RECIPE": str(Path(args.recipe).resolve()) if args.recipe else None,
        "TOTAL_BUDGET_S": budget_s,
        "RESERVE_S": args.reserve_s if args.reserve_s is not None else 0.1 * budget_s,
        "PROBLEM_FLOOR_S": min(60.0, share / 2),
        "PROBLEM_CEILING_S": max(20 * 60.0, share),
        "NUM_PROBLEMS": num_problems,
        "PROBLEMS_FILE": str(problems_file),
        "OUTPUT_DIR": str(out),
        "GATEWAY": args.gateway,
        "BACKEND": args.backend,
    }
    return parameters


def execute(notebook: Path, output: Path, parameters: dict, *, cwd: Path, timeout: float | None = None) -> None:
    """Execute `notebook` with papermill into `output`; a failing cell raises `InputError` naming the output."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            cwd=str(cwd),
            kernel_name="python3",
            execution_timeout=timeout,
            progress_bar=False,
        )
    except PapermillExecutionError as error:
        raise InputError(
            f"notebook cell {error.exec_count} failed with {error.ename}: {error.evalue} (see {output})"
        ) from None


def _write_subset(problems: list, path: Path) -> Path:
    return write_jsonl([asdict(p) for p in problems], path)
