"""Serving a `predict` endpoint through Kaggle's AIMO competition APIs, on Kaggle and locally, and scoring it.

Three APIs: AIMO-1's `aimo` environment loop (`make_env`, `iter_test`, `env.predict`, pandas frames,
`submission.csv`), and AIMO-2's and AIMO-3's `kaggle_evaluation` inference servers (gRPC; the gateway calls
`predict(id_, problem)` from a worker thread and wants a one-row `id`/`answer` frame back; `submission.parquet`).
Both ship only inside each competition's data on Kaggle. `serve` picks the real API when
`KAGGLE_IS_COMPETITION_RERUN` is set (Kaggle's hidden rerun), and otherwise runs the local mode: the real
`kaggle_evaluation.run_local_gateway` when that package can be imported, else the stand-ins of
`numina_kit.kaggle.gateway`, over a JSONL/CSV/Parquet problem file, scored when the file has reference answers.
The competitions' facts (slug, submission file, server class, per-call limit) come from `numina_kit.answers.COMPETITIONS`.
"""

import contextlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from numina_kit.answers import competition_rule, to_competition_answer
from numina_kit.errors import InputError


logger = logging.getLogger(__name__)

RERUN_VARIABLE = "KAGGLE_IS_COMPETITION_RERUN"
KAGGLE_INPUT = Path("/kaggle/input")


def is_rerun() -> bool:
    """Whether this is Kaggle's hidden competition rerun (the variable only needs to be set)."""
    return bool(os.getenv(RERUN_VARIABLE))


def run_aimo_env(env, predict: Callable) -> int:
    """AIMO-1's loop: answer each one-row `test` frame of `env.iter_test()` through `env.predict`; return the count."""
    count = 0
    for test, sample_submission in env.iter_test():
        reply = predict(test["id"], test["problem"])
        sample_submission["answer"] = int(reply["answer"][0])
        env.predict(sample_submission)
        count += 1
    return count


def import_server(competition: str):
    """Kaggle's inference-server class for AIMO-2/3, or None when `kaggle_evaluation` cannot be imported.

    On Kaggle the package sits in the competition's data folder, which is put on `sys.path` first. A copy whose
    generated gRPC files are missing calls `sys.exit(1)` from its `__init__`; that counts as not importable too.
    """
    rule = competition_rule(competition, kaggle=True)
    _add_competition_folder(rule.kaggle_slug)
    try:
        return getattr(importlib.import_module(rule.server_module), rule.server_class)
    except (ImportError, SystemExit) as error:
        logger.info("%s is not importable (%s: %s)", rule.server_module, type(error).__name__, error)
        return None


def _add_competition_folder(slug: str) -> None:
    """Put the competition's data folder on `sys.path` when it exists (on Kaggle), so its API package imports."""
    folder = KAGGLE_INPUT / slug
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))


def serve_rerun(predict: Callable, competition: str) -> None:
    """Kaggle's hidden rerun: hand `predict` to the real API and block until its gateway is done."""
    rule = competition_rule(competition, kaggle=True)
    if rule.server_module is None:
        _add_competition_folder(rule.kaggle_slug)
        aimo = importlib.import_module("aimo")
        count = run_aimo_env(aimo.make_env(), predict)
        logger.info("aimo env: %d problems answered", count)
        return
    server_class = import_server(competition)
    if server_class is None:
        raise RuntimeError(f"{rule.server_module} is not importable: attach the {rule.kaggle_slug} competition data")
    server_class(predict).serve()


@dataclass
class Score:
    """Accuracy of a submission against reference answers reduced to the competition's range."""

    correct: int
    total: int
    rows: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def score_submission(path: str | Path, problems: list, competition: str) -> Score:
    """Compare a submission file (parquet or csv, `id`/`answer`) with the problems' reference answers."""
    import pandas as pd

    path = Path(path)
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"id": str})
    submitted = {_id_key(pid): answer for pid, answer in zip(table["id"], table["answer"], strict=True)}
    rows = []
    for problem in problems:
        if problem.answer is None:
            continue
        reference = to_competition_answer(problem.answer, competition)
        answer = submitted.get(_id_key(problem.id))
        answer = None if answer is None else int(answer)
        rows.append({"id": problem.id, "answer": answer, "reference": reference, "correct": answer == reference})
    return Score(correct=sum(row["correct"] for row in rows), total=len(rows), rows=rows)


def _id_key(pid: object) -> str:
    """An id as text; all-digit ids lose leading zeros, as `polars.read_csv` reads them as integers."""
    text = str(pid)
    return text.lstrip("0") or "0" if text.isdigit() else text


@dataclass
class LocalRun:
    """What the local mode produced: the submission file, which gateway ran, and the score when there is one."""

    submission: Path
    gateway: str
    score: Score | None = None


def run_local(
    predict: Callable,
    problems_path: str | Path,
    competition: str = "aimo1",
    *,
    out_dir: str | Path = ".",
    gateway: str = "auto",
    seed: int | None = None,
) -> LocalRun:
    """The local mode: serve the problems of a JSONL/CSV/Parquet file through the competition's API in `out_dir`.

    `gateway="auto"` uses Kaggle's `kaggle_evaluation.run_local_gateway` when it can be imported (AIMO-2/3) and
    the stand-ins of `numina_kit.kaggle.gateway` otherwise; "kaggle" requires the real one, "stand-in" never uses it.
    The problems go to the gateway as an `id,problem` CSV (`out_dir/test.csv`). With reference answers in the file,
    the score is computed and saved to `out_dir/score.json`.
    """
    from numina_kit.data.problems import load_problems
    from numina_kit.kaggle import gateway as standin

    rule = competition_rule(competition, kaggle=True)
    if gateway not in ("auto", "kaggle", "stand-in"):
        raise InputError(f"unknown gateway {gateway!r}: use auto, kaggle or stand-in")
    problems = load_problems(problems_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_test_csv(problems, out_dir / "test.csv")
    if rule.server_module is None:
        run_aimo_env(standin.LocalAimoEnv(csv_path, out_dir=out_dir, seed=seed), predict)
        used = "stand-in"
    else:
        server_class = None if gateway == "stand-in" else import_server(competition)
        if server_class is None and gateway == "kaggle":
            raise InputError(f"{rule.server_module} is not importable: put Kaggle's kaggle_evaluation on sys.path")
        if server_class is not None:
            with contextlib.chdir(out_dir):  # the real gateway writes submission.parquet in the current directory
                server_class(predict).run_local_gateway((str(csv_path.resolve()),))
            used = "kaggle_evaluation"
        else:
            server = standin.LocalInferenceServer(predict, response_timeout_s=rule.per_call_limit_s, seed=seed)
            server.run_local_gateway((str(csv_path),), out_dir=out_dir)
            used = "stand-in"
    run = LocalRun(submission=out_dir / rule.submission_file, gateway=used)
    if any(problem.answer is not None for problem in problems):
        run.score = score_submission(run.submission, problems, competition)
        payload = {"correct": run.score.correct, "total": run.score.total, "accuracy": run.score.accuracy}
        payload |= {"competition": competition, "gateway": used, "rows": run.score.rows}
        (out_dir / "score.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    logger.info("local mode (%s gateway): %s", used, run.submission)
    return run


def write_test_csv(problems: list, path: str | Path) -> Path:
    """Write only `id,problem`: every CSV column becomes one positional argument of `predict` at the gateway."""
    import polars as pl

    path = Path(path)
    pl.DataFrame({"id": [p.id for p in problems], "problem": [p.problem for p in problems]}).write_csv(path)
    return path


def serve(
    predict: Callable,
    competition: str = "aimo1",
    *,
    problems: str | Path | None = None,
    out_dir: str | Path = ".",
    gateway: str = "auto",
) -> LocalRun | None:
    """Serve `predict`: the real API on Kaggle's hidden rerun (returns None), else the local mode over `problems`.

    Without `problems`, the local mode uses the competition's public `test.csv` from `/kaggle/input`, as an
    interactive Kaggle session or "Save Version" run does.
    """
    rule = competition_rule(competition, kaggle=True)
    if is_rerun():
        serve_rerun(predict, competition)
        return None
    if problems is None:
        problems = KAGGLE_INPUT / rule.kaggle_slug / "test.csv"
        if not problems.is_file():
            raise InputError(f"no problem file given and {problems} does not exist: set PROBLEMS_FILE")
    return run_local(predict, problems, competition, out_dir=out_dir, gateway=gateway)
