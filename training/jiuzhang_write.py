"""JiuZhang3.0's problem writing: a teacher or the synthesis model writes checked problems about corpus texts.

Usage (each stage's recipe is in training/recipes/jiuzhang/; docs/jiuzhang3.md has the whole pipeline):

    # 1. The distillation set: GPT-4o writes about 5.3k random texts (rows: stage request -> reply)
    OPENAI_API_KEY=... python training/jiuzhang_write.py --config training/recipes/jiuzhang/distill_gpt4o.yaml
    # 4. The boost set: the same teacher on the texts chosen by jiuzhang_select.py
    OPENAI_API_KEY=... python training/jiuzhang_write.py --config training/recipes/jiuzhang/distill_gpt4o.yaml \\
        --select data/jiuzhang/selection.json --sample_texts 0 --output data/jiuzhang/boost.jsonl
    # 6. Synthesis at scale with the trained synthesis model, shard 3 of 16 (one machine each), then the merge
    python training/jiuzhang_write.py --config training/recipes/jiuzhang/synthesize_vllm.yaml --shard 3 --num_shards 16
    python training/jiuzhang_write.py --merge data/jiuzhang/pt.shard*.journal.jsonl --output data/jiuzhang/pt.jsonl
    # 7. The final model's data: synthetic pre-training rows (shuffled), then SFT rows, in that order
    python training/jiuzhang_write.py --mix_pretraining data/jiuzhang/pt.jsonl --mix_sft data/sft.jsonl \\
        --output data/jiuzhang/final_mix.jsonl

Every key of `WriteArguments` (below), `numina_kit.data.jiuzhang.WritingConfig` and
`numina_kit.data.teacher.TeacherConfig` is a recipe key and a flag (TRL's parser; a misspelt key is an error).
Rerunning a command resumes it: finished requests are skipped. Writes `<output>`, `<output stem>.journal.jsonl`
and `<output stem>.stats.json`.
"""

import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from components import RECIPES, run_script
from trl import TrlParser

from numina_kit.data.corpus import DEFAULT_CHUNK_CHARS, chunk_documents, read_documents
from numina_kit.data.decontamination import DEFAULT_N, index_eval_sets
from numina_kit.data.jiuzhang import WritingConfig, merge_shards, write_problems
from numina_kit.data.jsonl import read_jsonl, write_jsonl
from numina_kit.data.ledger import OutputPaths
from numina_kit.data.teacher import TeacherConfig, TeacherError, open_teacher
from numina_kit.errors import InputError


logger = logging.getLogger("jiuzhang_write")


@dataclass
class WriteArguments:
    """What to read and write, and which writer; sampling and checks are `WritingConfig`, the HTTP client's
    settings `TeacherConfig`."""

    corpus: list[str] = field(default_factory=list)  # JSONL / text files or folders (numina_kit.data.corpus)
    chunk_chars: int = DEFAULT_CHUNK_CHARS
    sample_texts: int = 0  # > 0: write about this many texts drawn at random (WritingConfig.seed), else all
    select: str | None = None  # a selection JSON from jiuzhang_select.py: write about its selected texts only
    output: str = "data/jiuzhang/rows.jsonl"
    stats: str | None = None  # default: <output stem>.stats.json
    eval_sets: list[str] = field(default_factory=list)  # problem files that must not leak into the data
    ngram: int = DEFAULT_N
    writer: str = "http"  # "http" (TeacherConfig) or "generator" (model_path, loaded in this process)
    model_path: str = ""
    backend: str = "auto"
    merge: list[str] = field(default_factory=list)  # shard journals: merge them into `output` instead of writing
    mix_pretraining: list[str] = field(default_factory=list)  # rows to put first (shuffled), then mix_sft rows
    mix_sft: list[str] = field(default_factory=list)
    progress: bool = True
    log_level: str = "INFO"


def make_parser() -> TrlParser:
    return TrlParser((WriteArguments, WritingConfig, TeacherConfig), allow_abbrev=False)


def choose_texts(args: WriteArguments, config: WritingConfig):
    """The corpus chunks a run writes about: all, a seeded random sample, or those a selection names."""
    if not args.corpus:
        raise InputError("no corpus: set corpus to JSONL/text files or folders")
    texts = chunk_documents(read_documents(args.corpus), args.chunk_chars)
    if args.select:
        chosen = set(read_selection(args.select))
        texts = [t for t in texts if t.id in chosen]
        if len(texts) != len(chosen):
            raise InputError(f"{args.select} names {len(chosen) - len(texts)} texts that are not in the corpus")
    if args.sample_texts > 0:
        texts = random.Random(config.seed).sample(texts, min(args.sample_texts, len(texts)))
    return texts


def read_selection(path: str | Path) -> list[str]:
    import json

    try:
        return list(json.loads(Path(path).read_text(encoding="utf-8"))["selected"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a selection written by jiuzhang_select.py ({error})") from None


def mix(pretraining: list[str], sft: list[str], output: str, seed: int) -> dict:
    """The final model's training file: pre-training rows shuffled (seeded), then SFT rows shuffled, in that order."""
    rng = random.Random(seed)
    parts = []
    for files in (pretraining, sft):
        rows = [row for path in files for row in read_jsonl(path)]
        for number, row in enumerate(rows, start=1):
            if not isinstance(row.get("input"), str) or not isinstance(row.get("output"), str):
                raise InputError(f"row {number} of {files}: needs 'input' and 'output' text")
        rng.shuffle(rows)
        parts.append([{"input": r["input"], "output": r["output"]} for r in rows])
    write_jsonl(parts[0] + parts[1], output)
    return {"pretraining_rows": len(parts[0]), "sft_rows": len(parts[1])}


def main(args: WriteArguments, config: WritingConfig, teacher: TeacherConfig) -> dict:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=args.log_level.upper())
    if args.merge:
        summary = merge_shards(args.merge, args.output, near_duplicate_threshold=config.near_duplicate_threshold)
        print(f"merged {summary['shards']} shards: {summary['kept_in_shards']} rows, "
              f"{summary['near_duplicates']} near duplicates across shards dropped; wrote {args.output}")  # fmt: skip
        return summary
    if args.mix_pretraining or args.mix_sft:
        summary = mix(args.mix_pretraining, args.mix_sft, args.output, config.seed)
        print(f"{summary['pretraining_rows']} pre-training rows, then {summary['sft_rows']} SFT rows: {args.output}")
        return summary
    texts = choose_texts(args, config)
    index = index_eval_sets(args.eval_sets, n=args.ngram)
    paths = OutputPaths.beside(args.output, args.stats)
    writer = open_teacher(args.writer, teacher, model_path=args.model_path, backend=args.backend, role="writer")
    try:
        stats = write_problems(texts, writer, config, paths, eval_index=index, progress=args.progress)
    except TeacherError as error:
        print(f"error: {error} (rerun to resume)", file=sys.stderr)
        sys.exit(3)
    print(
        f"kept {stats['kept']} of {stats['requests']} requests ({stats['pending']} pending); dropped: "
        f"{stats['dropped']}; {stats['texts_removed_by_decontamination']} texts overlapped the evaluation sets; "
        f"wrote {paths.output}, stats in {paths.stats}"
    )
    return stats


if __name__ == "__main__":
    recipes = ", ".join(
        str(p.relative_to(RECIPES.parent.parent)) for p in sorted((RECIPES / "jiuzhang").glob("*.yaml"))
    )
    run_script(
        main,
        make_parser(),
        f"usage: python training/jiuzhang_write.py --config RECIPE [--key value ...]; recipes: {recipes}",
    )
