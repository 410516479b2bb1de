"""TIR data synthesis: a teacher writes tool-integrated solutions, kept only when their answer matches the reference.

This is NuminaMath-TIR's recipe (numina.md §5), which Numina described but never released:

1. Drop problems that overlap the evaluation sets (`numina_kit.data.decontamination`), before any call or write.
2. For each problem, one *attempt* is the SC-TIR loop for a single candidate (`sctir.advance`): the teacher writes
   until a code block closes, the code runs in the sandbox, its output is appended, and the teacher continues, for
   at most `max_rounds` generations.
3. Keep the solution when its `\\boxed{}` answer matches the reference (`numina_kit.answers.judge`, general rule:
   integers exactly, anything else by equivalence). A solution must have run code; a truncated one is not kept.
4. A problem whose attempt failed is tried again, up to `passes` attempts in all.

Up to `concurrency` attempts run at once (each in a thread that waits on the teacher). Every finished attempt is
first appended to the journal (`<output>.journal.jsonl`, fsync'ed), then a kept solution to the output JSONL in
NuminaMath-TIR's schema (`problem`, `solution`, `messages`). A rerun reads the journal, restores any kept solution
the output is missing, and skips *finished* problems: kept, or with `passes` failed attempts. An attempt cut off by
a crash, or one whose teacher calls failed after every retry, is not recorded, so its problem is tried again with
the same pass number. Statistics are computed from the journal, so they count every run together.
"""

import json
import logging
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from numina_kit.answers import GENERAL, judge
from numina_kit.data.decontamination import NgramIndex, decontaminate
from numina_kit.data.journal import Journal, read_records, write_json_atomic
from numina_kit.data.problems import Problem
from numina_kit.data.teacher import TeacherError
from numina_kit.errors import InputError
from numina_kit.models.base import Completion, SamplingParams
from numina_kit.prompts import STOP, last_code_block, render_messages, render_prompt
from numina_kit.sandbox.pool import ExecResult, ExecutorConfig, Sandbox
from numina_kit.sctir.loop import Candidate, CandidateStatus, SCTIRConfig, advance


logger = logging.getLogger(__name__)

KEPT = "kept"


class Teacher(Protocol):
    """What synthesis needs of a teacher (`teacher.HTTPTeacher`, `teacher.GeneratorTeacher`): thread-safe calls."""

    def complete(self, prompt: str, params: SamplingParams) -> Completion: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass
class SynthesisConfig:
    """Settings of a data-generation run; the defaults are Numina's (3 passes, temperature 0.8) and SC-TIR's rounds."""

    passes: int = 3
    max_rounds: int = 4
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 2048  # per generation
    max_context_tokens: int = 8192  # prompt + solution; an attempt that grows past it fails
    concurrency: int = 16  # attempts in flight
    seed: int | None = None  # per-call seeds derived from (seed, id, pass, round) make reruns reproducible
    answer_timeout_s: float = 2.0
    max_consecutive_teacher_failures: int = 20  # then the run stops: the teacher is down or misconfigured
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __post_init__(self) -> None:
        for name in ("passes", "max_rounds", "max_new_tokens", "max_context_tokens", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.executor, dict):
            self.executor = ExecutorConfig(**self.executor)


@dataclass
class OutputPaths:
    """The files of one run: the dataset, its journal and its statistics."""

    output: Path
    journal: Path
    stats: Path

    @classmethod
    def beside(cls, output: str | Path, stats: str | Path | None = None) -> "OutputPaths":
        output = Path(output)
        stem = output.with_suffix("") if output.suffix == ".jsonl" else output
        return cls(output, Path(f"{stem}.journal.jsonl"), Path(stats) if stats else Path(f"{stem}.stats.json"))


def call_seed(seed: int | None, problem_id: str, pass_: int, round_: int) -> int | None:
    """A per-call seed: different for every call of a run, the same when the run is repeated."""
    if seed is None:
        return None
    return (seed + zlib.crc32(f"{problem_id}/{pass_}/{round_}".encode())) % 2**31


def attempt(problem: Problem, pass_: int, teacher: Teacher, sandbox: Sandbox, config: SynthesisConfig) -> dict:
    """One attempt at one problem: the TIR loop, then the answer check; returns the journal record.

    Raises `TeacherError` when a teacher call fails after its retries (the attempt is then not recorded).
    """
    start = time.monotonic()
    loop = SCTIRConfig(
        num_candidates=1,
        max_rounds=config.max_rounds,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        max_context_tokens=config.max_context_tokens,
        restart_on_fail=False,  # a failed attempt ends; the next pass is the retry
        competition=GENERAL,
        executor=config.executor,
    )
    record = {"id": problem.id, "pass": pass_, "outcome": "", "answer": None, "reference": problem.answer}
    key = f"{problem.id}/{pass_}" if config.executor.stateful else None  # one interpreter per attempt
    try:
        candidate, counts, truncated = _tir_loop(problem, pass_, teacher, sandbox, config, loop, key)
    finally:
        if key is not None:
            sandbox.forget(key)
    if candidate.status is CandidateStatus.ANSWERED and candidate.raw_answer is not None:
        record["answer"] = candidate.raw_answer
        if truncated:
            record["outcome"] = "truncated"
        elif judge(problem.answer or "", candidate.raw_answer, GENERAL, timeout=config.answer_timeout_s):
            record["outcome"] = KEPT
            record["problem"] = problem.problem
            record["solution"] = candidate.text
        else:
            record["outcome"] = "wrong answer"
    else:
        record["outcome"] = candidate.reason or "no answer"
    record.update(counts)
    record["seconds"] = round(time.monotonic() - start, 3)
    return record


def _tir_loop(
    problem: Problem,
    pass_: int,
    teacher: Teacher,
    sandbox: Sandbox,
    config: SynthesisConfig,
    loop: SCTIRConfig,
    key: str | None,
) -> tuple[Candidate, Counter, bool]:
    """Generate, run code, append its output, repeat (`sctir.advance` decides each step); returns the candidate,
    the call counts and whether the last generation was cut by the token limit."""
    prompt = render_prompt(problem.problem)
    prompt_tokens = teacher.count_tokens(prompt)
    candidate = Candidate(index=0)
    counts = Counter(teacher_calls=0, prompt_tokens=0, completion_tokens=0, code_runs=0, code_errors=0)
    truncated = False
    for round_ in range(loop.max_rounds):
        if prompt_tokens + candidate.tokens >= loop.max_context_tokens:
            candidate.status, candidate.reason = CandidateStatus.PRUNED, "context limit"
            break
        params = SamplingParams(
            temperature=loop.temperature,
            top_p=loop.top_p,
            max_new_tokens=loop.max_new_tokens,
            stop=(STOP,),
            seed=call_seed(config.seed, problem.id, pass_, round_),
        )
        completion = teacher.complete(prompt + candidate.text, params)
        counts.update(teacher_calls=1, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.num_tokens)
        truncated = completion.finish_reason == "length"
        result: ExecResult | None = None
        code = last_code_block(candidate.text + completion.text)
        if round_ < loop.max_rounds - 1 and completion.text.endswith(STOP) and code is not None:
            result = sandbox.run(code, key=key)
            counts.update(code_runs=1, code_errors=int(result.status != "ok"))
        advance(candidate, completion, result, config=loop, round_=round_, count_tokens=teacher.count_tokens)
        if candidate.status is not CandidateStatus.RUNNING:
            break
    return candidate, counts, truncated


def to_row(record: dict) -> dict:
    """A kept journal record as a NuminaMath-TIR row."""
    return {
        "problem": record["problem"],
        "solution": record["solution"],
        "messages": render_messages(record["problem"], record["solution"]),
    }


class Ledger:
    """The journal and the output of a run, kept consistent: the output holds exactly the journal's kept records."""

    def __init__(self, paths: OutputPaths) -> None:
        self.paths = paths
        self.journal = Journal(paths.journal)
        rows = read_records(paths.output)
        kept = [r for r in self.journal.records if r.get("outcome") == KEPT]
        if len(rows) > len(kept):
            raise InputError(
                f"{paths.output} has {len(rows)} rows but its journal {paths.journal} only {len(kept)} kept "
                "solutions: it is not this run's output (move it, or the journal, away)"
            )
        self._output = paths.output.open("a", encoding="utf-8")
        self.restored = len(kept) - len(rows)
        for record in kept[len(rows) :]:  # kept solutions recorded just before a crash
            self._write_row(record)
        self.attempts: Counter[str] = Counter(r["id"] for r in self.journal.records)
        self.kept_ids = {r["id"] for r in kept}

    def finished(self, problem_id: str, passes: int) -> bool:
        return problem_id in self.kept_ids or self.attempts[problem_id] >= passes

    def record(self, record: dict) -> None:
        """Journal an attempt, then write its row when it was kept: a crash between the two is repaired on open."""
        if record["outcome"] == KEPT and record["id"] in self.kept_ids:
            raise AssertionError(f"problem {record['id']} kept twice")
        self.journal.append(record)
        self.attempts[record["id"]] += 1
        if record["outcome"] == KEPT:
            self.kept_ids.add(record["id"])
            self._write_row(record)

    def _write_row(self, record: dict) -> None:
        self._output.write(json.dumps(to_row(record), ensure_ascii=False) + "\n")
        self._output.flush()

    def close(self) -> None:
        self.journal.close()
        self._output.close()


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
    teacher: Teacher,
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
    stats_base = _filter_stats(problems, with_answer, removed, eval_index)
    if sandbox is None:
        with Sandbox(config.executor) as own:
            return _run(with_answer, teacher, config, paths, own, stats_base, start, progress, on_record)
    return _run(with_answer, teacher, config, paths, sandbox, stats_base, start, progress, on_record)


def _run(
    with_answer: list[Problem],
    teacher: Teacher,
    config: SynthesisConfig,
    paths: OutputPaths,
    sandbox: Sandbox,
    stats_base: dict,
    start: float,
    progress: bool,
    on_record: Callable[[dict], None] | None,
) -> dict:
    """The attempts themselves: a bounded pool of threads, the main thread alone writing the journal and output."""
    ledger = Ledger(paths)
    todo = deque(p for p in with_answer if not ledger.finished(p.id, config.passes))
    session = Counter(
        skipped_finished=len(with_answer) - len(todo),
        restored_rows=ledger.restored,
        attempts=0,
        kept=0,
        teacher_failures=0,
    )

    def write_stats() -> dict:
        stats = stats_base | summarize(ledger.journal.records, config.passes, (p.id for p in with_answer))
        stats["this_run"] = dict(session) | {
            "wall_seconds": round(time.monotonic() - start, 3),
            "teacher": teacher.stats.to_dict() if hasattr(teacher, "stats") else {},
        }
        write_json_atomic(stats, paths.stats)
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
                    pass_ = ledger.attempts[problem.id] + 1
                    future = pool.submit(attempt, problem, pass_, teacher, sandbox, config)
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
                    ledger.record(record)
                    session.update(attempts=1, kept=int(record["outcome"] == KEPT))
                    if on_record is not None:
                        on_record(record)
                    if ledger.finished(problem.id, config.passes):
                        bar.update(1)
                    else:  # resample at once, so a problem's passes finish close together
                        todo.appendleft(problem)
                    if session["attempts"] % 50 == 0:
                        write_stats()
                    bar.set_postfix(kept=len(ledger.kept_ids), refresh=False)
        finally:
            stop.set()
            bar.close()
            stats = write_stats()
            ledger.close()
    if failure is not None:
        raise TeacherError(f"stopped: {failure} (rerun to resume; finished problems are skipped)", fatal=True)
    return stats


def _filter_stats(
    problems: list[Problem], with_answer: list[Problem], removed: list[Problem], eval_index: NgramIndex | None
) -> dict:
    return {
        "input_problems": len(problems),
        "skipped_no_answer": len(problems) - len(with_answer) - len(removed),
        "removed_by_decontamination": len(removed),
        "decontamination_ngram": eval_index.n if eval_index is not None else None,
        "removed_ids": [p.id for p in removed[:100]],
    }
