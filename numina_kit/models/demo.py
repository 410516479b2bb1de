"""The tiny demo model: a tokenizer trained on text in-process and a small randomly initialised Llama.

Nothing is downloaded. Tests build one in a temporary folder; `training/recipes/tiny/` trains one from scratch on
the synthetic TIR problems of `numina_kit.data.problems`, and `make demo` serves it. The tokenizer splits every digit into
its own token, so a small model can copy numbers between the problem, its code and the code's output.
"""

from collections.abc import Iterable
from pathlib import Path

from numina_kit.protocols.tora import CHAT_TEMPLATE


BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 512, model_max_length: int = 2048):
    """A byte-level BPE tokenizer trained on `texts`, with single-digit tokens, BOS added, and our chat template.

    EOS and PAD are distinct tokens, so EOS is a training target: with pad == eos, as in the tokenizer of
    AI-MO/NuminaMath-7B-TIR, a collator that masks pad ids out of the labels never trains EOS.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="left",
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(
    tokenizer,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
    seed: int = 0,
):
    """A randomly initialised `LlamaForCausalLM` sized for `tokenizer`, in float32 (CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_demo_model(path: str | Path, texts: Iterable[str], *, vocab_size: int = 512, **model_kwargs) -> Path:
    """Train a tokenizer on `texts`, build a random model for it, and save both to `path` (a model folder)."""
    path = Path(path)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = build_model(tokenizer, **model_kwargs)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path
