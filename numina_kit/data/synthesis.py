"""TIR data synthesis: a teacher writes tool-integrated solutions, kept only when their answer matches the reference.

This is NuminaMath-TIR's recipe, which Numina described (NuminaMath blog post and dataset card, 2024) but never
released:

1. Drop problems that overlap the evaluation sets (`numina_kit.data.decontamination`), before any call or write.
2. For each problem, one *attempt* is SC-TIR itself (`numina_kit.sctir.loop.solve`) with one candidate: the teacher
   writes until a code block closes, the code runs in the sandbox, its output is appended, and the teacher
   continues, for at most `max_rounds` generations. A teacher is any `Generator`: `teacher.HTTPTeacher` (an
   OpenAI-compatible server) or an in-process model.
3. Keep the solution when its `\\boxed{}` answer matches the reference (`numina_kit.answers.judge`, general rule:
   integers exactly, anything else by equivalence). A solution must have run code; a truncated one is not kept.
4. A problem whose attempt failed is tried again, up to `passes` attempts in all.

Up to `concurrency` attempts run at once, each in a thread. An HTTP teacher takes their requests concurrently (a
vLLM server batches them); an in-process model is called by one attempt at a time, since a model object is not
safe to share between threads. Every finished attempt is journaled before its kept solution is written
(`numina_kit.data.ledger`), in NuminaMath-TIR's schema (`problem`, `solution`, `messages`). A rerun skips
*finished* problems (kept, or with `passes` failed attempts). An attempt cut off by a crash, or whose teacher calls
failed after every retry, is not recorded, so its problem is tried again with the same pass number. Statistics are
computed from the journal, so they count every run together.
"""

import logging
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from numina_kit.answers import GENERAL, judge
from numina_kit.data.decontamination import NgramIndex, decontaminate
from numina_kit.data.jsonl import write_json
from numina_kit.data.ledger import KEPT, Ledger, OutputPaths
from numina_kit.data.problems import Problem
from numina_kit.data.teacher import HTTPTeacher, TeacherError
from numina_kit.errors import InputError
from numina_kit.models.base import Completion, Generator, SamplingParams
from numina_kit.protocols.tora import render_messages
from numina_kit.sandbox.pool import ExecResult, ExecutorConfig, Sandbox
from numina_kit.sctir.loop import CandidateStatus, SCTIRConfig, solve


__all__ = ["KEPT", "OutputPaths", "SynthesisConfig", "attempt", "summarize", "synthesize"]

logger = logging.getLogger(__name__)


@dataclass
class SynthesisConfig:
    """Settings of a TIR data-generation run (recipe keys of training/generate_tir.py).

    The defaults are Numina's (3 passes, temperature 0.8) and SC-TIR's 4 rounds; `loop_config` turns them into the
    `SCTIRConfig` of one attempt.
    """

    passes: int = 3
    max_rounds: int = 4
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 2048  # per generation
    max_context_tokens: int = 8192  # prompt + solution; an attempt that grows past it fails
    concurrency: int = 16  # attempts in flight
    seed: int | None = None  # per-attempt seeds derived from (seed, id, pass) make reruns reproducible
    code_timeout_s: float = 5.0
    answer_timeout_s: float = 2.0
    max_consecutive_teacher_failures: int = 20  # then the run stops: the teacher is down or misconfigured

    def __post_init__(self) -> None:
        for name in ("passes", "max_rounds", "max_new_tokens", "max_context_tokens", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")

    def loop_config(self, seed: int | None = None) -> SCTIRConfig:
        """The SC-TIR settings of one attempt: one candidate, no restart (the next pass is the retry), any answer."""
        return SCTIRConfig(
            num_candidates=1,
            max_rounds=self.max_rounds,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            max_context_tokens=self.max_context_tokens,
            restart_on_fail=False,
            competition=GENERAL,
            executor=ExecutorConfig(timeout=self.code_timeout_s),
            seed=seed,
        )


def attempt_seed(seed: int | None, problem_id: str, pass_: int) -> int | None:
    """The seed of one attempt: different for every (problem, pass) of a run, the same when the run is repeated.

    `solve` derives each round's seed from it, so every teacher call of a run has its own reproducible seed.
    """
    if seed is None:
        return None
    return (seed + zlib.crc32(f"{problem_id}/{pass_}".encode())) % 2**31


class _Meter:
    """One attempt's view of the teacher and the sandbox: it counts what the attempt used and keeps the error of a
    failed teacher call (which `solve` turns into a stopped candidate) so that the attempt can be left unrecorded."""

    def __init__(self, teacher: Generator, sandbox: Sandbox, lock: "threading.Lock | None") -> None:
        self.teacher, self.sandbox, self.lock = teacher, sandbox, lock
        self.counts = Counter(teacher_calls=0, prompt_tokens=0, completion_tokens=0, code_runs=0, code_errors=0)
        self.last: Completion | None = None
        self.error: BaseException | None = None

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        try:
            if self.lock is None:
                completions = self.teacher.generate(prompts, params)
            else:
                with self.lock:
                    completions = self.teacher.generate(prompts, params)
        except BaseException as error:
            self.error = error
            raise
        for completion in completions:
            self.counts.update(
                teacher_calls=1, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.num_tokens
            )
            self.last = completion
        return completions

    def count_tokens(self, text: str) -> int:
        return self.teacher.count_tokens(text)

    def run_many(self, codes: Sequence[str], **kwargs: object) -> list[ExecResult]:
        results = self.sandbox.run_many(codes, **kwargs)
        self.counts.update(code_runs=len(results), code_errors=sum(r.status != "ok" for r in results))
        return results

    def forget(self, key: str) -> None:
        self.sandbox.forget(key)


def attempt(
    problem: Problem,
    pass_: int,
    teacher: Generator,
    sandbox: Sandbox,
    config: SynthesisConfig,
    *,
    lock: "threading.Lock | None" = None,
) -> dict:
    """One attempt at one problem: `solve` with one candidate, then the answer check; returns the journal record.

    Raises `TeacherError` when a teacher call failed (after its retries): the attempt is then not recorded.
    `lock`, when given, serializes the teacher's calls (an in-process model shared by several threads).
    """
    start = time.monotonic()
    meter = _Meter(teacher, sandbox, lock)
    loop = config.loop_config(attempt_seed(config.seed, problem.id, pass_))
    candidate = solve(problem.problem, meter, loop, executor=meter).candidates[0]  # type: ignore[arg-type]
    if isinstance(meter.error, TeacherError):
        raise meter.error
    if meter.error is not None:
        raise TeacherError(f"generator failed: {meter.error!r}") from meter.error
    record = {"id": problem.id, "pass": pass_, "outcome": "", "answer": None, "reference": problem.answer}
    if candidate.status is CandidateStatus.ANSWERED and candidate.raw_answer is not None:
        record["answer"] = candidate.raw_answer
        if meter.last is not None and meter.last.finish_reason == "length":
            record["outcome"] = "truncated"
        elif judge(problem.answer or "", candidate.raw_answer, GENERAL, timeout=config.answer_timeout_s):
            record["outcome"] = KEPT
            record["problem"] = problem.problem
            record["solution"] = candidate.text
        else:
            record["outcome"] = "wrong answer"
    else:
        record["outcome"] = candidate.reason or "no answer"
    record.update(meter.counts)
    record["seconds"] = round(time.monotonic() - start, 3)
    return record


def to_row(record: dict) -> dict:
    """A kept journal record as a NuminaMath-TIR row."""
    return {
        "problem": record["problem"],
        "solution": record["solution"],
        "messages": render_messages(record["problem"], record["solution"]),
    }


def summarize(records: Iterable[dict], passes: int, problem_ids: Iterable[str]) -> dict:
    """Statistics of every recorded attempt (all runs together) over the given problems."""
    records = list(records)
    ids = set(problem_ids)
    attempts = Counter(r["id"] for r in records)
    kept = {r["id"]: r["pass"] for r in records if r["outcome"] == KEPT}
    exhausted = {i for i in ids if i not in kept and attempts[i] >= passes}
    sums = Counter()
    for r in records:
        sums.update({k: r.get(k, 0) for k in ("teacher_calls", "prompt_tokens", "completion_tokens", "code_runs")})
        sums.update(code_errors=r.get("code_errors", 0))
    return {
        "problems": len(ids),
        "problems_tried": len(ids & set(attempts)),
        "problems_kept": len(ids & set(kept)),
        "problems_failed_all_passes": len(exhausted),
        "problems_pending": len(ids - set(kept) - exhausted),
        "kept_per_pass": {
            str(p): sum(1 for i in kept if kept[i] == p) for p in range(1, max([passes, *kept.values()]) + 1)
        },
        "attempts": len(records),
        "outcomes": dict(sorted(Counter(r["outcome"] for r in records).items())),
        "teacher_calls": sums["teacher_calls"],
        "prompt_tokens": sums["prompt_tokens"],
        "completion_tokens": sums["completion_tokens"],
        "code_runs": sums["code_runs"],
        "code_errors": sums["code_errors"],
        "attempt_seconds": round(sum(r.get("seconds", 0.0) for r in records), 3),
    }


def synthesize(
    problems: list[Problem],
    teacher: Generator,
    config: SynthesisConfig,
    paths: OutputPaths,
    *,
    eval_index: NgramIndex | None = None,
    sandbox: Sandbox | None = None,
    progress: bool = False,
    on_record: Callable[[dict], None] | None = None,
) -> dict:
    """Generate solutions for `problems` into `paths.output`, resuming from its journal; returns the statistics.

    Problems without a reference answer are skipped, and those overlapping `eval_index` removed, before anything
    is written; both counts are in the statistics. Raises `TeacherError` when the teacher is misconfigured (HTTP
    401/403/404/400) or fails `max_consecutive_teacher_failures` attempts in a row; what was done is kept.
    """
    start = time.monotonic()
    with_answer = [p for p in problems if p.answer is not None and p.answer.strip()]
    removed: list[Problem] = []
    if eval_index is not None:
        with_answer, removed = decontaminate(with_answer, eval_index, text=lambda p: p.problem)
        logger.info("decontamination removed %d of %d problems", len(removed), len(removed) + len(with_answer))
    stats_base = {
        "input_problems": len(problems),
        "skipped_no_answer": len(problems) - len(with_answer) - len(removed),
        "removed_by_decontamination": len(removed),
        "decontamination_ngram": eval_index.n if eval_index is not None else None,
        "removed_ids": [p.id for p in removed[:100]],
    }
    if sandbox is None:
        with Sandbox(ExecutorConfig(timeout=config.code_timeout_s)) as own:
            return _run(with_answer, teacher, config, paths, own, stats_base, start, progress, on_record)
    return _run(with_answer, teacher, config, paths, sandbox, stats_base, start, progress, on_record)


def _run(
    with_answer: list[Problem],
    teacher: Generator,
    config: SynthesisConfig,
    paths: OutputPaths,
    sandbox: Sandbox,
    stats_base: dict,
    start: float,
    progress: bool,
    on_record: Callable[[dict], None] | None,
) -> dict:
    """The attempts themselves: a bounded pool of threads, the main thread alone writing the journal and output."""
    ledger = Ledger(paths, to_row)
    attempts = Counter(r["id"] for r in ledger.records)
    kept_ids = {r["id"] for r in ledger.records if r.get("outcome") == KEPT}

    def finished(problem_id: str) -> bool:
        return problem_id in kept_ids or attempts[problem_id] >= config.passes

    todo = deque(p for p in with_answer if not finished(p.id))
    session = Counter(
        skipped_finished=len(with_answer) - len(todo),
        restored_rows=ledger.restored,
        attempts=0,
        kept=0,
        teacher_failures=0,
    )
    lock = None if isinstance(teacher, HTTPTeacher) else threading.Lock()

    def write_stats() -> dict:
        stats = stats_base | summarize(ledger.records, config.passes, (p.id for p in with_answer))
        stats["this_run"] = dict(session) | {
            "wall_seconds": round(time.monotonic() - start, 3),
            "teacher": teacher.stats.to_dict() if hasattr(teacher, "stats") else {},
        }
        write_json(stats, paths.stats)
        return stats

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), disable=not progress, desc="problems", unit="problem")
    failure: TeacherError | None = None
    consecutive_failures = 0
    in_flight: dict[Future, tuple[Problem, int]] = {}
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="tir") as pool:
        try:
            while (todo and not stop.is_set()) or in_flight:
                while todo and not stop.is_set() and len(in_flight) < config.concurrency:
                    problem = todo.popleft()
                    pass_ = attempts[problem.id] + 1
                    future = pool.submit(attempt, problem, pass_, teacher, sandbox, config, lock=lock)
                    in_flight[future] = (problem, pass_)
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    problem, pass_ = in_flight.pop(future)
                    try:
                        record = future.result()
                    except TeacherError as error:
                        session.update(teacher_failures=1)
                        consecutive_failures += 1
                        logger.warning("problem %s pass %d: %s", problem.id, pass_, error)
                        if error.fatal or consecutive_failures >= config.max_consecutive_teacher_failures:
                            failure = failure or error
                            stop.set()
                        bar.update(1)
                        continue
                    consecutive_failures = 0
                    if record["outcome"] == KEPT and record["id"] in kept_ids:
                        raise AssertionError(f"problem {record['id']} kept twice")
                    ledger.record(record)
                    attempts[record["id"]] += 1
                    if record["outcome"] == KEPT:
                        kept_ids.add(record["id"])
                    session.update(attempts=1, kept=int(record["outcome"] == KEPT))
                    if on_record is not None:
                        on_record(record)
                    if finished(problem.id):
                        bar.update(1)
                    else:  # resample at once, so a problem's passes finish close together
                        todo.appendleft(problem)
                    if session["attempts"] % 50 == 0:
                        write_stats()
                    bar.set_postfix(kept=len(kept_ids), refresh=False)
        finally:
            stop.set()
            bar.close()
            stats = write_stats()
            ledger.close()
    if failure is not None:
        raise TeacherError(f"stopped: {failure} (rerun to resume; finished problems are skipped)", fatal=True)
    return stats
