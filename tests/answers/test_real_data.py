"""Measurements of numina_kit.answers.extract on the shared data, as tests (they skip when ../shared/data is absent):

- extraction agrees with ToRA's recorded `model_pred` on >= 99% of tir_traces_sample.jsonl rows that have one, and
  every disagreement is a row that states no answer at all (ToRA then falls back to the last program output);
- every MATH-500 answer is equivalent to itself rewritten in equivalent forms (`equivalent_forms`), and different
  answers are not equivalent;
- `parse_integer` reads every integer answer of the evaluation sets as the README's `answer_int`.

`benchmarks/answers.py` imports `equivalent_forms` and `answers_agree` to record the same figures with timings.
"""

import json
import re
from pathlib import Path

import pytest

from numina_kit.answers.extract import extract_answer, is_equivalent, parse_integer, to_competition_answer


INTEGER_SETS = ["aime_2022", "aime_2023", "amc_2022", "gsm8k_test", "aimo1_train", "aimo3_reference", "math500"]


def load_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def answers_agree(recorded: str, extracted: str | None) -> str | None:
    """How an extracted answer agrees with a recorded one: "same" text, same "integer" (`4.0` and `4`), or
    "equivalent" (`is_equivalent(recorded, extracted)`); None when it does not."""
    if extracted is None:
        return None
    if extracted == recorded:
        return "same"
    recorded_int = parse_integer(recorded)
    if recorded_int is not None and recorded_int == parse_integer(extracted):
        return "integer"
    if is_equivalent(recorded, extracted, timeout=5.0):
        return "equivalent"
    return None


def equivalent_forms(answer: str) -> dict[str, str]:
    """`answer` rewritten in forms that mean the same, by name: `$...$`, `\\boxed{}`, `\\frac` <-> `\\dfrac`,
    more and fewer spaces, `\\left(`/`\\right)` added or removed, `\\frac{a}{b}` as `(a)/(b)`."""
    forms = {"dollars": f"${answer}$", "boxed": f"\\boxed{{{answer}}}"}
    if "\\dfrac" in answer:
        forms["frac"] = answer.replace("\\dfrac", "\\frac")
    elif "\\frac" in answer:
        forms["frac"] = answer.replace("\\frac", "\\dfrac")
    spaced = re.sub(r"\s*([,+=])\s*", r"\1 ", answer).strip()
    if spaced != answer:
        forms["spaced"] = spaced
    tight = re.sub(r"(?<![a-zA-Z])\s+|\s+(?![a-zA-Z])", "", answer)  # keeps the space in `\cot x`
    if tight != answer:
        forms["tight"] = tight
    if "\\left" in answer:
        forms["left_right"] = re.sub(r"\\(?:left|right)(?![a-zA-Z])\s*", "", answer)
    elif sum(map(answer.count, "([")) == sum(map(answer.count, ")]")) > 0:
        closed = re.sub(r"[)\]]", lambda m: "\\right" + m.group(0), answer)
        forms["left_right"] = re.sub(r"[(\[]", lambda m: "\\left" + m.group(0), closed)
    slashed = re.sub(r"(?<![\d\s])\s*\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", answer)
    if slashed != answer and not re.search(r"\d\s*\\[dt]?frac", answer):  # `1\frac{4}{5}` is a mixed number
        forms["slash"] = slashed
    return forms


def test_extraction_agrees_with_recorded_model_pred(shared_data: Path) -> None:
    rows = [row for row in load_rows(shared_data / "tir_traces_sample.jsonl") if row.get("model_pred") is not None]
    disagreements = [row for row in rows if answers_agree(row["model_pred"], extract_answer(row["solution"])) is None]
    assert len(rows) > 2000
    assert 1 - len(disagreements) / len(rows) >= 0.99
    for row in disagreements:  # only texts that state no answer: ToRA used the last program output instead
        assert extract_answer(row["solution"]) is None, row["id"]
        assert "\\boxed" not in row["solution"] and "answer is" not in row["solution"].lower(), row["id"]


def test_corpus_traces_box_their_reference_answer(shared_data: Path) -> None:
    rows = [row for row in load_rows(shared_data / "tir_traces_sample.jsonl") if row["kind"] == "tora-corpus"]
    disagreeing = {row["id"] for row in rows if not answers_agree(row["answer"], extract_answer(row["solution"]))}
    assert len(rows) == 20
    # the one trace that boxes both roots `-2x - 1, 2x + 1` where MATH's reference keeps only `-2x-1`
    assert disagreeing == {"math-train-3460-0"}


def test_math500_answers_are_equivalent_to_their_rewritten_forms(shared_data: Path) -> None:
    failures = []
    num_forms = 0
    for row in load_rows(shared_data / "math500.jsonl"):
        for name, form in equivalent_forms(row["answer"]).items():
            num_forms += 1
            if not is_equivalent(row["answer"], form, timeout=10.0):
                failures.append((row["id"], name, row["answer"], form))
    assert num_forms > 1000
    assert failures == []


def test_math500_different_answers_are_not_equivalent(shared_data: Path) -> None:
    answers = [row["answer"] for row in load_rows(shared_data / "math500.jsonl")]
    pairs = [(a, b) for a, b in zip(answers[::8], answers[1::8], strict=False) if a != b]
    judged_equal = [(a, b) for a, b in pairs if is_equivalent(a, b, timeout=10.0)]
    assert len(pairs) > 50
    assert judged_equal == []


@pytest.mark.parametrize("name", INTEGER_SETS)
def test_parse_integer_reads_every_integer_answer(shared_data: Path, name: str) -> None:
    for row in load_rows(shared_data / f"{name}.jsonl"):
        value = parse_integer(row["answer"])
        if row["answer_int"] is not None:
            assert value == row["answer_int"], row["id"]
        elif value is not None:  # a form the README's plain reading does not take (`90^\circ`, `10,\!080`, `x=5`)
            assert is_equivalent(row["answer"], str(value), timeout=10.0), row["id"]


def test_competition_rules_on_competition_answers(shared_data: Path) -> None:
    for row in load_rows(shared_data / "aimo3_reference.jsonl"):
        assert to_competition_answer(row["answer"], "aimo3") == row["answer_int"]
    for name in ["aime_2022", "aime_2023", "aimo1_train"]:
        for row in load_rows(shared_data / f"{name}.jsonl"):
            assert to_competition_answer(row["answer"], "aimo2") == row["answer_int"]
            assert to_competition_answer(row["answer"], "aimo1") == row["answer_int"]
    for row in load_rows(shared_data / "amc_2022.jsonl"):
        expected = row["answer_int"] % 1000 if row["answer_int"] >= 0 else None
        assert to_competition_answer(row["answer"], "aimo1") == expected, row["id"]
