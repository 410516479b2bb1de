"""JiuZhang3.0's problem writing, as one resumable run: texts x stages -> a writer -> checked problems and solutions.

JiuZhang3.0 (Zhou et al. 2024, arXiv 2405.14365) makes math training data cheaply: a strong teacher (GPT-4) writes
a problem and solution about each of a few thousand texts, a small *synthesis model* is trained to do the same,
and that model then writes millions. Both writers go through `write_problems`, which differs only in the
`Generator` it is given (`teacher.HTTPTeacher` for the teacher, an in-process or served model for the synthesis
model) and in what its rows are for:

- `rows="request"`: input = the stage request (`stages.render_request`), output = the checked reply. This is the
  distillation set the synthesis model is trained on (raw prompt, loss on the completion).
- `rows="problem"`: input = the problem as a final model's prompt (`stages.render_question`), output = the checked
  solution. This is the synthetic pre-training data of the final model.

Every request is (text, stage, sample number); one stage is drawn per text (`stages.choose_stages`). A reply is
kept only when it parses (`stages.parse_reply`), its tool solution survives execution with real outputs
(`verification.verify_tool_solution`), its problem does not overlap the evaluation sets (`eval_index`, the 10-gram
rule of `numina_kit.data.decontamination`) and is not a near duplicate of one kept before
(`near_duplicates.NearDuplicates`); otherwise the reason is counted. Texts overlapping the evaluation sets are
dropped before any call.

Requests go to the writer `batch_size` at a time (an HTTP teacher sends a batch concurrently; an in-process model
batches it). Each finished request is journaled before its row is written (`numina_kit.data.ledger`), so a killed
run resumes with nothing lost or duplicated. For many machines, shard `i` of `n` takes the requests whose id hashes
to `i` (a fixed partition, no scheduler); `merge_shards` joins the shards' outputs in request order and removes
near duplicates across them.
"""

import logging
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from numina_kit.data.corpus import Text
from numina_kit.data.decontamination import NgramIndex
from numina_kit.data.jsonl import read_jsonl, write_json, write_jsonl
from numina_kit.data.ledger import KEPT, Ledger, OutputPaths
from numina_kit.data.near_duplicates import NearDuplicates
from numina_kit.data.stages import (
    STYLES,
    Rejected,
    Stage,
    choose_stages,
    parse_reply,
    render_question,
    render_reply,
    render_request,
)
from numina_kit.data.teacher import TeacherError
from numina_kit.data.verification import verify_tool_solution
from numina_kit.errors import InputError
from numina_kit.models.base import Generator, SamplingParams
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.sctir.loop import CandidateStatus, SCTIRConfig, solve


logger = logging.getLogger(__name__)

ROWS = ("request", "problem")
EXECUTIONS = ("loop", "after")
REJECTED_REPLY_CHARS = 2000  # of a dropped reply, kept in its journal record


@dataclass
class WritingConfig:
    """Settings of a problem-writing run (recipe keys of training/jiuzhang_write.py).

    The sampling defaults are the authors' for large-scale synthesis: temperature 1.0 and up to 2500 new tokens
    for chain of thought, temperature 0.1 and top-p 0.95 for tool solutions.
    """

    mode: str = "tool"  # stages to draw from: "cot", "tool" or "all"
    rows: str = "problem"  # "request" (distillation set) or "problem" (final model's data)
    style: str = "tora"  # question format of problem rows: "tora" (SC-TIR's prompt) or "jiuzhang"
    samples_per_text: int = 1
    cot_temperature: float = 1.0
    cot_top_p: float = 1.0
    tool_temperature: float = 0.1
    tool_top_p: float = 0.95
    max_new_tokens: int = 2500
    tool_execution: str = "loop"  # "loop": stop at each output block, run the code, go on; "after": verify the reply
    tool_rounds: int = 4  # generations per tool solution in the loop (code runs + the final answer)
    max_context_tokens: int = 4096  # request + reply, in the loop
    batch_size: int = 64  # requests per generate call
    seed: int = 0  # stage draws and sampling seeds
    shard: int = 0
    num_shards: int = 1
    near_duplicate_threshold: float = 0.8  # Jaccard of word 5-grams; 1.0 keeps all but exact copies
    code_timeout_s: float = 5.0
    answer_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.rows not in ROWS:
            raise InputError(f"rows must be one of {', '.join(ROWS)}, got {self.rows!r}")
        if self.style not in STYLES:
            raise InputError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.tool_execution not in EXECUTIONS:
            raise InputError(f"tool_execution must be one of {', '.join(EXECUTIONS)}, got {self.tool_execution!r}")
        for name in ("samples_per_text", "max_new_tokens", "batch_size", "num_shards"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.shard < self.num_shards:
            raise InputError(f"shard must be in 0..{self.num_shards - 1}, got {self.shard}")

    def params(self, tool: bool, seed: int) -> SamplingParams:
        if tool:
            return SamplingParams(self.tool_temperature, self.tool_top_p, self.max_new_tokens, seed=seed)
        return SamplingParams(self.cot_temperature, self.cot_top_p, self.max_new_tokens, seed=seed)

    def loop_config(self, seed: int) -> SCTIRConfig:
        """The TIR loop for tool requests: one candidate per request, no restart; the vote is unused, and an
        integer answer rule keeps it cheap (no equivalence checks between different requests' answers)."""
        return SCTIRConfig(
            max_rounds=self.tool_rounds,
            temperature=self.tool_temperature,
            top_p=self.tool_top_p,
            max_new_tokens=self.max_new_tokens,
            max_context_tokens=self.max_context_tokens,
            restart_on_fail=False,
            competition="aimo1",
            seed=seed,
        )


@dataclass(frozen=True)
class Request:
    """One call to the writer: a text at a stage (sample `number` of it); `order` is its place in the whole plan."""

    id: str
    order: int
    text: Text
    stage: Stage

    @property
    def prompt(self) -> str:
        return render_request(self.stage, self.text.text)


def plan_requests(texts: Iterable[Text], config: WritingConfig) -> list[Request]:
    """Every request of a run over `texts`, all shards together, in a fixed order."""
    requests = []
    for text in texts:
        for stage in choose_stages(text, config.mode, config.seed):
            for number in range(config.samples_per_text):
                requests.append(Request(f"{text.id}|{stage.name}|{number}", len(requests), text, stage))
    return requests


def in_shard(request_id: str, shard: int, num_shards: int) -> bool:
    """The fixed partition of requests over shards: by a hash of the id, so it never depends on the texts' order."""
    return zlib.crc32(request_id.encode()) % num_shards == shard


def to_row(record: dict) -> dict:
    """A kept record as a training row: `input`/`output`, plus the text and stage it came from."""
    return {
        "input": record["input"],
        "output": record["output"],
        "text_id": record["text_id"],
        "stage": record["stage"],
    }


def write_problems(
    texts: list[Text],
    writer: Generator,
    config: WritingConfig,
    paths: OutputPaths,
    *,
    sandbox: Sandbox | None = None,
    eval_index: NgramIndex | None = None,
    progress: bool = False,
) -> dict:
    """Write problems about `texts` with `writer` into `paths.output`, resuming from its journal; returns statistics.

    A failed `generate` call (a teacher that stays down after its retries) stops the run with its exception;
    everything journaled before is kept and a rerun continues after it.
    """
    if sandbox is None:
        with Sandbox(ExecutorConfig(timeout=config.code_timeout_s, stateful=True)) as own:
            return write_problems(texts, writer, config, paths, sandbox=own, eval_index=eval_index, progress=progress)
    from tqdm.auto import tqdm

    start = time.monotonic()
    removed = {t.id for t in texts if eval_index is not None and eval_index.contains(t.text)}
    plan = [
        r
        for r in plan_requests((t for t in texts if t.id not in removed), config)
        if in_shard(r.id, config.shard, config.num_shards)
    ]

    ledger = Ledger(paths, to_row)
    done = {record["id"] for record in ledger.records}
    kept = NearDuplicates(config.near_duplicate_threshold)
    for record in ledger.records:
        if record["outcome"] == KEPT:
            kept.add(record["id"], record["problem"])
    todo = [r for r in plan if r.id not in done]
    session = Counter(requests=0, kept=0, restored_rows=ledger.restored, skipped_done=len(plan) - len(todo))

    def write_stats() -> dict:
        stats = summarize(ledger.records) | {
            "planned": len(plan),
            "pending": sum(r.id not in done for r in plan),
            "texts_removed_by_decontamination": len(removed),
            "shard": f"{config.shard} of {config.num_shards}",
        }
        stats["this_run"] = dict(session) | {
            "wall_seconds": round(time.monotonic() - start, 3),
            "writer": writer.stats.to_dict() if hasattr(writer, "stats") else {},
        }
        write_json(stats, paths.stats)
        return stats

    bar = tqdm(total=len(todo), disable=not progress, desc="requests", unit="request")
    try:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="verify") as pool:
            for begin in range(0, len(todo), config.batch_size):
                batch = todo[begin : begin + config.batch_size]
                replies = _generate(writer, batch, config, sandbox)
                records = list(pool.map(lambda rr: _check(*rr, config, sandbox), zip(batch, replies, strict=True)))
                for request, record in zip(batch, records, strict=True):
                    if record["outcome"] == KEPT:
                        record = _last_checks(record, kept, eval_index)
                    ledger.record(record)
                    done.add(request.id)
                    session.update(requests=1, kept=int(record["outcome"] == KEPT))
                bar.update(len(batch))
                bar.set_postfix(kept=session["kept"], refresh=False)
                write_stats()
    finally:
        bar.close()
        stats = write_stats()
        ledger.close()
    return stats


@dataclass
class Reply:
    """What the writer wrote for one request, or why the TIR loop gave up on it."""

    text: str
    tokens: int
    rejected: str = ""


def _generate(writer: Generator, batch: list[Request], config: WritingConfig, sandbox: Sandbox) -> list[Reply]:
    """One batched call per kind in the batch (tool requests through the TIR loop, unless `tool_execution` is
    "after"); replies in the batch's order. A writer that fails stops the run (nothing of the batch is recorded)."""
    replies: dict[str, Reply] = {}
    for tool in (False, True):
        group = [r for r in batch if r.stage.tool == tool]
        if not group:
            continue
        seed = (config.seed + zlib.crc32(group[0].id.encode())) % 2**31
        if tool and config.tool_execution == "loop":
            prompts = [r.prompt for r in group]
            solution = solve("", writer, config.loop_config(seed), executor=sandbox, prompts=prompts)
            if solution.stop_reason == "generation error":  # solve logged the exception
                reason = next(c.reason for c in solution.candidates if c.reason.startswith("generation error"))
                raise TeacherError(f"writer failed ({reason}); rerun to resume")
            for request, c in zip(group, solution.candidates, strict=True):
                done = c.status is CandidateStatus.ANSWERED
                replies[request.id] = Reply(c.text, c.generated_tokens, "" if done else f"loop: {c.reason}")
            continue
        outputs = writer.generate([r.prompt for r in group], config.params(tool, seed))
        if len(outputs) != len(group):
            raise RuntimeError(f"writer returned {len(outputs)} completions for {len(group)} prompts")
        for request, output in zip(group, outputs, strict=True):
            replies[request.id] = Reply(
                output.text, output.num_tokens, "truncated" if output.finish_reason == "length" else ""
            )
    return [replies[r.id] for r in batch]


def _check(request: Request, reply: Reply, config: WritingConfig, sandbox: Sandbox) -> dict:
    """Parse and (for a tool stage) execute one reply; the journal record, kept or with the reason it was not."""
    record = {
        "id": request.id,
        "order": request.order,
        "text_id": request.text.id,
        "stage": request.stage.name,
        "outcome": KEPT,
        "completion_tokens": reply.tokens,
    }
    try:
        if reply.rejected:
            raise Rejected(reply.rejected)
        problem, solution = parse_reply(reply.text, request.stage)
        if request.stage.tool:
            ran = sandbox if config.tool_execution == "after" else None  # the loop's outputs are the sandbox's
            verified = verify_tool_solution(solution, ran, key=request.id, answer_timeout=config.answer_timeout_s)
            solution = verified.solution
            record.update(claims_wrong=verified.claims_wrong, claims_missing=verified.claims_missing)
    except Rejected as rejection:  # the reply is kept in the journal, to read why a writer's replies are dropped
        return record | {"outcome": rejection.reason, "reply": reply.text[:REJECTED_REPLY_CHARS]}
    if config.rows == "request":
        record.update(input=request.prompt, output=render_reply(problem, solution))
    else:
        question = render_question(problem, tool=request.stage.tool, style=config.style)
        record.update(input=question, output=("\n" if config.style == "tora" else "") + solution)
    return record | {"problem": problem}


def _last_checks(record: dict, kept: NearDuplicates, eval_index: NgramIndex | None) -> dict:
    """Decontamination and near duplicates, in request order (so a rerun decides the same)."""
    if eval_index is not None and eval_index.contains(record["problem"]):
        return _reject(record, "overlaps an evaluation set")
    if not kept.add(record["id"], record["problem"]):
        return _reject(record, "near duplicate")
    return record


def _reject(record: dict, reason: str) -> dict:
    return {k: v for k, v in record.items() if k not in ("input", "output")} | {"outcome": reason}


def summarize(records: Iterable[dict]) -> dict:
    """Counts over journal records (all runs together): kept, dropped by reason, per stage, claims fixed, tokens."""
    records = list(records)
    outcomes = Counter(r["outcome"] for r in records)
    kept = [r for r in records if r["outcome"] == KEPT]
    return {
        "requests": len(records),
        "kept": len(kept),
        "dropped": dict(sorted((k, v) for k, v in outcomes.items() if k != KEPT)),
        "kept_per_stage": dict(sorted(Counter(r["stage"] for r in kept).items())),
        "kept_claims_wrong": sum(r.get("claims_wrong", 0) for r in kept),
        "kept_claims_missing": sum(r.get("claims_missing", 0) for r in kept),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in records),
    }


def merge_shards(journals: list[str | Path], output: str | Path, *, near_duplicate_threshold: float = 0.8) -> dict:
    """Join the kept records of several shards' journals into `output`, in request order, without duplicates.

    A request id found in two journals means two runs wrote the same shard: `InputError`. Near duplicates across
    shards are removed (each shard only saw its own).
    """
    records: dict[str, dict] = {}
    for journal in journals:
        if not Path(journal).is_file():
            raise InputError(f"shard journal not found: {journal}")
        for record in read_jsonl(journal, appended=True):
            if record["outcome"] != KEPT:
                continue
            if record["id"] in records:
                raise InputError(f"request {record['id']} is kept in two journals: a shard was run twice")
            records[record["id"]] = record
    kept = NearDuplicates(near_duplicate_threshold)
    rows = [to_row(r) for r in sorted(records.values(), key=lambda r: r["order"]) if kept.add(r["id"], r["problem"])]
    write_jsonl(rows, output)
    return {"shards": len(journals), "kept_in_shards": len(records), "near_duplicates": len(records) - len(rows)}
