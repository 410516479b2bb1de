"""What `sft.py` and `kto.py` share: their extra recipe arguments, and getting the dataset, tokenizer and model.

Shaped like open-r1's `utils/` (`get_dataset`, `get_tokenizer`, `get_model`). Every training example is rendered to
text with `numina_kit.prompts.CHAT_TEMPLATE`, the template inference builds its prompts from, so the two cannot
drift; the template ends each solution with EOS and the pad token is kept distinct from EOS, so the model learns
to stop (Numina's pad == EOS and EOS-less template hid it; numina.md §1, §7.8).
"""

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trl import ModelConfig, ScriptArguments

from numina_kit.data.problems import synthetic_problems, to_messages
from numina_kit.errors import InputError
from numina_kit.prompts import CHAT_TEMPLATE


logger = logging.getLogger(__name__)

RECIPES = Path(__file__).resolve().parent / "recipes"
MODEL_FOLDERS = ("deepseek-math-7b", "tiny")  # recipe folders of sft.py and kto.py (others belong to other scripts)
SYNTHETIC = "synthetic"
PAD_TOKEN = "<|pad|>"


@dataclass
class DataArguments(ScriptArguments):
    """TRL's script arguments plus the synthetic data set and a held-out file kept out of it."""

    synthetic_size: int = field(
        default=4000, metadata={"help": "Problems to generate when dataset_name is 'synthetic'."}
    )
    synthetic_seed: int = field(default=1, metadata={"help": "Seed of the synthetic training problems."})
    held_out_problems: str | None = field(
        default=None,
        metadata={
            "help": "A problem file (JSONL/CSV/Parquet) whose problems are excluded from synthetic training data."
        },
    )


@dataclass
class ScratchModelArguments:
    """A model trained from random initialisation, with a tokenizer built from the training data (the tiny demo)."""

    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "Ignore model_name_or_path: train a tokenizer on the data and a random Llama from a config."
        },
    )
    vocab_size: int = field(default=512, metadata={"help": "Tokenizer vocabulary size (from_scratch)."})
    hidden_size: int = field(default=128, metadata={"help": "Hidden size (from_scratch)."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Transformer layers (from_scratch)."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads (from_scratch)."})
    max_position_embeddings: int = field(default=2048, metadata={"help": "Context length (from_scratch)."})


def resolve_chat_template(chat_template_path: str | None) -> str:
    """The chat template a recipe trains with: `numina_kit.prompts.CHAT_TEMPLATE`, or the `.jinja` file it names."""
    if chat_template_path is None:
        return CHAT_TEMPLATE
    path = Path(chat_template_path)
    if not path.is_file():
        raise InputError(f"chat_template_path {path} is not a file; leave it unset to use numina_kit.prompts")
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------------------------------


def load_rows(data_args: DataArguments):
    """The raw `DatasetDict`: synthetic problems, a local JSONL/Parquet file, or a dataset id on the Hub."""
    from datasets import Dataset, DatasetDict, load_dataset

    name = data_args.dataset_name
    if not name:
        raise InputError("no dataset: set dataset_name to a JSONL/Parquet file, a dataset id, or 'synthetic'")
    if name == SYNTHETIC:
        exclude = set()
        if data_args.held_out_problems:
            from numina_kit.data.problems import load_problems

            exclude = {p.problem for p in load_problems(data_args.held_out_problems)}
        rows = [
            p.to_row()
            for p in synthetic_problems(data_args.synthetic_size, seed=data_args.synthetic_seed, exclude=exclude)
        ]
        return DatasetDict({data_args.dataset_train_split: Dataset.from_list(rows)})
    path = Path(name)
    if path.suffix.lower() in (".jsonl", ".json", ".parquet"):
        if not path.is_file():
            raise InputError(f"dataset file not found: {path}")
        builder = "parquet" if path.suffix.lower() == ".parquet" else "json"
        return load_dataset(builder, data_files={data_args.dataset_train_split: str(path)})
    if path.exists():
        raise InputError(f"{path}: unsupported dataset file type (use .jsonl or .parquet)")
    return load_dataset(name, name=data_args.dataset_config)


def render_texts(dataset, tokenizer):
    """Each row (NuminaMath-CoT/-TIR `messages`, or `problem`/`solution`) as one `text` rendered by the template.

    Rows with `input`/`output` (JiuZhang3.0's schema, `numina_kit.data.jiuzhang`) are raw text: they become TRL's
    `prompt`/`completion`, trained without a chat template and with the loss on the completion only.
    """
    if {"input", "output"} <= set(dataset.column_names):
        extra = [c for c in dataset.column_names if c not in ("input", "output")]
        return dataset.remove_columns(extra).rename_columns({"input": "prompt", "output": "completion"})

    def render(row: dict) -> dict:
        return {"text": tokenizer.apply_chat_template(to_messages(row), tokenize=False)}

    return dataset.map(render, remove_columns=dataset.column_names, desc="Rendering chat template")


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer and model
# ---------------------------------------------------------------------------------------------------------------------


def get_tokenizer(model_args: ModelConfig, chat_template: str, *, trust_remote_code: bool = False):
    """The pretrained tokenizer with our chat template, and a pad token distinct from EOS (added when missing)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, trust_remote_code=trust_remote_code
    )
    tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        logger.info("pad token was EOS or missing: added %s (id %d)", PAD_TOKEN, tokenizer.pad_token_id)
    return tokenizer


def get_model(model_args: ModelConfig, tokenizer, model_init_kwargs: dict):
    """The pretrained causal LM, its embeddings grown if the tokenizer gained a pad token, EOS and pad set."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **model_init_kwargs)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    set_special_tokens(model, tokenizer)
    return model


def scratch_tokenizer_and_model(scratch: ScratchModelArguments, texts: list[str], chat_template: str, seed: int):
    """A tokenizer trained on `texts` (single-digit tokens) and a random Llama sized by `scratch` (the tiny demo)."""
    from numina_kit.models.demo import build_model, train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=scratch.vocab_size, model_max_length=scratch.max_position_embeddings)
    tokenizer.chat_template = chat_template
    model = build_model(
        tokenizer,
        hidden_size=scratch.hidden_size,
        num_layers=scratch.num_hidden_layers,
        num_heads=scratch.num_attention_heads,
        max_position_embeddings=scratch.max_position_embeddings,
        seed=seed,
    )
    set_special_tokens(model, tokenizer)
    return tokenizer, model


def set_special_tokens(model, tokenizer) -> None:
    """Make the model's config and generation config agree with the tokenizer on BOS, EOS and pad."""
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        if tokenizer.bos_token_id is not None:
            config.bos_token_id = tokenizer.bos_token_id


def train_and_save(trainer, tokenizer, output_dir: str) -> Path:
    """Train (resuming when the config asks), record metrics and state, then save a model that stops at EOS.

    The tokenizer is saved beside the model because it carries the chat template and the pad token.
    """
    result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    trainer.model.generation_config.eos_token_id = tokenizer.eos_token_id
    trainer.save_model(output_dir)
    tokenizer.save_pretrained(output_dir)
    logger.info("model saved to %s", output_dir)
    return Path(output_dir)


def usage(script: str, kto: bool) -> str:
    """The line printed when `script` runs without arguments: how to call it and the recipes it takes."""
    recipes = [
        str(p.relative_to(RECIPES.parent.parent))
        for folder in MODEL_FOLDERS
        for p in sorted((RECIPES / folder).glob("*.yaml"))
        if p.stem.startswith("kto") == kto
    ]
    return f"usage: python training/{script} --config RECIPE [--key value ...]; recipes: {', '.join(recipes)}"


def run_script(main: Callable, parser, usage_line: str) -> None:
    """The scripts' entry point: usage without arguments, a one-line `error: ...` for bad input, else `main`."""
    if len(sys.argv) == 1:
        print(usage_line)
        sys.exit(2)
    try:
        args = parser.parse_args_and_config()
    except (FileNotFoundError, ValueError) as error:  # a missing recipe, a misspelt or removed key
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)
    try:
        main(*args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
