"""Benchmark HFGenerator on CPU: tokens per second of a tiny model at batch 1 (the baseline) and batch 48, in full
precision and with bitsandbytes int8 weights, and the bytes of the same weights in float32 against int8.

    python benchmarks/generation.py [--max-new-tokens 64] [--threads 1 2]

Writes its section of docs/benchmarks.md. The model is random (numina_kit.models.demo), so it rarely emits EOS and every
completion runs close to `max_new_tokens`; tokens/s counts the tokens actually generated.
"""

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import markdown_table, write_section  # noqa: E402

from numina_kit.models.base import SamplingParams  # noqa: E402
from numina_kit.models.demo import save_demo_model  # noqa: E402
from numina_kit.models.load import load_generator  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
TEXT = "### Problem: What is 12 times 7?\n### Solution: ```python\nprint(12*7)\n```\n```output\n84\n```\n$\\boxed{84}$"
PROBLEMS = [f"### Problem: What is {a} times {a + 3}?\n### Solution: " for a in range(48)]


def tokens_per_second(generator, prompts: list[str], batch: int, max_new_tokens: int) -> tuple[float, int]:
    """Generate for `prompts` in calls of `batch` prompts; return (generated tokens per second, tokens)."""
    params = SamplingParams(temperature=0.8, max_new_tokens=max_new_tokens, seed=0)
    generator.generate(prompts[:1], SamplingParams(temperature=0, max_new_tokens=4))  # warm-up
    start, tokens = time.perf_counter(), 0
    for first in range(0, len(prompts), batch):
        tokens += sum(c.num_tokens for c in generator.generate(prompts[first : first + batch], params))
    return tokens / (time.perf_counter() - start), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch CPU threads to try")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("quantize", ROOT / "training" / "quantize.py")
    quantize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quantize)

    with tempfile.TemporaryDirectory() as tmp:
        model = save_demo_model(
            Path(tmp) / "model", [TEXT] * 16, vocab_size=512, hidden_size=args.hidden_size, num_layers=args.layers
        )
        rows = []
        for precision in ("float32", "int8"):
            generator = load_generator(model, backend="hf", quantization="int8" if precision == "int8" else "none")
            for threads in dict.fromkeys(args.threads):
                torch.set_num_threads(threads)
                # Batch 1 over 8 prompts is the baseline; batch 48 runs all 48 prompts in one call.
                single, single_tokens = tokens_per_second(generator, PROBLEMS[:8], 1, args.max_new_tokens)
                batched, batched_tokens = tokens_per_second(generator, PROBLEMS, 48, args.max_new_tokens)
                rows.append([precision, threads, f"{single:.0f}", f"{batched:.0f}", f"{batched / single:.1f}x"])
                print(rows[-1], single_tokens, batched_tokens, flush=True)
        int8 = load_generator(model, backend="hf", quantization="int8")
        sizes = quantize.weight_bytes(int8.model)
    params = sum(p.numel() for p in generator.model.parameters())
    body = (
        f"Tiny random Llama from `numina_kit.models.demo` ({args.layers} layers, hidden {args.hidden_size}, vocab 512; "
        f"about {params / 1e6:.2f}M parameters, tied embeddings), `HFGenerator` on CPU, temperature 0.8, "
        f"`max_new_tokens={args.max_new_tokens}`, seeded. Tokens/s counts generated tokens; batch 1 (8 prompts one "
        "at a time) is the baseline measured in the same run.\n\n"
        + markdown_table(["weights", "torch threads", "batch 1 tok/s", "batch 48 tok/s", "batch 48 vs batch 1"], rows)
        + "\n\nWeight bytes of the same model, float32 against bitsandbytes int8 (as held in memory and saved):\n\n"
        + markdown_table(
            ["part", "float32 bytes", "int8 bytes", "int8 / float32"],
            [
                ["quantized linear layers", sizes.linear_fp32_bytes, sizes.linear_bytes, f"{sizes.linear_ratio:.3f}"],
                ["whole model", sizes.model_fp32_bytes, sizes.model_bytes, f"{sizes.model_ratio:.3f}"],
            ],
        )
        + "\n\nOn this shared 2-core machine, runs with 2 torch threads were 5-15x slower than with 1 (OpenMP threads "
        "spinning against other jobs); compare with `--threads 1 2` on a quiet machine. The linear layers keep one float32 scale per output row beside their int8 weights; embeddings and "
        "norms stay in float32, which is why the whole tiny model shrinks less than its linear layers (a 7B model "
        "is ~97% linear weights). bitsandbytes int8 on CPU is for checking the path, not for speed: its matmul "
        "casts activations to float16 and back."
    )
    write_section("generation", "Generation (HFGenerator on CPU)", body)


if __name__ == "__main__":
    main()
