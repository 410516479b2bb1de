"""The per-candidate evidence selectors read: token log-probabilities and top-k entropies from both backends
(`HFGenerator` scores, vLLM `logprobs`), checked against the model's own distribution computed by a forward pass over
prompt + completion; and what `advance` records on a candidate (mean entropy and log-probability, code runs and
errors, the last code, whether the answer was printed by it, restarts, length).

The vLLM case is marked `vllm` and skips where vLLM is not installed (`make test-vllm` runs it, on its CPU build).
"""

import importlib.util
from pathlib import Path

import pytest

from numina_kit.models.base import Completion, SamplingParams
from numina_kit.models.demo import save_demo_model
from numina_kit.models.load import load_generator
from numina_kit.protocols import make_protocol
from numina_kit.protocols.tora import CODE_END, CODE_START, OUTPUT_START
from numina_kit.sandbox.pool import ExecResult
from numina_kit.sctir.candidates import Candidate, CandidateStatus, advance, read_turn
from numina_kit.sctir.config import SCTIRConfig
from numina_kit.testing import VLLM_MISSING, open_vllm_in_process


TEXTS = [
    "### Problem: What is 2+3?\n### Solution: ```python\nprint(2+3)\n```\n```output\n5\n```\nThe answer is $\\boxed{5}$.",
    "### Problem: How many primes are below 20?\n### Solution: We count them.\n```python\n"
    "print(len([p for p in range(2, 20) if all(p % d for d in range(2, p))]))\n```\n```output\n8\n```\n$\\boxed{8}$",
] * 4
PROMPTS = [
    "### Problem: What is 7 times 6?\n### Solution: ",
    "### Problem: Count the primes below 30.\n### Solution: ",
]
TOP_K = 5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # head_dim 32, which vLLM's CPU attention takes
    return save_demo_model(
        tmp_path_factory.mktemp("tiny") / "model", TEXTS, vocab_size=300, hidden_size=64, num_heads=2
    )


def reference_steps(model_dir: Path, prompt: str, token_ids: list[int]) -> tuple[list[float], list[float]]:
    """Each generated token's log-probability and top-k entropy, from one transformers forward pass."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt_ids = tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([prompt_ids + token_ids])).logits[0].float()
    logprobs = logits.log_softmax(dim=-1)[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(token_ids)]
    sampled = logprobs.gather(-1, torch.tensor(token_ids).unsqueeze(-1)).squeeze(-1).tolist()
    top = logprobs.topk(TOP_K, dim=-1).values
    return sampled, (-(top.exp() * top).sum(dim=-1)).tolist()


@pytest.mark.parametrize("backend", ["hf", pytest.param("vllm", marks=[pytest.mark.vllm, pytest.mark.slow])])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_both_backends_report_each_tokens_logprob_and_entropy_of_the_raw_distribution(
    model_dir: Path, backend: str, temperature: float
) -> None:
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_MISSING)
    generator = load_generator(model_dir, backend="hf") if backend == "hf" else open_vllm_in_process(model_dir)
    params = SamplingParams(temperature=temperature, max_new_tokens=24, seed=3, logprobs=TOP_K)
    completions = generator.generate(PROMPTS, params)
    for prompt, completion in zip(PROMPTS, completions, strict=True):
        tokens = completion.extra["token_ids"]
        assert len(completion.extra["logprobs"]) == len(completion.extra["entropies"]) == completion.num_tokens > 0
        sampled, entropies = reference_steps(model_dir, prompt, tokens)
        # raw (before temperature) as vLLM's default logprobs mode, whatever the sampling temperature
        assert completion.extra["logprobs"] == pytest.approx(sampled, abs=2e-3)
        assert completion.extra["entropies"] == pytest.approx(entropies, abs=2e-3)
    without = generator.generate(PROMPTS[:1], SamplingParams(temperature=0.0, max_new_tokens=4))[0]
    assert "logprobs" not in without.extra and "entropies" not in without.extra


def test_greedy_tokens_are_the_models_most_likely(model_dir: Path) -> None:
    """With temperature 0 the recorded log-probability of each token is its step's maximum (HFGenerator runs the
    recorder without a sampler)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    generator = load_generator(model_dir, backend="hf")
    completion = generator.generate(PROMPTS[:1], SamplingParams(temperature=0.0, max_new_tokens=12, logprobs=1))[0]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt_ids = tokenizer(PROMPTS[0])["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([prompt_ids + completion.extra["token_ids"]])).logits[0]
    best = logits.log_softmax(dim=-1).max(dim=-1).values[len(prompt_ids) - 1 : -1].tolist()
    assert completion.extra["logprobs"] == pytest.approx(best[: completion.num_tokens], abs=1e-4)


# ------------------------------------------------------------------------------------------ what advance records


def step(candidate: Candidate, text: str, results: list[ExecResult] | None, round_: int, **extra) -> None:
    config = SCTIRConfig(num_candidates=1, max_rounds=4, restart_on_fail=True)
    protocol = make_protocol(config.protocol, None)
    completion = Completion(text, "stop", num_tokens=len(text), extra=extra)
    turn = read_turn(protocol, candidate, completion, round_)
    advance(candidate, completion, turn, results, config=config, protocol=protocol, round_=round_, count_tokens=len)


def code(source: str) -> str:
    return f"Let me compute.\n{CODE_START}{source}\n{CODE_END}{OUTPUT_START}"


def test_advance_records_evidence_across_code_runs_errors_and_a_restart() -> None:
    candidate = Candidate(index=0)
    texts = ["I just know: $\\boxed{7}$.", code("print(1/0)"), code("print(6*7)"), "So the answer is $\\boxed{42}$."]
    step(candidate, texts[0], None, 0, logprobs=[-1.0, -3.0], entropies=[0.5, 1.5])
    assert candidate.restarts == 1 and candidate.status is CandidateStatus.RUNNING  # no code: started over
    step(candidate, texts[1], [ExecResult("error", "ZeroDivisionError", 0.0)], 1, logprobs=[-2.0])
    step(candidate, texts[2], [ExecResult("ok", "42", 0.0)], 2, logprobs=[-0.0], entropies=[0.0])
    step(candidate, texts[3], None, 3)
    assert candidate.status is CandidateStatus.ANSWERED and candidate.answer == 42
    assert (candidate.code_runs, candidate.code_errors, candidate.restarts) == (2, 1, 1)
    assert candidate.last_code.strip() == "print(6*7)" and candidate.last_output == "42" and candidate.from_code
    assert candidate.mean_logprob == pytest.approx(-6.0 / 4)
    assert candidate.mean_entropy == pytest.approx(2.0 / 3)
    # length: the attempt as it stands (outputs included); generated: every sampled token, the restarted one too
    assert candidate.tokens == len(candidate.text) and not candidate.text.startswith("I just know")
    assert candidate.generated_tokens == sum(map(len, texts))


def test_an_answer_not_in_the_last_output_is_not_from_code_and_no_logprobs_means_no_evidence() -> None:
    candidate = Candidate(index=0)
    step(candidate, code("print(6*7)"), [ExecResult("ok", "42", 0.0)], 0)
    step(candidate, "So the answer is $\\boxed{24}$.", None, 1)
    assert candidate.answer == 24 and not candidate.from_code
    assert candidate.mean_logprob is None and candidate.mean_entropy is None
