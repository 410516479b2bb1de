"""Serving SC-TIR through Kaggle's AIMO competition APIs, on Kaggle and locally.

Three APIs (shared/research/kaggle_api.md): AIMO-1's `aimo` environment loop (`make_env`, `iter_test`,
`env.predict`, pandas frames, `submission.csv`), and AIMO-2's and AIMO-3's `kaggle_evaluation` inference servers
(gRPC; the gateway calls `predict(id_, problem)` from a worker thread and wants a one-row `id`/`answer` frame back;
`submission.parquet`). `serve` picks the real API when `KAGGLE_IS_COMPETITION_RERUN` is set, and otherwise runs the
local mode: the real `kaggle_evaluation.run_local_gateway` when that package can be imported, else the stand-ins of
`numina_kit.kaggle.gateway`, over a JSONL/CSV/Parquet problem file, scored when the file has reference answers.

`make_predict` wraps any solver into the `predict` endpoint. It never raises: one exception inside `predict` fails
a whole Kaggle run, so every failure becomes the competition's documented fallback answer, logged with its reason.
"""

import contextlib
import importlib
import json
import logging
import numbers
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from numina_kit.data.jsonl import write_jsonl
from numina_kit.errors import InputError


logger = logging.getLogger(__name__)

RERUN_VARIABLE = "KAGGLE_IS_COMPETITION_RERUN"
KAGGLE_INPUT = Path("/kaggle/input")


@dataclass(frozen=True)
class KaggleCompetition:
    """What the notebook needs to know about one AIMO competition."""

    slug: str
    time_limit_s: float
    submission_file: str
    server_module: str | None = None
    server_class: str | None = None
    response_timeout_s: float | None = None


KAGGLE_COMPETITIONS = {
    "aimo1": KaggleCompetition("ai-mathematical-olympiad-prize", 9 * 3600, "submission.csv"),
    "aimo2": KaggleCompetition(
        "ai-mathematical-olympiad-progress-prize-2",
        5 * 3600,
        "submission.parquet",
        "kaggle_evaluation.aimo_2_inference_server",
        "AIMO2InferenceServer",
        30 * 60,
    ),
    "aimo3": KaggleCompetition(
        "ai-mathematical-olympiad-progress-prize-3",
        5 * 3600,
        "submission.parquet",
        "kaggle_evaluation.aimo_3_inference_server",
        "AIMO3InferenceServer",
    ),
}

Solver = Callable[[str, float | None], int]


def kaggle_competition(name: str) -> KaggleCompetition:
    """The Kaggle side of competition `name` (aimo1, aimo2, aimo3); `InputError` for any other name."""
    if name not in KAGGLE_COMPETITIONS:
        raise InputError(f"unknown competition {name!r}: use one of {', '.join(KAGGLE_COMPETITIONS)}")
    return KAGGLE_COMPETITIONS[name]


def is_rerun() -> bool:
    """Whether this is Kaggle's hidden competition rerun (the variable only needs to be set)."""
    return bool(os.getenv(RERUN_VARIABLE))


def fallback_answer(competition: str) -> int:
    """The answer given when SC-TIR cannot answer: `numina_kit.answers.extract.COMPETITIONS[name].fallback`."""
    from numina_kit.answers.extract import COMPETITIONS as RULES

    return RULES[competition].fallback


def in_range(answer: object, competition: str) -> bool:
    """Whether `answer` is a valid submission: an integer (numpy's too) within the competition's range."""
    from numina_kit.answers.extract import COMPETITIONS as RULES

    rule = RULES[competition]
    return isinstance(answer, numbers.Integral) and not isinstance(answer, bool) and rule.low <= answer <= rule.high


def make_solver(generator, config, *, executor=None) -> Solver:
    """A solver for `make_predict`: SC-TIR (`numina_kit.sctir.loop.solve`) with this generator, config and sandbox."""
    from numina_kit.sctir.loop import solve

    def solver(problem: str, deadline: float | None) -> int:
        solution = solve(problem, generator, config, executor=executor, deadline=deadline)
        logger.info(
            "sctir: answer %s after %d rounds (%s), votes %s%s",
            solution.answer,
            solution.rounds,
            solution.stop_reason,
            solution.votes[:3],
            ", no valid candidate" if solution.is_fallback else "",
        )
        return solution.answer

    return solver


@dataclass
class AnswerRecord:
    """How one problem was answered: by the solver, or by the fallback and why."""

    id: object
    answer: int
    source: str
    reason: str = ""
    seconds: float = 0.0


def make_predict(
    solver: Solver,
    *,
    competition: str = "aimo1",
    budget=None,
    grace_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    records: list[AnswerRecord] | None = None,
) -> Callable:
    """The `predict(id_, problem, *rest)` endpoint for every AIMO API; it never raises and always answers in range.

    `solver(problem_text, deadline)` returns an int; it is told to finish `grace_s` before the budget's deadline
    (`budget.deadline()`, absolute on `clock`), and `predict` stops waiting for it at the deadline itself, so the
    answer arrives in time even when the solver overruns. A solve still running from an earlier problem is waited
    for (at most until this problem's deadline) so that two never share the model. Any failure - an exception, an
    answer out of range, an empty or non-text problem, a deadline already past - gives `fallback_answer`, logged
    with its reason and appended to `records` when given. `id_` and `problem` may be polars or pandas Series of one
    row or plain values; the reply is a one-row polars frame `{"id": id, "answer": int}`.
    """
    import polars as pl

    kaggle_competition(competition)
    fallback = fallback_answer(competition)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="numina-solve")
    state: dict[str, Future | None] = {"running": None}
    lock = threading.Lock()

    def answer(text: object) -> tuple[int, str, str]:
        deadline = budget.deadline() if budget is not None else None
        if not isinstance(text, str) or not text.strip():
            return fallback, "fallback", f"problem is not non-empty text: {text!r:.60}"
        if deadline is not None and deadline - clock() <= 0:
            return fallback, "fallback", "deadline already passed"
        running = state["running"]
        if running is not None and not running.done():
            with contextlib.suppress(Exception):
                running.result(timeout=None if deadline is None else max(0.0, deadline - clock()))
            if not running.done():
                return fallback, "fallback", "the previous problem's solve is still running"
        soft_deadline = None if deadline is None else deadline - grace_s
        future = state["running"] = worker.submit(solver, text, soft_deadline)
        try:
            result = future.result(timeout=None if deadline is None else max(0.0, deadline - clock()))
        except TimeoutError:
            if not future.done():
                return fallback, "fallback", "solver missed the deadline"
            return fallback, "fallback", "solver raised TimeoutError"
        except Exception as error:
            return fallback, "fallback", f"solver raised {type(error).__name__}: {error}"
        if not in_range(result, competition):
            return fallback, "fallback", f"solver answer {result!r:.60} is not an int in range"
        return int(result), "solver", ""

    def predict(id_, problem, *rest):
        started = clock()
        pid = _first(id_)
        with lock:
            try:
                value, source, reason = answer(_first(problem))
            except Exception as error:  # anything left, e.g. a broken budget: still answer
                value, source, reason = fallback, "fallback", f"{type(error).__name__}: {error}"
            finally:
                if budget is not None:
                    with contextlib.suppress(Exception):
                        budget.done()
        try:
            record = AnswerRecord(id=pid, answer=value, source=source, reason=reason, seconds=clock() - started)
            if records is not None:
                records.append(record)
            if source == "fallback":
                logger.warning("problem %s: fallback answer %d (%s)", pid, value, reason)
            else:
                logger.info("problem %s: answer %d in %.1f s", pid, value, record.seconds)
        except Exception:  # bookkeeping must not cost the answer
            pass
        return pl.DataFrame({"id": [pid], "answer": [value]}, schema_overrides={"answer": pl.Int64})

    return predict


def _first(value: object) -> object:
    """The single value of a one-row polars/pandas Series (or the value itself); None when there is none."""
    if isinstance(value, str | int | float) or value is None:
        return value
    try:
        return list(value)[0]
    except Exception:
        return None


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

    On Kaggle the package sits in the competition's data folder, which is put on `sys.path` first.
    """
    rules = kaggle_competition(competition)
    folder = KAGGLE_INPUT / rules.slug
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))
    try:
        return getattr(importlib.import_module(rules.server_module), rules.server_class)
    except ImportError:
        return None


def serve_rerun(predict: Callable, competition: str) -> None:
    """Kaggle's hidden rerun: hand `predict` to the real API and block until its gateway is done."""
    rules = kaggle_competition(competition)
    if competition == "aimo1":
        folder = KAGGLE_INPUT / rules.slug
        if folder.is_dir() and str(folder) not in sys.path:
            sys.path.append(str(folder))
        aimo = importlib.import_module("aimo")
        count = run_aimo_env(aimo.make_env(), predict)
        logger.info("aimo env: %d problems answered", count)
        return
    server_class = import_server(competition)
    if server_class is None:
        raise RuntimeError(f"{rules.server_module} is not importable: attach the {rules.slug} competition data")
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

    from numina_kit.answers.extract import to_competition_answer

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

    rules = kaggle_competition(competition)
    if gateway not in ("auto", "kaggle", "stand-in"):
        raise InputError(f"unknown gateway {gateway!r}: use auto, kaggle or stand-in")
    problems = load_problems(problems_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_test_csv(problems, out_dir / "test.csv")
    if competition == "aimo1":
        run_aimo_env(standin.LocalAimoEnv(csv_path, out_dir=out_dir, seed=seed), predict)
        used = "stand-in"
    else:
        server_class = None if gateway == "stand-in" else import_server(competition)
        if server_class is None and gateway == "kaggle":
            raise InputError(f"{rules.server_module} is not importable: put Kaggle's kaggle_evaluation on sys.path")
        if server_class is not None:
            with contextlib.chdir(out_dir):  # the real gateway writes submission.parquet in the current directory
                server_class(predict).run_local_gateway((str(csv_path.resolve()),))
            used = "kaggle_evaluation"
        else:
            server = standin.LocalInferenceServer(predict, response_timeout_s=rules.response_timeout_s, seed=seed)
            server.run_local_gateway((str(csv_path),), out_dir=out_dir)
            used = "stand-in"
    run = LocalRun(submission=out_dir / rules.submission_file, gateway=used)
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
    rules = kaggle_competition(competition)
    if is_rerun():
        serve_rerun(predict, competition)
        return None
    if problems is None:
        problems = KAGGLE_INPUT / rules.slug / "test.csv"
        if not problems.is_file():
            raise InputError(f"no problem file given and {problems} does not exist: set PROBLEMS_FILE")
    return run_local(predict, problems, competition, out_dir=out_dir, gateway=gateway)


def records_summary(records: list[AnswerRecord]) -> dict:
    """Counts for the notebook's last cell: answers from the solver, fallbacks, and the fallback reasons."""
    fallbacks = [record for record in records if record.source == "fallback"]
    return {
        "answered": len(records),
        "fallbacks": len(fallbacks),
        "reasons": sorted({record.reason for record in fallbacks}),
        "seconds": round(sum(record.seconds for record in records), 1),
    }


def save_records(records: list[AnswerRecord], path: str | Path) -> Path:
    """Write one JSON line per answered problem (id, answer, source, reason, seconds)."""
    return write_jsonl([asdict(record) for record in records], path)
