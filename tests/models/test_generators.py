"""numina_kit.models.hf and .vllm: one set of behavioural tests run against both backends - `HFGenerator`
(transformers, CPU) and `VLLMGenerator` over the real vLLM engine (its CPU build, in .venv-vllm) - on a tiny random
Llama (head_dim 32, which vLLM's CPU attention takes) built in a temporary folder: stop strings kept at the end of the
text with finish_reason/stop_reason, max_new_tokens, EOS from generation_config, per-prompt seeds reproducible across
batch sizes, greedy batching, token counts, the context window, 48 prompts in one call. Then what is particular to
transformers: int8 weights and its own batching.

The vLLM cases are marked `vllm` and skip where vLLM is not installed; `make test-vllm` runs them.
"""

import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from numina_kit.errors import InputError
from numina_kit.models.base import Completion, Generator, SamplingParams
from numina_kit.models.demo import save_demo_model
from numina_kit.models.hf import HFGenerator
from numina_kit.models.load import load_generator
from numina_kit.testing import VLLM_MISSING, open_vllm_in_process


TEXTS = [
    "### Problem: What is 2+3?\n### Solution: ```python\nprint(2+3)\n```\n```output\n5\n```\nThe answer is $\\boxed{5}$.",
    "### Problem: Find x if 3x = 12.\n### Solution: ```python\nfrom sympy import *\nx = symbols('x')\n"
    "print(solve(3*x - 12, x))\n```\n```output\n[4]\n```\nSo $x = \\boxed{4}$.",
    "### Problem: How many primes are below 20?\n### Solution: We count them.\n```python\n"
    "print(len([p for p in range(2, 20) if all(p % d for d in range(2, p))]))\n```\n```output\n8\n```\n$\\boxed{8}$",
] * 4
PROMPTS = [
    "### Problem: What is 7 times 6?\n### Solution: ",
    "### Problem: Find the sum of all integers x with x^2 < 10.\n### Solution: ",
    "### Problem: A train travels 60 miles in 1.5 hours. How fast is it?\n### Solution: Speed is",
    "print(",
]
BACKENDS = ["hf", pytest.param("vllm", marks=pytest.mark.vllm)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_demo_model(
        tmp_path_factory.mktemp("tiny") / "model", TEXTS, vocab_size=300, hidden_size=64, num_heads=2
    )


def open_generator(kind: str, path: Path, **options) -> Generator:
    if kind == "hf":
        return load_generator(path, backend="hf", **options)
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_MISSING)
    return open_vllm_in_process(path, **options)


@pytest.fixture(scope="module", params=BACKENDS)
def generator(request: pytest.FixtureRequest, model_dir: Path) -> Generator:
    return open_generator(request.param, model_dir)


def ascii_stop(text: str) -> str | None:
    """A 3-character printable-ASCII piece from the second half of `text`, to use as a stop string."""
    for start in range(len(text) // 2, len(text) - 2):
        piece = text[start : start + 3]
        if all(32 <= ord(c) < 127 for c in piece) and piece.strip():
            return piece
    return None


# --- the same behaviour from both backends -------------------------------------------------------------------------


def test_is_a_generator_and_returns_one_completion_per_prompt(generator: Generator) -> None:
    assert isinstance(generator, Generator)
    out = generator.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=4))
    assert len(out) == len(PROMPTS) and all(isinstance(c, Completion) for c in out)
    assert generator.generate([], SamplingParams()) == []


def test_stop_string_ends_generation_and_is_kept_at_the_end(generator: Generator) -> None:
    base = SamplingParams(temperature=1.0, max_new_tokens=48, seed=11)
    free = generator.generate(PROMPTS, base)
    checked = 0
    for index, (prompt, completion) in enumerate(zip(PROMPTS, free, strict=True)):
        stop = ascii_stop(completion.text)
        if stop is None:
            continue
        # Prompt i of the first call used seed 11 + i; alone, it needs that seed to repeat the same tokens.
        params = replace(base, seed=11 + index, stop=("NEVER-SEEN-STOP", stop))
        [stopped] = generator.generate([prompt], params)
        expected = completion.text[: completion.text.find(stop) + len(stop)]
        assert stopped.text == expected
        assert stopped.finish_reason == "stop" and stopped.stop_reason == stop
        assert stopped.num_tokens <= completion.num_tokens
        checked += 1
    assert checked >= 2


def test_max_new_tokens_is_honoured(generator: Generator) -> None:
    out = generator.generate(PROMPTS, SamplingParams(temperature=1.0, max_new_tokens=5, seed=3))
    assert all(c.num_tokens <= 5 for c in out)
    assert all(c.num_tokens == 5 for c in out if c.finish_reason == "length")
    assert any(c.finish_reason == "length" for c in out)
    assert all(c.stop_reason is None for c in out)


def test_same_seed_same_texts_whatever_the_batch(generator: Generator) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=16, seed=5)
    first = [c.text for c in generator.generate(PROMPTS, params)]
    assert [c.text for c in generator.generate(PROMPTS, params)] == first
    # Prompt i is sampled with seed + i, so the tail of the list alone, with the seed moved on by 2, matches.
    assert [c.text for c in generator.generate(PROMPTS[2:], replace(params, seed=7))] == first[2:]
    assert [c.text for c in generator.generate(PROMPTS, replace(params, seed=6))] != first


def test_greedy_batch_equals_one_prompt_at_a_time(generator: Generator) -> None:
    params = SamplingParams(temperature=0, max_new_tokens=24)
    batch = [c.text for c in generator.generate(PROMPTS, params)]
    alone = [generator.generate([prompt], params)[0].text for prompt in PROMPTS]
    assert batch == alone
    assert [c.text for c in generator.generate(PROMPTS, replace(params, seed=99))] == batch


@pytest.mark.parametrize("kind", BACKENDS)
def test_eos_ends_generation_with_stop_and_no_stop_string(kind: str, model_dir: Path, tmp_path: Path) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=24, seed=21)
    [free] = open_generator(kind, model_dir).generate(PROMPTS[:1], params)
    tokens = free.extra["token_ids"]
    position = next(i for i in range(2, len(tokens)) if tokens[i] not in tokens[:i])
    # A copy of the model whose generation_config names that token as a second EOS (as Llama 3 lists several).
    eos_dir = tmp_path / "eos-model"
    shutil.copytree(model_dir, eos_dir)
    generation = json.loads((eos_dir / "generation_config.json").read_text())
    generation["eos_token_id"] = [generation["eos_token_id"], tokens[position]]
    (eos_dir / "generation_config.json").write_text(json.dumps(generation))
    [ended] = open_generator(kind, eos_dir).generate(PROMPTS[:1], params)
    assert ended.finish_reason == "stop" and ended.stop_reason is None
    assert ended.num_tokens == position + 1 and ended.extra["token_ids"] == tokens[: position + 1]
    assert free.text.startswith(ended.text)


def test_count_tokens_matches_prompt_tokens(generator: Generator) -> None:
    out = generator.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=2))
    assert [c.prompt_tokens for c in out] == [generator.count_tokens(p) for p in PROMPTS]
    assert generator.count_tokens("") >= 0 and generator.count_tokens("7 * 6 = 42") > 5  # digits are single tokens


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_prompt_longer_than_the_context_is_refused_and_the_window_caps_generation(
    kind: str, model_dir: Path
) -> None:
    generator = open_generator(kind, model_dir, max_model_len=16)
    with pytest.raises(InputError, match="longer than the 16-token context"):
        generator.generate(["1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17"], SamplingParams(max_new_tokens=2))
    [full] = generator.generate(["1 2 3"], SamplingParams(temperature=1.0, max_new_tokens=50, seed=0))
    assert full.finish_reason == "length" or full.stop_reason is None
    assert full.prompt_tokens + full.num_tokens <= 16


def test_48_prompts_in_one_call_match_the_same_prompts_alone(generator: Generator) -> None:
    prompts = [f"### Problem: What is {a} times {a + 3}?\n### Solution: " for a in range(48)]
    params = SamplingParams(temperature=1.0, max_new_tokens=24, stop=("```output\n",), seed=100)
    out = generator.generate(prompts, params)
    assert len(out) == 48 and all(
        c.prompt_tokens == generator.count_tokens(p) for c, p in zip(out, prompts, strict=True)
    )
    for index in (0, 17, 47):  # prompt i was sampled with seed 100 + i
        [alone] = generator.generate([prompts[index]], replace(params, seed=100 + index))
        assert alone.text == out[index].text and alone.extra["token_ids"] == out[index].extra["token_ids"]


# --- what is particular to transformers ----------------------------------------------------------------------------


def test_hf_int8_generator_holds_int8_weights(model_dir: Path) -> None:
    import torch

    bnb = pytest.importorskip("bitsandbytes")
    generator = load_generator(model_dir, backend="hf", quantization="int8")
    assert isinstance(generator, HFGenerator)
    linears = [m for m in generator.model.model.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, bnb.nn.Linear8bitLt) for m in linears)
    assert all(m.weight.dtype == torch.int8 for m in linears)
    out = generator.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=6))
    assert all(c.num_tokens <= 6 and c.finish_reason in ("stop", "length") for c in out)


def test_hf_batch_size_does_not_change_sampled_texts(model_dir: Path) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=12, seed=8)
    whole = load_generator(model_dir, backend="hf").generate(PROMPTS * 2, params)
    chunked = load_generator(model_dir, backend="hf", batch_size=3).generate(PROMPTS * 2, params)
    assert [c.text for c in chunked] == [c.text for c in whole]
