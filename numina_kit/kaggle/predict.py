"""The `predict` endpoint every AIMO API calls: a solver wrapped so that it never raises and always answers in range.

`make_predict` wraps any solver (`make_solver` builds SC-TIR's). One exception inside `predict` fails a whole Kaggle
run, so every failure becomes the competition's fallback answer, logged with its reason and recorded as an
`AnswerRecord`. Each problem's deadline is the budget's, capped by the competition's limit on one `predict` call
(AIMO-2's gateway fails the run when a call takes over 30 minutes), and `predict` never waits past that limit or the
run's end, so no problem can outlast a call or the run.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from numina_kit.answers import competition_rule
from numina_kit.data.jsonl import write_jsonl


logger = logging.getLogger(__name__)

Solver = Callable[[str, float | None], int]


@dataclass
class AnswerRecord:
    """How one problem was answered: by the solver, or by the fallback and why."""

    id: object
    answer: int
    source: str
    reason: str = ""
    seconds: float = 0.0


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

    Two times bound a problem, both absolute on `clock`:
    - its deadline: `budget.deadline()` (none without a budget), never later than the competition's `max_problem_s`
      after the call began. `solver(problem_text, deadline)` is told to stop `grace_s` before it.
    - its limit: the run's end (`budget.end`), never later than `max_problem_s` after the call began. A solver that
      overruns its deadline (the synchronous loop finishes the round it started) is waited for until then, so the
      answers of that round count; its overrun is charged to later problems by the budget. Past the limit
      `predict` answers with the fallback at once: the per-call limit (AIMO-2: 30 minutes) and the run's time are
      the two limits whose breach fails the whole submission.
    A solve still running from an earlier problem is waited for (at most until this problem's deadline) so that two
    never share the model. Any failure - an exception, an answer out of range, an empty or non-text problem, a
    deadline already past - gives the competition's fallback, logged with its reason and appended to `records` when
    given. `id_` and `problem` may be polars or pandas Series of one row or plain values; the reply is a one-row
    polars frame `{"id": id, "answer": int}`.
    """
    import polars as pl

    rule = competition_rule(competition, kaggle=True)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="numina-solve")
    state: dict[str, Future | None] = {"running": None}
    lock = threading.Lock()

    def bounds(started: float) -> tuple[float | None, float | None]:
        """(deadline, limit) of a problem whose call began at `started` (None: unbounded)."""
        per_call = [] if rule.max_problem_s is None else [started + rule.max_problem_s]
        deadline = min([budget.deadline(), *per_call]) if budget is not None else min(per_call, default=None)
        limit = min([budget.end, *per_call]) if budget is not None else min(per_call, default=None)
        return deadline, limit

    def wait(limit: float | None) -> float | None:
        return None if limit is None else max(0.0, limit - clock())

    def answer(text: object, started: float) -> tuple[int, str, str]:
        deadline, limit = bounds(started)
        if not isinstance(text, str) or not text.strip():
            return rule.fallback, "fallback", f"problem is not non-empty text: {text!r:.60}"
        if deadline is not None and deadline - clock() <= 0:
            return rule.fallback, "fallback", "deadline already passed"
        running = state["running"]
        if running is not None and not running.done():
            with contextlib.suppress(Exception):
                running.result(timeout=wait(deadline))
            if not running.done():
                return rule.fallback, "fallback", "the previous problem's solve is still running"
        soft_deadline = None if deadline is None else deadline - grace_s
        future = state["running"] = worker.submit(solver, text, soft_deadline)
        try:
            result = future.result(timeout=wait(limit))
        except TimeoutError:
            if not future.done():
                return rule.fallback, "fallback", "solver ran past the run's end or the per-call limit"
            return rule.fallback, "fallback", "solver raised TimeoutError"
        except Exception as error:
            return rule.fallback, "fallback", f"solver raised {type(error).__name__}: {error}"
        if not rule.accepts(result):
            return rule.fallback, "fallback", f"solver answer {result!r:.60} is not an int in range"
        return int(result), "solver", ""

    def predict(id_, problem, *rest):
        started = clock()
        pid = _first(id_)
        with lock:
            try:
                value, source, reason = answer(_first(problem), started)
            except Exception as error:  # anything left, e.g. a broken budget: still answer
                value, source, reason = rule.fallback, "fallback", f"{type(error).__name__}: {error}"
            finally:
                if budget is not None:
                    try:
                        budget.done()
                    except Exception:  # the answer matters more than the budget's bookkeeping
                        logger.exception("budget.done() failed after problem %s", pid)
        record = AnswerRecord(id=pid, answer=value, source=source, reason=reason, seconds=clock() - started)
        if records is not None:
            records.append(record)
        if source == "fallback":
            logger.warning("problem %s: fallback answer %d (%s)", pid, value, reason)
        else:
            logger.info("problem %s: answer %d in %.1f s", pid, value, record.seconds)
        return pl.DataFrame({"id": [pid], "answer": [value]}, schema_overrides={"answer": pl.Int64})

    return predict


def _first(value: object) -> object:
    """The single value of a one-row polars/pandas Series (or the value itself); None when there is none."""
    if isinstance(value, str | int | float) or value is None:
        return value
    try:
        return list(value)[0]
    except Exception:  # an empty Series, or something that is not a sequence: no value
        return None


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
