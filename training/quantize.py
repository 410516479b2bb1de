"""Write an 8-bit copy of a model folder, ready to upload as a Kaggle model.

    # GPTQ 8-bit, to serve with vLLM on 2x T4 (run in the quantize venv: gptqmodel, see docs/serving.md)
    python training/quantize.py --model PATH --out DIR --method gptq --data tir.jsonl
    # bitsandbytes int8 through save_pretrained (transformers; CPU or CUDA)
    python training/quantize.py --model PATH --out DIR --method bnb

GPTQ follows Numina's recipe (bits 8, group size 128, 256 calibration samples drawn with seed 42 from TIR training
data and rendered with the project's chat template) except `desc_act=False`, so that vLLM can split the weights
over two GPUs with its non-Marlin kernel too. bitsandbytes int8 needs no calibration; the script reports how many
bytes the quantized linear layers and the whole model take against float32.
"""

import argparse
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from numina_kit.data.jsonl import read_jsonl
from numina_kit.errors import InputError
from numina_kit.protocols.tora import CHAT_TEMPLATE, render_messages


GPTQ_DEFAULTS = {"bits": 8, "group_size": 128, "desc_act": False, "sym": True}


@dataclass
class WeightBytes:
    """Bytes of an int8 model's weights against the same weights in float32."""

    linear_bytes: int  # the quantized linear layers as stored: int8 weights, per-row scales, format flags
    linear_fp32_bytes: int
    model_bytes: int  # every tensor of the state dict, tied tensors once
    model_fp32_bytes: int

    @property
    def linear_ratio(self) -> float:
        return self.linear_bytes / self.linear_fp32_bytes

    @property
    def model_ratio(self) -> float:
        return self.model_bytes / self.model_fp32_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder to quantize (Hugging Face format)")
    parser.add_argument("--out", required=True, help="folder to write the 8-bit model to (must not exist)")
    parser.add_argument("--method", required=True, choices=("gptq", "bnb"), help="gptq (serve with vLLM) or bnb")
    parser.add_argument("--data", help="GPTQ calibration data: JSONL with problem+solution or messages (TIR traces)")
    parser.add_argument("--num-samples", type=int, default=256, help="GPTQ calibration samples (default 256)")
    parser.add_argument("--seed", type=int, default=42, help="seed for drawing calibration samples (default 42)")
    parser.add_argument("--bits", type=int, default=GPTQ_DEFAULTS["bits"], help="GPTQ bits (default 8)")
    parser.add_argument("--group-size", type=int, default=GPTQ_DEFAULTS["group_size"], help="GPTQ group (128)")
    parser.add_argument("--batch-size", type=int, default=4, help="GPTQ calibration batch size (default 4)")
    parser.add_argument("--device", default=None, help="bnb: cpu or cuda (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    model, out = Path(args.model), Path(args.out)
    from numina_kit.models.load import read_model_config

    read_model_config(model)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} already exists and is not empty: choose a new --out folder")
    if args.method == "gptq":
        if not args.data:
            raise InputError("--method gptq needs --data: TIR training data (JSONL) to calibrate on")
        if args.num_samples < 1 or args.bits not in (2, 3, 4, 8) or args.group_size == 0:
            raise InputError("--num-samples must be >= 1, --bits one of 2, 3, 4, 8 and --group-size non-zero")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        texts = render_calibration(read_tir_rows(Path(args.data)), tokenizer, args.num_samples, seed=args.seed)
        print(f"calibrating on {len(texts)} samples from {args.data}")
        quantize_gptq(model, out, texts, gptq_config(args.bits, args.group_size), batch_size=args.batch_size)
        print(f"wrote GPTQ {args.bits}-bit checkpoint to {out}")
        return 0
    quantized = quantize_bnb(model, out, device=args.device)
    report = weight_bytes(quantized)
    print(f"wrote bitsandbytes int8 checkpoint to {out}")
    print(json.dumps({**asdict(report), "linear_ratio": report.linear_ratio, "model_ratio": report.model_ratio}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def read_tir_rows(path: Path) -> list[tuple[str, str]]:
    """(problem, solution) pairs from JSONL with `problem` + `solution` fields or `messages` (user, assistant)."""
    if not path.is_file():
        raise InputError(f"calibration data not found: {path}")
    rows = [pair for row in read_jsonl(path) if (pair := _problem_solution(row)) is not None]
    if not rows:
        raise InputError(f"{path}: no rows with problem and solution (or user and assistant messages)")
    return rows


def _problem_solution(row: Any) -> tuple[str, str] | None:
    if not isinstance(row, dict):
        return None
    if isinstance(row.get("problem"), str) and isinstance(row.get("solution"), str):
        return row["problem"], row["solution"]
    messages = row.get("messages")
    if isinstance(messages, list):
        user = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
        reply = next(
            (m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "assistant"), None
        )
        if isinstance(user, str) and isinstance(reply, str):
            return user, reply
    return None


def render_calibration(rows: list[tuple[str, str]], tokenizer: Any, num_samples: int, *, seed: int = 42) -> list[str]:
    """`num_samples` (problem, solution) pairs drawn with `seed`, each rendered as a whole training example with
    numina_kit.protocols.tora's chat template (the text the model was fine-tuned on, EOS included)."""
    chosen = list(rows)
    random.Random(seed).shuffle(chosen)
    return [
        tokenizer.apply_chat_template(render_messages(problem, solution), tokenize=False, chat_template=CHAT_TEMPLATE)
        for problem, solution in chosen[:num_samples]
    ]


def gptq_config(bits: int = 8, group_size: int = 128) -> dict[str, Any]:
    """GPTQModel `QuantizeConfig` arguments: no act-order, so vLLM can shard the weights with either kernel."""
    return {**GPTQ_DEFAULTS, "bits": bits, "group_size": group_size}


def quantize_gptq(model: Path, out: Path, texts: list[str], config: dict[str, Any], *, batch_size: int = 4) -> None:
    """Quantize with GPTQModel and save a checkpoint whose config.json vLLM reads (`quant_method: gptq`)."""
    try:
        from gptqmodel import GPTQModel, QuantizeConfig
    except ImportError:
        raise InputError(
            "gptqmodel is not installed: GPTQ needs its own venv (torch>=2.14.1, transformers>=5.20.2, "
            "gptqmodel==7.7.0; see docs/serving.md)"
        ) from None
    from transformers import AutoTokenizer

    quantized = GPTQModel.load(str(model), QuantizeConfig(**config))
    quantized.quantize(texts, batch_size=batch_size)
    quantized.save(str(out))
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    record = json.loads((out / "config.json").read_text()).get("quantization_config", {})
    if record.get("quant_method") != "gptq" or record.get("bits") != config["bits"]:
        raise RuntimeError(f"{out}/config.json does not describe a {config['bits']}-bit GPTQ checkpoint: {record}")


def quantize_bnb(model: Path, out: Path, *, device: str | None = None) -> Any:
    """Load `model` with bitsandbytes int8 weights and `save_pretrained` it (weights, scales and config) to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from numina_kit.models.load import bitsandbytes_problem

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if problem := bitsandbytes_problem(device.split(":")[0]):
        raise InputError(f"bitsandbytes int8 cannot run here: {problem}")
    quantized = AutoModelForCausalLM.from_pretrained(
        model,
        quantization_config=BitsAndBytesConfig(load_in_8bit=True),
        dtype=torch.float32 if device == "cpu" else torch.float16,
        device_map={"": device},
    )
    out.mkdir(parents=True, exist_ok=True)
    quantized.save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    return quantized


def weight_bytes(model: Any) -> WeightBytes:
    """Bytes of `model`'s state dict and of its bitsandbytes int8 linear layers, against float32 of the same shapes."""
    import bitsandbytes as bnb

    linear = linear_fp32 = 0
    quantized_names = set()
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear8bitLt):
            linear += sum(t.numel() * t.element_size() for t in module.state_dict().values())
            linear_fp32 += (
                module.in_features * module.out_features + (module.out_features if module.bias is not None else 0)
            ) * 4
            quantized_names.add(name)
    total = total_fp32 = 0
    seen = set()
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen and tensor.numel():
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
        owner, _, field = key.rpartition(".")
        if owner not in quantized_names or field in ("weight", "bias"):
            total_fp32 += tensor.numel() * 4  # scales and format flags exist only in the int8 model
    return WeightBytes(linear, linear_fp32, total, total_fp32)


if __name__ == "__main__":
    sys.exit(main())
