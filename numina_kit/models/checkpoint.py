"""What a model folder holds, read from its own files: `config.json`, its `quantization_config` (or AutoGPTQ's
`quantize_config.json`) and the context window. Never from the folder's name.

Both backends and `numina_kit.models.load` read checkpoints through here; anything a user can get wrong (a missing
path, a folder that is not a model) is a one-line `InputError`.
"""

import json
from pathlib import Path

from numina_kit.errors import InputError


DEFAULT_MAX_MODEL_LEN = 4096  # DeepSeekMath's context; Numina served 4096 tokens.


def read_model_config(model_path: str | Path) -> dict:
    """The checkpoint's `config.json`, after checking the folder holds a model: config, tokenizer and weights."""
    path = Path(model_path)
    if not path.exists():
        raise InputError(f"model path not found: {path}")
    hint = "expected a Hugging Face model folder with config.json, tokenizer files and *.safetensors weights"
    if not path.is_dir():
        raise InputError(f"{path} is a file, not a model folder ({hint})")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise InputError(f"{path} is not a model folder: no config.json ({hint})")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{config_file} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise InputError(f"{config_file} has no model_type: not a transformers model config")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise InputError(f"{path} is not a model folder: no weights (*.safetensors or *.bin) ({hint})")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise InputError(f"{path} is not a model folder: no tokenizer files ({hint})")
    return config


def checkpoint_quantization(model_path: str | Path, config: dict | None = None) -> dict | None:
    """The checkpoint's own quantization record: `config.json`'s `quantization_config`, or AutoGPTQ's
    `quantize_config.json`; None when the weights are not quantized. `quant_method` is always set, lower case."""
    path = Path(model_path)
    config = read_model_config(path) if config is None else config
    record = config.get("quantization_config")
    if not record and (path / "quantize_config.json").is_file():
        record = json.loads((path / "quantize_config.json").read_text(encoding="utf-8"))
        record.setdefault("quant_method", "gptq")  # the file AutoGPTQ writes; it names no method
    if not record:
        return None
    if "quant_method" not in record:
        raise InputError(f"{path}/config.json has a quantization_config without quant_method")
    return {**record, "quant_method": str(record["quant_method"]).lower()}


def weight_bits(record: dict) -> int | None:
    """Bits per weight in a quantization record (8 for bitsandbytes int8, GPTQ bits=8, compressed-tensors W8)."""
    method = record["quant_method"]
    if method == "bitsandbytes":
        return 8 if record.get("load_in_8bit") else 4 if record.get("load_in_4bit") else None
    if method in ("gptq", "awq"):
        return record.get("bits") or record.get("w_bit")
    if method == "compressed-tensors":
        bits = {group.get("weights", {}).get("num_bits") for group in record.get("config_groups", {}).values()}
        return bits.pop() if len(bits) == 1 else None
    if method in ("fp8", "fbgemm_fp8"):
        return 8
    return record.get("bits")


def context_length(config: dict, cap: int | None = DEFAULT_MAX_MODEL_LEN) -> int:
    """The model's context window from its config (capped at `cap`), for vLLM's `max_model_len`."""
    names = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")
    length = next((config[name] for name in names if isinstance(config.get(name), int)), None)
    length = length or cap or DEFAULT_MAX_MODEL_LEN
    return min(length, cap) if cap else length
