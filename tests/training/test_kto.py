"""Tests for training/kto_sample.py and training/kto.py: sampling labels each candidate by its answer and writes one
line per problem that a rerun resumes from; sampling and training agree on lengths; the samples reach KTOTrainer
shuffled with the recipe's seed, so its KL pairs cross problems; malformed sample files are one-line errors."""

import copy
import json
import sys
from pathlib import Path

import pytest


pytest.importorskip("trl")  # the training extra; absent from the vLLM test environment
REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
sys.path.insert(0, str(TRAINING))

import kto  # noqa: E402
import kto_sample  # noqa: E402

from numina_kit.errors import InputError  # noqa: E402
from numina_kit.protocols.tora import STOP, render_prompt  # noqa: E402
from numina_kit.testing import ScriptedGenerator  # noqa: E402


def code(expression: str) -> str:
    return f"Let me compute.\n```python\nprint({expression})\n```\n{STOP}"


def boxed(answer: str) -> str:
    return f"So the answer is $\\boxed{{{answer}}}$."


def sampling(**overrides) -> kto_sample.SamplingArguments:
    return kto_sample.SamplingArguments(**{"num_samples": 3, "sampling_max_rounds": 2, **overrides})


def test_sampling_labels_by_answer_and_resumes(tmp_path):
    problems = [{"id": "half", "problem": "What is 1/2?", "answer": "\\frac{1}{2}"},
                {"id": "two", "problem": "What is 1+1?", "answer": "2"}]  # fmt: skip
    plan = [
        [code("1/2"), code("1/3"), "I give up."],  # problem "half", round 1
        [boxed("\\frac12"), boxed("\\frac13")],  # round 2: right (a fraction) and wrong
        [code("1+1"), code("1+1"), code("1+1")],  # problem "two"
        [boxed("2"), boxed("3"), "no answer"],
    ]
    path = tmp_path / "samples.jsonl"
    config = kto_sample.sampling_config(sampling(), max_length=256)
    kto_sample.sample(problems[:1], ScriptedGenerator(plan[:2]), config, path)
    assert kto_sample.pending(problems, path) == problems[1:]
    kto_sample.sample(kto_sample.pending(problems, path), ScriptedGenerator(plan[2:]), config, path)
    assert kto_sample.pending(problems, path) == []

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["half", "two"]
    assert lines[0]["prompt"] == render_prompt("What is 1/2?")
    assert [s["label"] for s in lines[0]["samples"]] == [True, False, False]  # \frac12 is right under 'general'
    assert [s["label"] for s in lines[1]["samples"]] == [True, False, False]
    assert lines[0]["samples"][2]["reason"] == "no code"

    rows = kto.read_samples(path)
    assert len(rows) == 6 and rows[0] == {
        "prompt": render_prompt("What is 1/2?"),
        "completion": lines[0]["samples"][0]["completion"],
        "label": True,
    }


def test_a_line_cut_by_a_crash_is_sampled_again(tmp_path):
    path = tmp_path / "samples.jsonl"
    done = {"id": "a", "prompt": "p", "samples": [{"completion": "c", "label": True}]}
    path.write_text(json.dumps(done) + "\n" + '{"id": "b", "prompt": "p", "sam')
    problems = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert kto.read_samples(path) == [{"prompt": "p", "completion": "c", "label": True}]  # reading changes nothing
    assert kto_sample.pending(problems, path) == problems[1:]


def test_sampling_stops_a_candidate_at_the_training_max_length():
    assert kto_sample.sampling_config(sampling(), max_length=256).max_context_tokens == 256


def test_vllm_limits_go_to_vllm_only():
    assert kto_sample.vllm_arguments(sampling(sampling_backend="hf")) == {}
    limits = kto_sample.vllm_arguments(sampling(sampling_backend="vllm", sampling_tensor_parallel_size=1))
    assert limits == {"gpu_memory_utilization": 0.9, "tensor_parallel_size": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"prompt": "p", "completion": "c"}, "true/false 'label'"),
        ({"prompt": "p", "samples": [{"completion": 3, "label": True}]}, "'prompt' and 'completion' text"),
        ({"completion": "c", "label": False}, "'prompt' and 'completion' text"),
    ],
)
def test_malformed_samples_are_input_errors(line, message, tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(InputError, match=message):
        kto.read_samples(path)


def test_missing_samples_file_says_to_sample_first(tmp_path):
    with pytest.raises(InputError, match="kto_sample.py"):
        kto.read_samples(tmp_path / "samples.jsonl")


def test_balanced_weights_give_both_classes_equal_mass():
    desirable, undesirable = kto.balanced_weights(10, 30)
    assert desirable * 10 == pytest.approx(undesirable * 30)
    assert kto.balanced_weights(30, 10) == (1.0, 3.0)
    with pytest.raises(InputError, match="both desirable and undesirable"):
        kto.balanced_weights(0, 5)


@pytest.mark.parametrize(
    ("row", "expected"),
    [({"answer": "42"}, "42"), ({"solution": "so $\\boxed{7}$"}, "7"), ({"problem": "p"}, None)],
    ids=["answer-column", "numinamath-tir-solution", "nothing"],
)
def test_reference_answer(row, expected):
    assert kto_sample.reference_answer(row) == expected


# ---------------------------------------------------------------------------------------------------------------------
# What reaches KTOTrainer
# ---------------------------------------------------------------------------------------------------------------------

PROBLEMS, SAMPLES, BATCH = 8, 4, 4


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    from numina_kit.models.demo import build_model, train_tokenizer

    texts = [f"### Problem: problem {p}\n### Solution: answer {p} try {s}" for p in range(PROBLEMS) for s in range(4)]
    tokenizer = train_tokenizer(texts, vocab_size=200)
    return tokenizer, build_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2)


def grouped_samples(path: Path) -> Path:
    """What kto_sample.py writes: one line per problem, its samples together."""
    lines = [
        {"id": str(p), "prompt": f"### Problem: problem {p}\n### Solution: ",
         "samples": [{"completion": f"answer {p} try {s}", "label": s == 0} for s in range(SAMPLES)]}
        for p in range(PROBLEMS)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def same_prompt_kl_pairs(rows: list[dict], tiny, tmp_path) -> float:
    """The share of KTOTrainer's KL pairs whose mismatched completion comes from the same prompt."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    tokenizer, model = tiny
    args = KTOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BATCH,
        use_cpu=True,
        report_to="none",
        activation_checkpointing=False,
    )
    dataset = Dataset.from_list(rows)
    trainer = KTOTrainer(model, copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer)
    owner = {}
    for row in trainer.train_dataset:
        owner[tuple(row["completion_ids"])] = tuple(row["prompt_ids"])
    pairs = [owner[tuple(row["KL_completion_ids"])] == tuple(row["prompt_ids"]) for row in trainer.train_dataset]
    return sum(pairs) / len(pairs)


def test_samples_reach_the_trainer_shuffled_by_the_seed(tiny, tmp_path):
    tokenizer = tiny[0]
    path = grouped_samples(tmp_path / "samples.jsonl")
    rows = kto.training_rows(path, tokenizer, max_length=None, seed=42)
    assert rows == kto.training_rows(path, tokenizer, max_length=None, seed=42)
    assert rows != kto.training_rows(path, tokenizer, max_length=None, seed=43)
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, kto.read_samples(path)))
    assert same_prompt_kl_pairs(kto.read_samples(path), tiny, tmp_path) == 1.0  # in file order: a batch, a problem
    assert same_prompt_kl_pairs(rows, tiny, tmp_path) < 0.4


def test_samples_longer_than_max_length_are_dropped_not_cut(tiny, tmp_path):
    tokenizer = tiny[0]
    path = tmp_path / "samples.jsonl"
    rows = [{"prompt": "### Problem: problem 1\n### Solution: ", "completion": "answer 1" + " try 2" * n, "label": True}
            for n in (1, 40)]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    lengths = [len(tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]) for row in rows]
    kept = kto.training_rows(path, tokenizer, max_length=lengths[0], seed=0)
    assert kept == rows[:1] and lengths[1] > lengths[0]
