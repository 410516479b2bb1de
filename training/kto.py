"""On-policy KTO, step 2 of 2: train the SFT model with TRL's KTOTrainer on the samples `kto_sample.py` labelled.

Usage:

    # The tiny demo model on CPU (train it first with sft.py, then sample):
    python training/kto_sample.py --config training/recipes/tiny/kto.yaml
    python training/kto.py --config training/recipes/tiny/kto.yaml

    # NuminaMath-7B-TIR: sample on one GPU (vLLM), then train on 8x H100:
    python training/kto_sample.py --config training/recipes/deepseek-math-7b/kto.yaml
    accelerate launch --config_file training/recipes/accelerate_configs/zero3.yaml \\
        training/kto.py --config training/recipes/deepseek-math-7b/kto.yaml

What happens to the samples, in order: 1) read `samples_path` (kto_sample.py's per-problem lines, or flat
`prompt`/`completion`/`label` rows from elsewhere); 2) drop those longer than `max_length` tokens with EOS, so none
is cut; 3) shuffle with the recipe's `seed`: TRL pairs each completion with its batch neighbour's prompt to estimate
the KL term, and the file keeps a problem's samples together; 4) weigh desirable and undesirable examples so both
classes count equally; 5) train and save.
"""

import logging
import random
from pathlib import Path

import kto_sample
from components import (
    check_adapter_arguments,
    get_model,
    get_tokenizer,
    model_init_kwargs,
    require_model,
    run_script,
    train_and_save,
    usage,
)
from kto_sample import DataArguments, SamplingArguments, samples_file
from trl import KTOConfig, KTOTrainer, ModelConfig, TrlParser, get_peft_config

from numina_kit.data.jsonl import read_jsonl
from numina_kit.errors import InputError


logger = logging.getLogger(__name__)
USAGE = usage("kto.py", kto=True)


def read_samples(path: str | Path) -> list[dict]:
    """`prompt`/`completion`/`label` rows from a samples file; `InputError` when it is missing or a row is malformed.

    A line with `samples` (what kto_sample.py writes) gives one row per sample; any other line is one row.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"samples file not found: {path} (write it first: python training/kto_sample.py --config ...)"
        )
    rows = []
    for number, record in enumerate(read_jsonl(path, appended=True), start=1):
        for sample in record.get("samples", [record]):
            prompt, completion, label = (
                sample.get("prompt", record.get("prompt")),
                sample.get("completion"),
                sample.get("label"),
            )
            if not isinstance(prompt, str) or not isinstance(completion, str):
                raise InputError(f"{path}: line {number} needs 'prompt' and 'completion' text")
            if not isinstance(label, bool):
                raise InputError(f"{path}: line {number} needs a true/false 'label'")
            rows.append({"prompt": prompt, "completion": completion, "label": label})
    return rows


def drop_too_long(rows: list[dict], tokenizer, max_length: int | None) -> list[dict]:
    """The rows whose prompt + completion + EOS fit in `max_length` tokens (TRL would cut the others' ends)."""
    if max_length is None:
        return rows
    eos = tokenizer.eos_token or ""
    kept = [row for row in rows if len(tokenizer(row["prompt"] + row["completion"] + eos)["input_ids"]) <= max_length]
    if len(kept) < len(rows):
        logger.warning(
            "dropped %d of %d samples longer than max_length %d", len(rows) - len(kept), len(rows), max_length
        )
    return kept


def shuffled(rows: list[dict], seed: int) -> list[dict]:
    """`rows` in a seeded random order, so a batch mixes problems and KTO's KL pairs cross prompts."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    return order


def training_rows(path: str | Path, tokenizer, max_length: int | None, seed: int) -> list[dict]:
    """The samples KTOTrainer gets: read, without those longer than `max_length`, shuffled with `seed`."""
    return shuffled(drop_too_long(read_samples(path), tokenizer, max_length), seed)


def balanced_weights(num_desirable: int, num_undesirable: int) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) that make both classes weigh the same, the rarer one scaled up.

    The KTO paper asks for desirable_weight * D / (undesirable_weight * U) in [1, 4/3]; equal mass gives 1.
    """
    if num_desirable == 0 or num_undesirable == 0:
        raise InputError(
            f"KTO needs both desirable and undesirable samples, got {num_desirable} and {num_undesirable}: "
            "sample more problems or completions (num_problems, num_samples)"
        )
    if num_desirable < num_undesirable:
        return num_undesirable / num_desirable, 1.0
    return 1.0, num_desirable / num_undesirable


def main(
    data_args: DataArguments, training_args: KTOConfig, model_args: ModelConfig, sampling: SamplingArguments
) -> Path:
    """Read the labelled samples, train, and save to `training_args.output_dir`; returns that folder."""
    from datasets import Dataset

    require_model(model_args)
    check_adapter_arguments(model_args)
    path = samples_file(sampling, training_args)
    read_samples(path)  # a missing or malformed file fails before the model is loaded
    tokenizer = get_tokenizer(model_args, None, trust_remote_code=training_args.trust_remote_code)
    rows = training_rows(path, tokenizer, training_args.max_length, training_args.seed)

    num_desirable = sum(row["label"] for row in rows)
    num_undesirable = len(rows) - num_desirable
    logger.info("%d samples: %d desirable, %d undesirable", len(rows), num_desirable, num_undesirable)
    if sampling.balance_weights:
        training_args.desirable_weight, training_args.undesirable_weight = balanced_weights(
            num_desirable, num_undesirable
        )
        logger.info(
            "weights: desirable %.3f, undesirable %.3f",
            training_args.desirable_weight,
            training_args.undesirable_weight,
        )

    model = get_model(model_args, tokenizer, model_init_kwargs(model_args, training_args))
    trainer = KTOTrainer(
        model=model,
        args=training_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    output_dir = train_and_save(trainer, tokenizer, training_args.output_dir, model_args)
    trainer.end()
    return output_dir


def make_parser() -> TrlParser:
    """The KTO recipe parser, the same as kto_sample.py's: both steps read one recipe."""
    return kto_sample.make_parser(USAGE)


if __name__ == "__main__":
    run_script(main, make_parser(), USAGE)
