"""Decontamination: dropping training problems that share an n-gram with an evaluation set.

NuminaMath-CoT removed problems with a 10-gram exact match against its evaluation sets (the NuminaMath technical
report, Li et al. 2024, and the AI-MO/NuminaMath-CoT dataset card); this module does the same for TIR data generation
(before any teacher call) and for JiuZhang synthesis. Text is compared as lower-cased word tokens (`\\w+`), so
spacing, punctuation and LaTeX braces do not hide an overlap. An evaluation text shorter than `n` tokens
contributes its whole token sequence, and matches a training text that contains it.

Not covered: paraphrases (Numina also dropped embedding nearest neighbours, which needs a model) and overlaps in
numbers written differently (`1,000` vs `1000`).
"""

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from numina_kit.data.problems import load_problems


T = TypeVar("T")

DEFAULT_N = 10
_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of `text`, the unit n-grams are counted in."""
    return _TOKEN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int = DEFAULT_N) -> set[tuple[str, ...]]:
    """Every run of `n` consecutive tokens; a sequence shorter than `n` is its own single gram (empty for no tokens)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class NgramIndex:
    """The n-grams of a set of evaluation texts; `contains(text)` says whether a text overlaps any of them."""

    n: int = DEFAULT_N
    _grams: set[tuple[str, ...]] = field(default_factory=set, repr=False)
    _short: dict[int, set[tuple[str, ...]]] = field(default_factory=dict, repr=False)

    def add(self, text: str) -> None:
        """Index one evaluation text."""
        tokens = tokenize(text)
        if not tokens:
            return
        if len(tokens) < self.n:
            self._short.setdefault(len(tokens), set()).add(tuple(tokens))
        else:
            self._grams |= ngrams(tokens, self.n)

    def __len__(self) -> int:
        return len(self._grams) + sum(len(grams) for grams in self._short.values())

    def contains(self, text: str) -> bool:
        """True when `text` shares an n-gram with an indexed text, or contains a whole short indexed text."""
        tokens = tokenize(text)
        if len(tokens) >= self.n and not self._grams.isdisjoint(ngrams(tokens, self.n)):
            return True
        for length, grams in self._short.items():
            if length <= len(tokens) and not grams.isdisjoint(ngrams(tokens, length)):
                return True
        return False


def build_index(texts: Iterable[str], n: int = DEFAULT_N) -> NgramIndex:
    """An `NgramIndex` over `texts` (evaluation problems, and their solutions if wanted)."""
    index = NgramIndex(n=n)
    for text in texts:
        index.add(text)
    return index


def index_eval_sets(paths: Sequence[str], n: int = DEFAULT_N) -> NgramIndex | None:
    """The index of every problem in the evaluation set files `paths` (None when there are none): what a data
    generation run must never train on. A missing or malformed file is an `InputError`, before any work starts."""
    if not paths:
        return None
    return build_index([p.problem for path in paths for p in load_problems(path)], n=n)


def decontaminate(items: Iterable[T], index: NgramIndex, *, text: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """Split `items` into (kept, removed): removed are those whose `text(item)` overlaps the index."""
    kept: list[T] = []
    removed: list[T] = []
    for item in items:
        (removed if index.contains(text(item)) else kept).append(item)
    return kept, removed
