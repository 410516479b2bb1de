"""Supervised fine-tuning with TRL's SFTTrainer, driven by a YAML recipe (NuminaMath's two stages, or the tiny demo).

Usage:

    # The tiny demo model, from scratch on CPU (a few minutes on 2 cores):
    python training/sft.py --config training/recipes/tiny/sft.yaml --output_dir models/tiny-tir

    # NuminaMath-7B-TIR on 8x H100: stage 1 (CoT), then stage 2 (TIR) from stage 1's output:
    accelerate launch --config_file training/recipes/accelerate_configs/zero3.yaml \\
        training/sft.py --config training/recipes/deepseek-math-7b/stage1_cot.yaml
    accelerate launch --config_file training/recipes/accelerate_configs/zero3.yaml \\
        training/sft.py --config training/recipes/deepseek-math-7b/stage2_tir.yaml

Any recipe key can be overridden on the command line (`--learning_rate 1e-5`); a misspelt key is an error.
`dataset_name` is a local JSONL/Parquet file, a dataset id, or `synthetic` (numina_kit.data.problems's TIR problems).
The loss covers prompt and solution (`completion_only_loss: false`, Numina's choice) unless the recipe sets
`completion_only_loss: true`; with `packing: true` the recipes use `packing_strategy: wrapped`, which concatenates
examples and cuts the stream into `max_length` blocks, so no token is lost (docs/training.md says why).
"""

import logging
from pathlib import Path

from components import (
    ScratchModelArguments,
    check_adapter_arguments,
    get_model,
    get_tokenizer,
    model_init_kwargs,
    recipe_parser,
    resolve_chat_template,
    run_script,
    scratch_tokenizer_and_model,
    train_and_save,
    usage,
)
from data import DataArguments, load_rows, render_prompt_completion
from schedules import SFTTrainer
from transformers import IntervalStrategy
from trl import ModelConfig, SFTConfig, TrlParser, get_peft_config

from numina_kit.data.problems import example_text
from numina_kit.errors import InputError
from numina_kit.models.demo import EOS


logger = logging.getLogger(__name__)
USAGE = usage("sft.py", kto=False)


def main(
    data_args: DataArguments,
    training_args: SFTConfig,
    model_args: ModelConfig,
    scratch_args: ScratchModelArguments,
) -> Path:
    """Train and save the model to `training_args.output_dir`; returns that folder."""
    check_adapter_arguments(model_args, from_scratch=scratch_args.from_scratch)
    if training_args.packing and training_args.packing_strategy == "bfd":
        logger.warning("packing_strategy 'bfd' cuts every example longer than max_length; 'wrapped' keeps them")
    if training_args.completion_only_loss is None:  # TRL's default for prompt/completion rows would mask the prompt
        training_args.completion_only_loss = False

    ###############
    # Load dataset
    ###############
    raw = load_rows(data_args)
    chat_template = resolve_chat_template(training_args.chat_template_path)
    # SFTTrainer would apply the file itself; the template is already set on the tokenizer below.
    training_args.chat_template_path = None

    ################
    # Model and tokenizer
    ################
    if scratch_args.from_scratch:
        train_rows = raw[data_args.dataset_train_split]
        texts = [example_text(row, EOS) for row in train_rows]
        tokenizer, model = scratch_tokenizer_and_model(scratch_args, texts, chat_template, training_args.seed)
        logger.info("from scratch: %d tokens, %.2fM parameters", len(tokenizer), model.num_parameters() / 1e6)
    else:
        if not model_args.model_name_or_path:
            raise InputError("no model: set model_name_or_path (or from_scratch: true)")
        tokenizer = get_tokenizer(model_args, chat_template, trust_remote_code=training_args.trust_remote_code)
        model = get_model(model_args, tokenizer, model_init_kwargs(model_args, training_args))
    dataset = {split: render_prompt_completion(rows, tokenizer.eos_token) for split, rows in raw.items()}

    ###############
    # Train and save
    ###############
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = dataset.get(data_args.dataset_test_split)
        if eval_dataset is None:  # e.g. one local JSONL file, which has only a train split
            logger.warning("no %r split in the data: evaluation is switched off", data_args.dataset_test_split)
            training_args.eval_strategy = IntervalStrategy.NO
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset[data_args.dataset_train_split],
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    output_dir = train_and_save(trainer, tokenizer, training_args.output_dir, model_args)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=data_args.dataset_name)
    trainer.end()
    return output_dir


def make_parser() -> TrlParser:
    """The recipe parser: TRL's script, SFT and model arguments plus our from-scratch model arguments."""
    return recipe_parser((DataArguments, SFTConfig, ModelConfig, ScratchModelArguments), USAGE)


if __name__ == "__main__":
    run_script(main, make_parser(), USAGE)
