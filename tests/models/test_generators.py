"""numina_kit.models.base: one set of behavioural tests run against both backends - `HFGenerator` (transformers, CPU)
and `VLLMGenerator` over the vLLM stand-in in tests/stubs/vllm - on a tiny random Llama built in a temporary folder:
stop strings kept at the end of the text, max_new_tokens, EOS, seeded sampling independent of the batch, greedy
batching, token counts. Then what is particular to each: the T4 engine arguments handed to vLLM, int8 weights in
HFGenerator, and the stand-in's strictness about argument names.
"""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from numina_kit.errors import InputError
from numina_kit.models import load as loading
from numina_kit.models.base import Completion, Generator, HFGenerator, SamplingParams, VLLMGenerator, match_stop
from numina_kit.models.demo import save_demo_model
from numina_kit.models.load import load_generator, vllm_engine_args


STUBS = Path(__file__).parents[1] / "stubs"
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


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_demo_model(tmp_path_factory.mktemp("tiny") / "model", TEXTS, vocab_size=300, hidden_size=64)


@pytest.fixture(scope="module")
def standin():
    """The vLLM stand-in importable as `vllm`, with two T4s (compute capability 7.5) reported by the GPU probe."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(STUBS))
        for name in [name for name in sys.modules if name == "vllm" or name.startswith("vllm.")]:
            patch.delitem(sys.modules, name)
        patch.setattr(loading, "cuda_capabilities", lambda: [(7, 5), (7, 5)])
        patch.setenv("VLLM_USE_FLASHINFER_SAMPLER", "0")
        import vllm

        assert vllm.__version__.endswith("+standin")
        yield vllm
        for name in [name for name in sys.modules if name == "vllm" or name.startswith("vllm.")]:
            del sys.modules[name]


def open_generator(kind: str, path: Path, request: pytest.FixtureRequest) -> Generator:
    if kind == "vllm":
        request.getfixturevalue("standin")
    return load_generator(path, backend=kind)


@pytest.fixture(scope="module", params=["hf", "vllm"])
def generator(request: pytest.FixtureRequest, model_dir: Path) -> Generator:
    return open_generator(request.param, model_dir, request)


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


@pytest.mark.parametrize("kind", ["hf", "vllm"])
def test_eos_ends_generation_with_stop_and_no_stop_string(
    kind: str, model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    params = SamplingParams(temperature=1.0, max_new_tokens=24, seed=21)
    [free] = open_generator(kind, model_dir, request).generate(PROMPTS[:1], params)
    tokens = free.extra["token_ids"]
    position = next(i for i in range(2, len(tokens)) if tokens[i] not in tokens[:i])
    # A copy of the model whose generation_config names that token as a second EOS (as Llama 3 lists several).
    eos_dir = tmp_path / "eos-model"
    shutil.copytree(model_dir, eos_dir)
    generation = json.loads((eos_dir / "generation_config.json").read_text())
    generation["eos_token_id"] = [generation["eos_token_id"], tokens[position]]
    (eos_dir / "generation_config.json").write_text(json.dumps(generation))
    [ended] = open_generator(kind, eos_dir, request).generate(PROMPTS[:1], params)
    assert ended.finish_reason == "stop" and ended.stop_reason is None
    assert ended.num_tokens == position + 1 and ended.extra["token_ids"] == tokens[: position + 1]
    assert free.text.startswith(ended.text)


def test_count_tokens_matches_prompt_tokens(generator: Generator) -> None:
    out = generator.generate(PROMPTS, SamplingParams(temperature=0, max_new_tokens=2))
    assert [c.prompt_tokens for c in out] == [generator.count_tokens(p) for p in PROMPTS]
    assert generator.count_tokens("") >= 0 and generator.count_tokens("7 * 6 = 42") > 5  # digits are single tokens


# --- pieces ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "previous", "stops", "expected"),
    [
        ("abc```output\nxy", 10, ("```output\n",), ("```output\n", 13)),
        ("abc```output\nxy", 14, ("```output\n",), None),  # completed before the new characters: already handled
        ("a STOP b END", 5, ("END", "STOP"), ("STOP", 6)),  # the one that completes first wins
        ("a END", 0, ("END", "END"), ("END", 5)),
        ("no stop here", 0, ("x!",), None),
    ],
)
def test_match_stop(text: str, previous: int, stops: tuple, expected: tuple | None) -> None:
    assert match_stop(text, previous, stops) == expected


def test_sampling_params_reject_bad_values() -> None:
    for bad in ({"temperature": -1}, {"top_p": 0}, {"max_new_tokens": 0}, {"stop": ("",)}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


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


def test_hf_refuses_a_prompt_longer_than_the_context(model_dir: Path) -> None:
    generator = load_generator(model_dir, backend="hf", max_model_len=8)
    with pytest.raises(ValueError, match="longer than the 8-token context"):
        generator.generate(["1 2 3 4 5 6 7 8 9 10"], SamplingParams(max_new_tokens=2))
    [full] = generator.generate(["1 2 3"], SamplingParams(temperature=0, max_new_tokens=50))
    assert full.finish_reason in ("stop", "length") and full.prompt_tokens + full.num_tokens <= 8


# --- vLLM: T4 settings, passed through the stand-in -----------------------------------------------------------------


def test_vllm_generator_starts_the_engine_with_t4_settings(standin, model_dir: Path) -> None:
    generator = load_generator(model_dir, backend="vllm")
    assert isinstance(generator, VLLMGenerator)
    assert generator.engine_args == {
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        "dtype": "float16",
        "tensor_parallel_size": 2,
        "quantization": None,
        "max_model_len": 2048,
        "enable_prefix_caching": True,
        "attention_backend": "TRITON_ATTN",
        "disable_custom_all_reduce": True,
    }
    engine = generator.llm.engine_args  # what the stand-in's EngineArgs received
    assert (engine.dtype, engine.tensor_parallel_size, engine.attention_backend) == ("float16", 2, "TRITON_ATTN")
    assert engine.enable_prefix_caching is True and engine.max_model_len == 2048


@pytest.mark.parametrize(
    ("gpus", "dtype", "backend", "tensor_parallel"),
    [
        ([(7, 5)], "float16", "TRITON_ATTN", 1),
        ([(7, 5), (7, 5)], "float16", "TRITON_ATTN", 2),
        ([(8, 0)], "auto", None, 1),
        ([(9, 0)] * 3, "auto", None, 2),  # 4 heads do not split over 3 GPUs: use 2
        ([(9, 0)] * 4, "auto", None, 4),
    ],
)
def test_vllm_engine_args_follow_the_gpus(model_dir: Path, gpus, dtype, backend, tensor_parallel) -> None:
    args = vllm_engine_args(model_dir, gpus=gpus)
    assert args["dtype"] == dtype and args["tensor_parallel_size"] == tensor_parallel
    assert args.get("attention_backend") == backend


def test_vllm_bfloat16_refused_on_t4_allowed_on_ampere(standin, model_dir: Path) -> None:
    with pytest.raises(InputError) as error:
        load_generator(model_dir, backend="vllm", dtype="bfloat16")
    assert "bfloat16" in str(error.value) and "float16" in str(error.value) and "\n" not in str(error.value)
    assert vllm_engine_args(model_dir, gpus=[(8, 0)], dtype="bfloat16")["dtype"] == "bfloat16"


def with_config(model_dir: Path, target: Path, **changes) -> Path:
    shutil.copytree(model_dir, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


GPTQ8 = {"quant_method": "gptq", "bits": 8, "group_size": 128, "desc_act": False, "sym": True}


def test_vllm_quantization_is_read_from_the_checkpoint_not_its_name(standin, model_dir: Path, tmp_path: Path) -> None:
    gptq = with_config(model_dir, tmp_path / "numina-7b-awq", quantization_config=GPTQ8)  # misleading name
    plain = with_config(model_dir, tmp_path / "numina-7b-gptq-8bit")
    assert vllm_engine_args(gptq, gpus=[(7, 5)])["quantization"] == "gptq"
    assert vllm_engine_args(plain, gpus=[(7, 5)])["quantization"] is None
    assert vllm_engine_args(gptq, gpus=[(7, 5)], quantization="gptq_marlin")["quantization"] == "gptq_marlin"
    assert vllm_engine_args(gptq, gpus=[(7, 5)], quantization="int8")["quantization"] == "gptq"
    generator = load_generator(gptq, backend="vllm")  # the stand-in checks it against config.json as vLLM does
    assert generator.llm.llm_engine.quantization == "gptq"


@pytest.mark.parametrize(
    ("quantization_config", "requested", "message"),
    [
        (GPTQ8, "awq", "does not match"),
        (GPTQ8, "none", "cannot serve them unquantized"),
        ({**GPTQ8, "bits": 4}, "int8", "4-bit gptq"),
        (None, "int8", "cannot make 8-bit weights while loading"),
        (None, "gptq", "has no quantization_config"),
    ],
)
def test_vllm_quantization_mismatches_are_input_errors(
    model_dir: Path, tmp_path: Path, quantization_config, requested: str, message: str
) -> None:
    changes = {"quantization_config": quantization_config} if quantization_config else {}
    path = with_config(model_dir, tmp_path / "model", **changes)
    with pytest.raises(InputError, match=message):
        vllm_engine_args(path, gpus=[(7, 5)], quantization=requested)


def test_vllm_max_model_len_comes_from_the_config_capped(model_dir: Path, tmp_path: Path) -> None:
    long = with_config(model_dir, tmp_path / "long", max_position_embeddings=16384)
    short = with_config(model_dir, tmp_path / "short", max_position_embeddings=1024)
    assert vllm_engine_args(long, gpus=[(7, 5)])["max_model_len"] == 4096
    assert vllm_engine_args(long, gpus=[(7, 5)], max_model_len_cap=8192)["max_model_len"] == 8192
    assert vllm_engine_args(short, gpus=[(7, 5)])["max_model_len"] == 1024


def test_vllm_before_0_18_gets_the_attention_backend_from_the_environment(
    standin, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from numina_kit.models import base as generation

    monkeypatch.setattr(generation, "_engine_arg_names", lambda: {"model", "dtype"})
    monkeypatch.setenv("VLLM_ATTENTION_BACKEND", "unset")
    monkeypatch.delenv("VLLM_ATTENTION_BACKEND")
    generator = VLLMGenerator(model_dir)
    assert "attention_backend" not in generator.engine_args
    import os

    assert os.environ["VLLM_ATTENTION_BACKEND"] == "TRITON_ATTN"


def test_standin_rejects_renamed_arguments_like_vllm(standin, model_dir: Path) -> None:
    with pytest.raises(TypeError):
        standin.SamplingParams(max_new_tokens=5)
    with pytest.raises(TypeError):
        standin.LLM(model=str(model_dir), attn_backend="TRITON_ATTN")
    with pytest.raises(ValueError):
        standin.LLM(model=str(model_dir), attention_backend="FLASH_ATTENTION_3000")
    with pytest.raises(ValueError, match="divisible"):
        standin.LLM(model=str(model_dir), tensor_parallel_size=3)
