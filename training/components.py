"""What `sft.py`, `kto_sample.py` and `kto.py` share: the model and tokenizer, saving, and the command line.

Shaped like open-r1's `utils/` (`get_tokenizer`, `get_model`). Every recipe trains with
`numina_kit.protocols.tora.CHAT_TEMPLATE`, the template inference builds its prompts from, so the two cannot drift; the
template ends each solution with EOS and the pad token is kept distinct from EOS, so the model learns to stop
(Numina's template had no EOS and its pad token was EOS: `tokenizer_config.json` of AI-MO/NuminaMath-7B-TIR).

`use_peft` trains LoRA adapters (peft) and `load_in_4bit` / `load_in_8bit` load the frozen base in bitsandbytes'
4/8-bit format (QLoRA); the saved model is always the base with the adapters merged into it, in the recipe's dtype,
so inference loads it like any other model (the adapters alone are kept in `output_dir/adapter`).
"""

import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trl import ModelConfig

from numina_kit.errors import InputError
from numina_kit.protocols.tora import CHAT_TEMPLATE


logger = logging.getLogger(__name__)

RECIPES = Path(__file__).resolve().parent / "recipes"
MODEL_FOLDERS = ("deepseek-math-7b", "tiny")  # recipe folders of sft.py and kto.py (others belong to other scripts)
PAD_TOKEN = "<|pad|>"
ADAPTER_FOLDER = "adapter"


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
    """The chat template a recipe trains with: `numina_kit.protocols.tora.CHAT_TEMPLATE`, or the `.jinja` file it names."""
    if chat_template_path is None:
        return CHAT_TEMPLATE
    path = Path(chat_template_path)
    if not path.is_file():
        raise InputError(f"chat_template_path {path} is not a file; leave it unset to use numina_kit.protocols.tora")
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer and model
# ---------------------------------------------------------------------------------------------------------------------


def require_model(model_args: ModelConfig) -> str:
    """The recipe's `model_name_or_path`; a one-line error when it is unset."""
    if not model_args.model_name_or_path:
        raise InputError("no model: set model_name_or_path to the SFT model to improve")
    return model_args.model_name_or_path


def load_pretrained(loader, name: str, **kwargs):
    """`loader.from_pretrained(name, ...)`, or a one-line `InputError` when `name` is no model folder or Hub id."""
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as error:  # no such folder, a folder without the files, no network, an invalid Hub id
        where = "not a model folder" if Path(name).is_dir() else "no such folder"
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise InputError(f"model {name!r}: {where}, and the Hub could not give it ({lines[0]})") from None


def get_tokenizer(model_args: ModelConfig, chat_template: str | None, *, trust_remote_code: bool = False):
    """The pretrained tokenizer with `chat_template` (None: its own), and a pad token distinct from EOS."""
    from transformers import AutoTokenizer

    tokenizer = load_pretrained(
        AutoTokenizer,
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=trust_remote_code,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        logger.info("pad token was EOS or missing: added %s (id %d)", PAD_TOKEN, tokenizer.pad_token_id)
    return tokenizer


def check_adapter_arguments(model_args: ModelConfig, *, from_scratch: bool = False) -> None:
    """Refuse LoRA / k-bit settings that cannot train, with one line each, before anything is loaded."""
    quantized = model_args.load_in_4bit or model_args.load_in_8bit
    flag = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
    if from_scratch and (model_args.use_peft or quantized):
        raise InputError(
            f"{'use_peft' if model_args.use_peft else flag} adapts a pretrained model: set from_scratch false"
        )
    if quantized and not model_args.use_peft:
        raise InputError(f"{flag} freezes the quantized weights: set use_peft true to train LoRA adapters on them")
    for wanted, package in ((model_args.use_peft, "peft"), (quantized, "bitsandbytes")):
        if wanted and importlib.util.find_spec(package) is None:
            raise InputError(f"{package} is not installed: pip install -e '.[train]'")


def model_init_kwargs(model_args: ModelConfig, training_args) -> dict:
    """`from_pretrained` arguments of a recipe: revision, dtype, attention, and bitsandbytes k-bit loading."""
    from trl import get_quantization_config

    kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    )
    quantization = get_quantization_config(model_args)
    if quantization is not None:  # k-bit weights are placed on this process's device when they are loaded
        kwargs.update(quantization_config=quantization, device_map={"": training_args.device})
    return kwargs


def get_model(model_args: ModelConfig, tokenizer, init_kwargs: dict):
    """The pretrained causal LM, its embeddings grown if the tokenizer gained a pad token, EOS and pad set."""
    from transformers import AutoModelForCausalLM

    model = load_pretrained(AutoModelForCausalLM, model_args.model_name_or_path, **init_kwargs)
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


def set_sampling_defaults(model, tokenizer) -> None:
    """Stop at EOS and sample by default: servers such as `transformers serve` only apply a request's
    temperature when the saved generation config says `do_sample` (otherwise every request is greedy)."""
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = True


def train_and_save(trainer, tokenizer, output_dir: str, model_args: ModelConfig | None = None) -> Path:
    """Train (resuming when the config asks), record metrics and state, then save a model that stops at EOS.

    The tokenizer is saved beside the model because it carries the chat template and the pad token. A LoRA run
    saves its adapters to `output_dir/adapter` and the base model with the adapters merged to `output_dir`.
    """
    result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    if model_args is not None and model_args.use_peft:
        adapter = Path(output_dir) / ADAPTER_FOLDER
        trainer.save_model(str(adapter))
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            merged = merge_adapter(model_args, tokenizer, adapter)
            set_sampling_defaults(merged, tokenizer)
            merged.save_pretrained(output_dir)
    else:
        set_sampling_defaults(trainer.model, tokenizer)
        trainer.save_model(output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(output_dir)
    logger.info("model saved to %s", output_dir)
    return Path(output_dir)


def merge_adapter(model_args: ModelConfig, tokenizer, adapter: Path):
    """The base model in the recipe's dtype (never k-bit) with the LoRA adapters of `adapter` merged into it."""
    from peft import PeftModel

    base = get_model(model_args, tokenizer, dict(revision=model_args.model_revision, dtype=model_args.dtype))
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def usage(script: str, kto: bool) -> str:
    """The line printed when `script` runs without arguments: how to call it and the recipes it takes."""
    recipes = [
        str(p.relative_to(RECIPES.parent.parent))
        for folder in MODEL_FOLDERS
        for p in sorted((RECIPES / folder).glob("*.yaml"))
        if p.stem.startswith("kto") == kto
    ]
    return f"usage: python training/{script} --config RECIPE [--key value ...]; recipes: {', '.join(recipes)}"


def recipe_parser(dataclass_types: tuple, usage_line: str):
    """A `TrlParser` over `dataclass_types` with no prefix matching (--learning_rat is not --learning_rate) that lists
    `--config` in `--help` (TrlParser reads and removes it before parsing, so it never reaches argparse)."""
    import argparse

    from trl import TrlParser

    parser = TrlParser(dataclass_types, allow_abbrev=False)
    parser.add_argument(
        "--config", metavar="RECIPE", default=argparse.SUPPRESS, help="YAML recipe; any of its keys can be overridden"
    )
    parser.description = usage_line
    return parser


def run_script(main: Callable, parser, usage_line: str) -> None:
    """The scripts' entry point: usage without arguments, a one-line `error: ...` for bad input, else `main`."""
    import yaml

    if len(sys.argv) == 1:
        print(usage_line)
        sys.exit(2)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        args = parser.parse_args_and_config()
    except yaml.YAMLError as error:  # a recipe that is not YAML: name the file and the place
        mark = getattr(error, "problem_mark", None)
        where = f"{mark.name} line {mark.line + 1} column {mark.column + 1}" if mark is not None else "the recipe"
        _fail(f"{where} is not valid YAML: {getattr(error, 'problem', None) or type(error).__name__}")
    except (OSError, ValueError) as error:  # a missing recipe, a misspelt or removed key
        _fail(str(error))
    try:
        main(*args)
    except InputError as error:
        _fail(str(error))


def _fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)
