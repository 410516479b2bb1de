"""`python -m numina_kit validate`: run a validation suite (every model on every set) and compare the models.

    python -m numina_kit validate --suite configs/suites/numina.yaml --model models/sft --model models/kto \\
        --out outputs/validation

The suite file (`numina_kit.eval.suite`) lists the sets, the models, the seeds and the SC-TIR config; `--model PATH`
adds model folders to it. Every model runs every set with the same seeds and config (`numina_kit.eval.evaluate`),
and each result is logged per problem and candidate as it comes (`numina_kit.eval.runs`): run the same command
again after a crash and it continues where it stopped; add a model and only that model runs. `--only NAME` runs
some models (e.g. one process per GPU, all writing to the same --out); `--report-only` runs nothing. The report
(`numina_kit.eval.comparison`) is written from every result logged so far: `report.md` (models x sets with
intervals, paired comparisons with the number of problems each rests on), `summary.json`, `suite.png`, and each
model's report per set in `runs/<model>/<set>/` (`numina_kit.eval.report`: results.json, report.md).
"""

import argparse
import dataclasses
import gc
import logging
from pathlib import Path

from numina_kit.errors import InputError
from numina_kit.eval.comparison import score, write_suite_report
from numina_kit.eval.evaluate import evaluate
from numina_kit.eval.report import write_report
from numina_kit.eval.results import ProblemResult, solution_row
from numina_kit.eval.runs import RunLog
from numina_kit.eval.suite import Suite, SuiteModel, load_set, open_model, read_suite


logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SUITE = REPO / "configs" / "suites" / "numina.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default=DEFAULT_SUITE, help=f"suite file (YAML; default: {DEFAULT_SUITE.name})")
    parser.add_argument(
        "--model", action="append", default=[], metavar="PATH", help="a model folder to add to the suite's models"
    )
    parser.add_argument("--out", required=True, help="folder for the run logs and the report (reused to resume)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only these models")
    parser.add_argument("--report-only", action="store_true", help="run nothing")


def run(args: argparse.Namespace) -> int:
    suite = read_suite(args.suite, extra_models=args.model)
    names = [model.name for model in suite.models]
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        raise InputError(f"--only {', '.join(unknown)}: not in the suite's models ({', '.join(names)})")
    problems = {suite_set.name: load_set(suite_set) for suite_set in suite.sets}  # every set loads before any run
    out = Path(args.out)
    ran = None  # --report-only: rewrite every model's report
    if not args.report_only:
        chosen = [model for model in suite.models if not args.only or model.name in args.only]
        ran = run_suite(suite, chosen, problems, out)
    paths = report(suite, problems, out, title=Path(args.suite).name, ran=ran)
    for path in paths:
        print(f"wrote {path}")
    return 0


def run_suite(suite: Suite, models: list[SuiteModel], problems: dict, out: Path) -> set[tuple[str, str]]:
    """Run every model on every set, skipping what the logs already hold; returns the (model, set) pairs that ran.

    A model is loaded only when it has work, and the sandbox only opened when some model has.
    """
    from tqdm import tqdm

    from numina_kit.models.load import read_model_config
    from numina_kit.sandbox.pool import Sandbox

    for model in models:  # a missing folder fails before hours of other models' work, not after
        if model.path is not None:
            read_model_config(model.path)
    plan = []
    for model in models:
        for suite_set in suite.sets:
            log, config = RunLog(out, model.name, suite_set.name), suite.config_for(suite_set)
            log.claim(manifest(model, suite_set, problems[suite_set.name], config))
            done = log.done()
            todo = sum((p.id, seed) not in done for p in problems[suite_set.name] for seed in suite.seeds)
            if todo:
                plan.append((model, suite_set, log, config, done, todo))
    if not plan:
        return set()
    with Sandbox(suite.sctir.executor) as sandbox:
        generator, loaded = None, None
        for model, suite_set, log, config, done, todo in plan:
            if loaded is not model:
                generator = None  # free one model's memory before the next is loaded
                gc.collect()
                generator, loaded = open_model(model), model
            with (
                tqdm(total=todo, desc=f"{model.name} / {suite_set.name}", unit="problem") as bar,
                log.appender() as rows,
            ):

                def record(result: ProblemResult, solution, rows=rows, bar=bar) -> None:
                    rows.append(solution_row(result, solution))
                    bar.update(1)

                evaluate(
                    problems[suite_set.name],
                    generator,
                    config,
                    seeds=suite.seeds,
                    executor=sandbox,
                    on_result=record,
                    data=suite_set.source,
                    model=model.name,
                    done=done,
                    concurrency=model.concurrency,
                )
    return {(model.name, suite_set.name) for model, suite_set, *_ in plan}


def manifest(model: SuiteModel, suite_set, problems: list, config) -> dict:
    """What a run log's results depend on (seeds excepted: more seeds extend a log)."""
    sctir = dataclasses.asdict(config)
    sctir.pop("seed")
    sctir["executor"].pop("num_workers")  # how many blocks run at once changes no output
    return {
        "model": model.identity(),
        "set": suite_set.identity(),
        "problems": [p.id for p in problems],
        "sctir": sctir,
    }


def report(suite: Suite, problems: dict, out: Path, *, title: str, ran: set[tuple[str, str]] | None = None) -> list:
    """Write the suite's report from everything logged so far, and each model's report per set for the (model, set)
    pairs in `ran` (None: all of them)."""
    scores, paths = [], []
    for model in suite.models:
        for suite_set in suite.sets:
            log = RunLog(out, model.name, suite_set.name)
            evaluation = log.evaluation(suite.config_for(suite_set), suite.seeds, data=suite_set.source)
            if evaluation.results and (ran is None or (model.name, suite_set.name) in ran):
                write_report(evaluation, log.folder, plot=False)  # suite.png plots them all
            scores.append(score(evaluation, suite_set.name, total=len(problems[suite_set.name])))
    config = suite.sctir
    settings = [
        f"seeds {', '.join(map(str, suite.seeds))}; SC-TIR {config.num_candidates} candidates x {config.max_rounds} "
        f"rounds, temperature {config.temperature}, {config.max_new_tokens} tokens per round, code "
        f"{'executed' if config.execute_code else 'not executed'}",
        "models: " + ", ".join(f"`{m.name}` ({_describe(m)})" for m in suite.models),
    ]
    sets = [
        {"name": s.name, "source": s.source, "rule": s.rule, "problems": len(problems[s.name])} for s in suite.sets
    ]
    models = [model.name for model in suite.models]
    out.mkdir(parents=True, exist_ok=True)
    paths += write_suite_report(title, settings, sets, models, scores, suite.pairs(), out, k=config.num_candidates)
    return paths


def _describe(model: SuiteModel) -> str:
    if model.endpoint is not None:
        config = model.teacher_config()
        return f"{config.model} at {config.base_url}"
    return model.path or model.hub
