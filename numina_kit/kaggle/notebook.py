"""`python -m numina_kit notebook`: run the submission notebook headless, in local mode, with papermill.

The same `notebooks/submission.ipynb` that is pushed to Kaggle runs here unchanged: papermill injects the
parameters (model, problem file, SC-TIR settings, budget) after its `parameters` cell and executes it in `--out`,
which then holds the executed notebook, `test.csv`, the submission file, `answers.jsonl`, the SC-TIR settings used
(`sctir.yaml`) and, when the problems carry reference answers, `score.json`. The SC-TIR settings are read as
`evaluate` reads them (`numina_kit.options`): the default recipe is `configs/cpu_demo.yaml`, a small CPU run; pass
`--config configs/aimo1_t4.yaml` for Numina's Kaggle settings (48 x 4 x 2048).
"""

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from numina_kit.answers import competition_rule
from numina_kit.data.jsonl import write_jsonl
from numina_kit.errors import InputError
from numina_kit.options import add_sctir_arguments, sctir_settings
from numina_kit.sctir.loop import SCTIRConfig


REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "submission.ipynb"
DEFAULT_RECIPE = REPO / "configs" / "cpu_demo.yaml"
SECONDS_PER_PROBLEM = 30.0  # the default budget of a local run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (e.g. models/tiny-tir)")
    parser.add_argument("--problems", required=True, help="JSONL/CSV/Parquet problem file (id, problem[, answer])")
    parser.add_argument("--out", required=True, help="output folder for the executed notebook and submission")
    add_sctir_arguments(parser, recipe=DEFAULT_RECIPE)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help=f"whole-run budget (default: {SECONDS_PER_PROBLEM:g} s per problem)",
    )
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
        problems_file = write_jsonl([asdict(p) for p in problems], out / "problems.jsonl")
    parameters = build_parameters(args, num_problems=len(problems), problems_file=problems_file, out=out)
    print(f"running {notebook} on {len(problems)} problems -> {out}")
    execute(notebook, out / notebook.name, parameters, cwd=out, timeout=args.timeout)
    score_file = out / "score.json"
    if score_file.is_file():
        score = json.loads(score_file.read_text())
        print(f"score: {score['correct']}/{score['total']} = {score['accuracy']:.1%} ({parameters['COMPETITION']})")
    print(f"submission and executed notebook in {out}")
    return 0


def build_parameters(args: argparse.Namespace, *, num_problems: int, problems_file: Path, out: Path) -> dict:
    """The values papermill injects into the notebook's `parameters` cell, from the command's options.

    The SC-TIR settings (recipe, then flags) are written to `out/sctir.yaml`, passed as the notebook's `RECIPE`, and
    also injected one by one so the executed notebook shows them. The context limit defaults to the model's own
    (`max_position_embeddings`, at most 4096), read from its folder.
    """
    import yaml

    from numina_kit.models.load import context_length, read_model_config

    settings = sctir_settings(args)
    if "max_context_tokens" not in settings:
        settings["max_context_tokens"] = context_length(read_model_config(args.model))
    config = SCTIRConfig.from_dict(settings, source=str(args.config or "flags"))
    rule = competition_rule(config.competition, kaggle=True)
    budget_s = args.budget_s if args.budget_s is not None else SECONDS_PER_PROBLEM * num_problems
    if budget_s <= 0:
        raise InputError(f"--budget-s must be positive, got {budget_s}")
    recipe = out / "sctir.yaml"
    recipe.write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    parameters = {name.upper(): getattr(config, name) for name in SETTINGS_IN_NOTEBOOK}
    parameters |= {
        "MODEL_PATH": str(Path(args.model).resolve()),
        "RECIPE": str(recipe),
        "TOTAL_BUDGET_S": budget_s,
        "RESERVE_S": args.reserve_s if args.reserve_s is not None else 0.1 * budget_s,
        "PROBLEM_FLOOR_S": None,  # TimeBudget's default: 300/348 of the first fair share
        "PROBLEM_CEILING_S": rule.max_problem_s,  # the per-call limit less a minute (AIMO-2), else none
        "NUM_PROBLEMS": num_problems,
        "PROBLEMS_FILE": str(problems_file),
        "OUTPUT_DIR": str(out),
        "GATEWAY": args.gateway,
        "BACKEND": args.backend,
    }
    return parameters


# SCTIRConfig fields that the notebook's parameters cell lists (as upper-case names).
SETTINGS_IN_NOTEBOOK = [
    "competition",
    "num_candidates",
    "max_rounds",
    "max_new_tokens",
    "max_context_tokens",
    "temperature",
    "seed",
]


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
