"""Tiny models of real architectures with tokenizers that carry the family's real special tokens and chat template.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in-process on the caller's texts, to which the
family's special tokens are added under their real names (gpt-oss: Harmony's `<|start|>`, `<|channel|>`,
`<|message|>`, `<|end|>`, `<|call|>`, `<|return|>`, ...; Qwen3: `<|im_start|>`, `<|im_end|>`, and the non-special
`<think>`, `<tool_call>`, `<tool_response>` tags), and the caller's chat template text (the model's own, from its
public repository) is attached. The model is a randomly initialised `GptOssForCausalLM` or `Qwen3ForCausalLM` a few
hundred kilobytes large, with the family's end-of-turn tokens as EOS. `memorize` trains it on a few texts until it
reproduces them, so a test can run a real generator through a real protocol end to end.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Family:
    """A model family's tokens: the special ones (special: skipped by `skip_special_tokens`), the added plain ones,
    which token is EOS and pad, and every token that ends a turn (the generation config's `eos_token_id`)."""

    special: tuple[str, ...]
    plain: tuple[str, ...]
    eos: str
    pad: str
    stops: tuple[str, ...]


FAMILIES = {
    # openai/gpt-oss-20b: tokenizer_config.json (eos <|return|>, pad <|endoftext|>), generation_config.json
    # (eos_token_id [200002, 199999, 200012]: <|return|>, <|endoftext|>, <|call|>)
    "gpt-oss": Family(
        special=(
            "<|startoftext|>",
            "<|endoftext|>",
            "<|return|>",
            "<|constrain|>",
            "<|channel|>",
            "<|start|>",
            "<|end|>",
            "<|message|>",
            "<|call|>",
        ),
        plain=(),
        eos="<|return|>",
        pad="<|endoftext|>",
        stops=("<|return|>", "<|endoftext|>", "<|call|>"),
    ),
    # Qwen/Qwen3-0.6B: tokenizer_config.json (eos <|im_end|>, pad <|endoftext|>; the tool and think tags are added
    # tokens that are not special), generation_config.json (eos_token_id [151645, 151643])
    "qwen3": Family(
        special=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        plain=("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"),
        eos="<|im_end|>",
        pad="<|endoftext|>",
        stops=("<|im_end|>", "<|endoftext|>"),
    ),
}


def train_family_tokenizer(family: str, texts: Iterable[str], chat_template: str, *, vocab_size: int = 2000) -> Any:
    """A byte-level BPE tokenizer trained on `texts`, with `family`'s tokens added and `chat_template` attached."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[family]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec.special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in spec.plain])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=spec.eos, pad_token=spec.pad)
    wrapped.chat_template = chat_template
    return wrapped


def build_family_model(family: str, tokenizer: Any, *, hidden_size: int = 128, num_layers: int = 2, seed: int = 0):
    """A randomly initialised model of `family`'s architecture for `tokenizer`, in float32, head_dim 32 (vLLM's CPU
    attention takes 32 or 64)."""
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM, Qwen3Config, Qwen3ForCausalLM

    spec = FAMILIES[family]
    stops = [tokenizer.convert_tokens_to_ids(token) for token in spec.stops]
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stops,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if family == "gpt-oss":
        config = GptOssConfig(
            **common,
            num_local_experts=2,
            num_experts_per_tok=1,
            sliding_window=128,
            layer_types=["sliding_attention", "full_attention"][:num_layers],
        )
        model = GptOssForCausalLM(config)
    else:
        model = Qwen3ForCausalLM(Qwen3Config(**common))
    model = model.to(torch.float32)
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def memorize(model: Any, tokenizer: Any, texts: list[str], *, steps: int = 200, lr: float = 5e-3) -> float:
    """Train `model` on `texts` (whole sequences, every token a target) until it reproduces them; the last loss."""
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if loss.item() < 0.01:
            break
    model.eval()
    return loss.item()


def save(model: Any, tokenizer: Any, path: str | Path) -> Path:
    """Save a model folder that `numina_kit.models.load.load_generator` (and vLLM) can open."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path
