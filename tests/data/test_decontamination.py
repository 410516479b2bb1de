"""Tests for numina_kit.data.decontamination: n-gram overlap between training problems and evaluation sets."""

import pytest

from numina_kit.data.decontamination import build_index, decontaminate, ngrams, tokenize


EVAL = [
    "Find the number of ordered pairs of positive integers (m, n) such that m^2 n = 20^{20}.",
    "What is 2+2?",  # shorter than 10 tokens: matched as a whole
]


@pytest.mark.parametrize(
    ("text", "overlaps"),
    [
        # the same 10 consecutive words inside a longer problem, different case and punctuation
        ("Warm-up. FIND the number of ordered pairs of positive integers (m,n) such that m + n = 7.", True),
        ("Find the number of ordered pairs of positive integers such that m n = 20.", False),  # 9-word run
        ("Compute: what is 2 + 2? Then double it.", True),  # contains the whole short evaluation problem
        ("What is 2+3?", False),
        ("", False),
    ],
)
def test_overlap(text: str, overlaps: bool) -> None:
    assert build_index(EVAL, n=10).contains(text) is overlaps


def test_decontaminate_removes_planted_overlap() -> None:
    index = build_index(EVAL)
    train = [f"Problem {i}: a farmer has {i} cows and buys {i + 3} more; how many cows now?" for i in range(20)]
    train.insert(7, "Hard one. " + EVAL[0].upper())
    kept, removed = decontaminate(train, index, text=lambda t: t)
    assert removed == ["Hard one. " + EVAL[0].upper()]
    assert len(kept) == 20


def test_ngrams() -> None:
    assert tokenize("A, b-C d!") == ["a", "b", "c", "d"]
    assert ngrams(["a", "b", "c"], 2) == {("a", "b"), ("b", "c")}
    assert ngrams(["a"], 3) == {("a",)}
    assert ngrams([], 3) == set()
    with pytest.raises(ValueError):
        ngrams(["a"], 0)
