"""The trained demo model (`make demo` writes models/tiny-tir) solved with SC-TIR through both backends: the same
problems, seed and settings as `make demo` (N=8 candidates x 4 rounds of 256 tokens, AIMO-1 rule) reach the same maj@8
through vLLM's engine as through transformers. Marked `vllm` and `slow`; skips, saying why, when the demo model has
not been trained or vLLM is not installed. All 50 problems: benchmarks/generation.py --part backends records both.
"""

import importlib.util
from pathlib import Path

import pytest

from numina_kit.data.problems import load_problems
from numina_kit.eval.evaluate import evaluate
from numina_kit.models.load import load_generator
from numina_kit.sctir.loop import SCTIRConfig
from numina_kit.testing import VLLM_MISSING, open_vllm_in_process


REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "models" / "tiny-tir"
DEMO_PROBLEMS = REPO / "tests" / "fixtures" / "demo_problems.jsonl"
PROBLEMS = 12  # of the 50: both backends x 12 problems x 8 candidates keep the test to a few minutes
SEED = 42  # `make demo`'s


pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_demo_model_reaches_the_same_maj8_through_vllm_and_transformers() -> None:
    if not (DEMO_MODEL / "config.json").is_file():
        pytest.skip(f"{DEMO_MODEL} not found: `make demo` trains it (8-10 minutes on 2 cores)")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_MISSING)
    problems = load_problems(DEMO_PROBLEMS, limit=PROBLEMS)
    config = SCTIRConfig(num_candidates=8, max_rounds=4, max_new_tokens=256, max_context_tokens=1024)
    scores = {}
    for backend, generator in (
        ("hf", load_generator(DEMO_MODEL, backend="hf")),
        ("vllm", open_vllm_in_process(DEMO_MODEL)),
    ):
        evaluation = evaluate(problems, generator, config, seeds=(SEED,))
        scores[backend] = evaluation.maj(SEED)
    assert scores["vllm"] == scores["hf"], scores
    assert scores["hf"] >= 0.5, scores  # the trained model solves most of them with its tool
