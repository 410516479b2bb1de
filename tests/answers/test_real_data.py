"""Measurements of numina_kit.answers on the shared data, as tests (they skip when ../shared/data is absent):

- extraction agrees with ToRA's recorded `model_pred` on >= 99% of tir_traces_sample.jsonl rows that have one, and
  every disagreement is a row that states no answer at all (ToRA then falls back to the last program output);
- every MATH-500 answer is equivalent to itself rewritten in equivalent forms (`equivalent_forms`), and different
  answers are not equivalent;
- `parse_integer` reads every integer answer of the evaluation sets as the README's `answer_int`.

`answers_agree` and `equivalent_forms` live in numina_kit.testing, so that benchmarks/answers.py records
the same figures with timings without importing this module.
"""

from pathlib import Path

import pytest

from numina_kit.answers import extract_answer, is_equivalent, parse_integer, to_competition_answer
from numina_kit.data.jsonl import read_jsonl
from numina_kit.testing import answers_agree, equivalent_forms


INTEGER_SETS = ["aime_2022", "aime_2023", "amc_2022", "gsm8k_test", "aimo1_train", "aimo3_reference", "math500"]


def test_extraction_agrees_with_recorded_model_pred(shared_data: Path) -> None:
    rows = [row for row in read_jsonl(shared_data / "tir_traces_sample.jsonl") if row.get("model_pred") is not None]
    disagreements = [row for row in rows if answers_agree(row["model_pred"], extract_answer(row["solution"])) is None]
    assert len(rows) > 2000
    assert 1 - len(disagreements) / len(rows) >= 0.99
    for row in disagreements:  # only texts that state no answer: ToRA used the last program output instead
        assert extract_answer(row["solution"]) is None, row["id"]
        assert "\\boxed" not in row["solution"] and "answer is" not in row["solution"].lower(), row["id"]


def test_corpus_traces_box_their_reference_answer(shared_data: Path) -> None:
    rows = [row for row in read_jsonl(shared_data / "tir_traces_sample.jsonl") if row["kind"] == "tora-corpus"]
    disagreeing = {row["id"] for row in rows if not answers_agree(row["answer"], extract_answer(row["solution"]))}
    assert len(rows) == 20
    # the one trace that boxes both roots `-2x - 1, 2x + 1` where MATH's reference keeps only `-2x-1`
    assert disagreeing == {"math-train-3460-0"}


def test_math500_answers_are_equivalent_to_their_rewritten_forms(shared_data: Path) -> None:
    failures = []
    num_forms = 0
    for row in read_jsonl(shared_data / "math500.jsonl"):
        for name, form in equivalent_forms(row["answer"]).items():
            num_forms += 1
            if not is_equivalent(row["answer"], form, timeout=10.0):
                failures.append((row["id"], name, row["answer"], form))
    assert num_forms > 1000
    assert failures == []


def test_math500_different_answers_are_not_equivalent(shared_data: Path) -> None:
    answers = [row["answer"] for row in read_jsonl(shared_data / "math500.jsonl")]
    pairs = [(a, b) for a, b in zip(answers[::8], answers[1::8], strict=False) if a != b]
    judged_equal = [(a, b) for a, b in pairs if is_equivalent(a, b, timeout=10.0)]
    assert len(pairs) > 50
    assert judged_equal == []


@pytest.mark.parametrize("name", INTEGER_SETS)
def test_parse_integer_reads_every_integer_answer(shared_data: Path, name: str) -> None:
    for row in read_jsonl(shared_data / f"{name}.jsonl"):
        value = parse_integer(row["answer"])
        if row["answer_int"] is not None:
            assert value == row["answer_int"], row["id"]
        elif value is not None:  # a form the README's plain reading does not take (`90^\circ`, `10,\!080`, `x=5`)
            assert is_equivalent(row["answer"], str(value), timeout=10.0), row["id"]


def test_competition_rules_on_competition_answers(shared_data: Path) -> None:
    for row in read_jsonl(shared_data / "aimo3_reference.jsonl"):
        assert to_competition_answer(row["answer"], "aimo3") == row["answer_int"]
    for name in ["aime_2022", "aime_2023", "aimo1_train"]:
        for row in read_jsonl(shared_data / f"{name}.jsonl"):
            assert to_competition_answer(row["answer"], "aimo2") == row["answer_int"]
            assert to_competition_answer(row["answer"], "aimo1") == row["answer_int"]
    for row in read_jsonl(shared_data / "amc_2022.jsonl"):
        expected = row["answer_int"] % 1000 if row["answer_int"] >= 0 else None
        assert to_competition_answer(row["answer"], "aimo1") == expected, row["id"]
