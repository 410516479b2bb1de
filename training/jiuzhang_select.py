"""JiuZhang3.0's text selection (LESS): which texts should the teacher write about in the boost round?

Usage:

    python training/jiuzhang_select.py --config training/recipes/jiuzhang/select_7b.yaml

1. Warm up a LoRA reference model (peft, through TRL's trainer) on `warmup_share` of the candidate rows (the
   initial synthesis model's problems, written by `jiuzhang_write.py --rows problem`), saving a checkpoint with its
   optimizer state every epoch.
2. For every candidate row and every target row (the target task's training split, `input`/`output`), compute
   per-sample gradients on the LoRA parameters at each checkpoint; score each candidate by LESS's influence
   (`numina_kit.data.influence`).
3. A text's value is the mean score of its rows; write the `budget` best texts (minus those in `exclude`, already
   sent to the teacher) to `selection`, for `jiuzhang_write.py --select`.

Keys: `SelectionArguments` (below), TRL's `SFTConfig` (the warmup: epochs, learning rate, output_dir for the
checkpoints) and `ModelConfig` (the reference model and its LoRA: use_peft, lora_r, lora_alpha, lora_target_modules).
"""

import logging
import random
from dataclasses import dataclass, field

from components import RECIPES, run_script
from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser, get_peft_config

from numina_kit.data.influence import (
    find_checkpoints,
    influence_scores,
    select_top,
    text_values,
    tokenize_examples,
    write_selection,
)
from numina_kit.data.jsonl import read_jsonl
from numina_kit.errors import InputError


logger = logging.getLogger("jiuzhang_select")


@dataclass
class SelectionArguments:
    """The rows to score and to aim at, and how many texts to choose."""

    candidates: str = ""  # input/output/text_id rows written by the initial synthesis model
    targets: str = ""  # input/output rows of the target task's training split (never its test split)
    exclude: list[str] = field(default_factory=list)  # row files whose text_ids the teacher has already seen
    warmup_share: float = 0.05  # of the candidate rows, for the reference model's warmup (LESS: 5%)
    budget: int = 4000  # texts to select (JiuZhang3.0: 4k)
    projection_dim: int = 8192
    projection_seed: int = 0
    gradient_chunk: int = 16  # samples per vmap call
    selection: str = "data/jiuzhang/selection.json"


def make_parser() -> TrlParser:
    return TrlParser((SelectionArguments, SFTConfig, ModelConfig), allow_abbrev=False)


def main(args: SelectionArguments, training_args: SFTConfig, model_args: ModelConfig) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not model_args.use_peft:
        raise InputError("the reference model is a LoRA model: set use_peft: true")
    if training_args.save_strategy == "no" or training_args.save_only_model:
        raise InputError("save checkpoints with their optimizer state: save_strategy epoch, save_only_model false")
    if training_args.gradient_checkpointing:
        raise InputError("set gradient_checkpointing: false (its input hooks cannot run under per-sample gradients)")
    if not model_args.model_name_or_path:
        raise InputError("no reference model: set model_name_or_path")
    rows = read_jsonl(args.candidates)
    targets = read_jsonl(args.targets)
    for name, data in (("candidates", rows), ("targets", targets)):
        if not data or any(not isinstance(r.get("input"), str) or not isinstance(r.get("output"), str) for r in data):
            raise InputError(f"{name}: every row needs 'input' and 'output' text")
    if any("text_id" not in r for r in rows):
        raise InputError(f"{args.candidates}: candidate rows need a 'text_id' (write them with jiuzhang_write.py)")

    # 1) the reference model's warmup, a checkpoint with its Adam state per save
    warm = random.Random(training_args.seed).sample(rows, max(1, round(args.warmup_share * len(rows))))
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, dtype=model_args.dtype, attn_implementation=model_args.attn_implementation
    )
    dataset = Dataset.from_list([{"prompt": r["input"], "completion": r["output"]} for r in warm])
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.train()
    checkpoints = find_checkpoints(training_args.output_dir)

    # 2) influence of every candidate row on the target rows
    excluded = {r["text_id"] for path in args.exclude for r in read_jsonl(path) if "text_id" in r}
    rows = [r for r in rows if r["text_id"] not in excluded]
    max_length = training_args.max_length or 1024
    scores = influence_scores(
        trainer.model,
        trainer.optimizer,
        checkpoints,
        tokenize_examples(rows, tokenizer, max_length=max_length),
        tokenize_examples(targets, tokenizer, max_length=max_length),
        projection_dim=args.projection_dim,
        seed=args.projection_seed,
        chunk=args.gradient_chunk,
    )

    # 3) texts by the mean score of their rows
    values = text_values(scores, [r["text_id"] for r in rows])
    selected = select_top(values, args.budget)
    write_selection(args.selection, values, selected)
    print(
        f"selected {len(selected)} of {len(values)} texts ({len(rows)} rows, {len(targets)} targets, "
        f"{len(checkpoints)} checkpoints, lr {[c.learning_rate for c in checkpoints]}); wrote {args.selection}"
    )
    return {"selected": selected, "values": values, "checkpoints": [str(c.path) for c in checkpoints]}


if __name__ == "__main__":
    recipes = ", ".join(
        str(p.relative_to(RECIPES.parent.parent)) for p in sorted((RECIPES / "jiuzhang").glob("select*.yaml"))
    )
    run_script(main, make_parser(), f"usage: python training/jiuzhang_select.py --config RECIPE; recipes: {recipes}")
