"""Tests for numina_kit.data.influence (LESS) on a tiny LoRA model built in-process.

Covers: per-sample gradients from `torch.func` equal one backward pass per sample (padding changes nothing) and
cover the LoRA parameters only; Adam preconditioning follows the formula; the Rademacher projector is seeded,
+-1/sqrt(k), and keeps inner products on average; checkpoints saved by TRL's trainer with their Adam state are found
with their learning rates and loaded; influence ranks a sample like the targets above unlike ones; text values are
per-text means; the top-B choice; the hypergeometric tail against a direct sum.
"""

import math

import pytest


torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from numina_kit.data.influence import (  # noqa: E402
    RademacherProjector,
    adam_precondition,
    find_checkpoints,
    hypergeometric_tail,
    influence_scores,
    lora_parameters,
    per_sample_gradients,
    select_top,
    text_values,
    tokenize_examples,
)
from numina_kit.errors import InputError  # noqa: E402


ROWS = [
    {"input": "### Problem: add 12 and 30\n### Solution: ", "output": "print(12 + 30)"},
    {"input": "### Problem: add 7 and 5\n### Solution: ", "output": "print(7 + 5)"},
    {"input": "### Problem: area of 3 by 4\n### Solution: ", "output": "print(3 * 4)"},
    {"input": "### Problem: years from 1200 to 1300\n### Solution: ", "output": "print(1300 - 1200)"},
]


@pytest.fixture(scope="module")
def lora(one_torch_thread):
    from peft import LoraConfig, get_peft_model

    from numina_kit.models.demo import build_model, train_tokenizer

    tokenizer = train_tokenizer([r["input"] + r["output"] for r in ROWS] * 4, vocab_size=300)
    model = build_model(tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=0)
    model.set_attn_implementation("eager")  # vmap has no batching rule for CPU SDPA (it falls back, slowly)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, init_lora_weights=False
    )
    return get_peft_model(model, config), tokenizer


def test_tokenized_examples_mask_the_prompt(lora):
    _, tokenizer = lora
    example = tokenize_examples(ROWS[:1], tokenizer)[0]
    prompt = tokenizer(ROWS[0]["input"])["input_ids"]
    assert example.labels[: len(prompt) - 1] == [-100] * (len(prompt) - 1)
    assert example.labels[-1] == tokenizer.eos_token_id and len(example.labels) == len(example.input_ids)
    with pytest.raises(InputError, match="no output tokens"):
        tokenize_examples(ROWS[:1], tokenizer, max_length=3)


def test_per_sample_gradients_match_one_backward_each(lora):
    model, tokenizer = lora
    examples = tokenize_examples(ROWS, tokenizer)
    batched = per_sample_gradients(model, examples, chunk=3)  # a chunk of mixed lengths, padded
    params = lora_parameters(model)
    assert batched.shape == (len(ROWS), sum(p.numel() for p in params.values()))
    assert all("lora_" in name for name in params)
    for i, example in enumerate(examples):
        model.zero_grad()
        loss = model(input_ids=torch.tensor([example.input_ids]), labels=torch.tensor([example.labels])).loss
        loss.backward()
        expected = torch.cat([p.grad.reshape(-1) for p in params.values()])
        torch.testing.assert_close(batched[i], expected, rtol=1e-4, atol=1e-6)


def test_adam_precondition_formula():
    g = torch.tensor([[1.0, -2.0]])
    m, v = torch.tensor([0.5, 0.0]), torch.tensor([0.25, 1.0])
    expected = (0.9 * m + 0.1 * g) / ((0.999 * v + 0.001 * g**2).sqrt() + 1e-8)
    torch.testing.assert_close(adam_precondition(g, m, v), expected)


def test_projector_is_seeded_rademacher_and_keeps_inner_products():
    projector = RademacherProjector(300, 2048, seed=5, block_rows=64)
    identity = projector(torch.eye(300))
    assert set(torch.unique((identity * math.sqrt(2048)).round()).tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(identity.abs(), torch.full_like(identity, 1 / math.sqrt(2048)))
    torch.testing.assert_close(identity, RademacherProjector(300, 2048, seed=5, block_rows=64)(torch.eye(300)))
    assert not torch.equal(identity, RademacherProjector(300, 2048, seed=6)(torch.eye(300)))
    x, y = torch.randn(2, 300, generator=torch.Generator().manual_seed(0))
    assert abs(float(projector(x) @ projector(y)) - float(x @ y)) < 0.15 * float(x.norm() * y.norm())
    with pytest.raises(InputError):
        projector(torch.ones(3, 10))


def test_checkpoints_with_adam_state_and_influence(lora, tmp_path):
    """TRL's trainer warms the LoRA model up, saving two checkpoints; an "add" candidate is closer to "add" targets
    than a "years" candidate is."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = lora
    data = Dataset.from_list([{"prompt": r["input"], "completion": r["output"]} for r in ROWS * 4])
    args = SFTConfig(
        output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=1e-2,
        save_strategy="epoch", logging_steps=1, report_to="none", use_cpu=True, max_length=64, lr_scheduler_type="linear",
        gradient_checkpointing=False,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    checkpoints = find_checkpoints(tmp_path)
    assert [c.path.name for c in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    assert checkpoints[0].learning_rate > checkpoints[1].learning_rate > 0  # linear decay, mean over each epoch
    targets = tokenize_examples(
        [{"input": "### Problem: add 40 and 2\n### Solution: ", "output": "print(40 + 2)"}], tokenizer
    )
    candidates = tokenize_examples([ROWS[1], ROWS[3]], tokenizer)
    scores = influence_scores(model, trainer.optimizer, checkpoints, candidates, targets, projection_dim=512)
    assert scores.shape == (2,) and scores[0] > scores[1]


def test_find_checkpoints_needs_optimizer_state(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(InputError, match="optimizer"):
        find_checkpoints(tmp_path)
    with pytest.raises(InputError, match="no checkpoint"):
        find_checkpoints(tmp_path / "none")


def test_text_values_and_selection():
    values = text_values([1.0, 3.0, 5.0, -1.0], ["a", "a", "b", "c"])
    assert values == {"a": 2.0, "b": 5.0, "c": -1.0}
    assert select_top(values, 2) == ["b", "a"] and select_top({"x": 1.0, "w": 1.0}, 1) == ["w"]


@pytest.mark.parametrize(
    ("population", "successes", "draws", "observed"), [(20, 5, 6, 3), (50, 10, 10, 0), (30, 3, 5, 3)]
)
def test_hypergeometric_tail(population, successes, draws, observed):
    direct = sum(
        math.comb(successes, k) * math.comb(population - successes, draws - k) / math.comb(population, draws)
        for k in range(observed, min(successes, draws) + 1)
    )
    assert hypergeometric_tail(population, successes, draws, observed) == pytest.approx(direct)
    assert hypergeometric_tail(population, successes, draws, 0) == pytest.approx(1.0)
