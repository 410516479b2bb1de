"""Statistics for comparing models (or answer selectors) on the same problems: intervals and paired tests.

Every figure is a mean over units (problems; a problem's value is usually its mean over seeds), so the unit of
resampling is the problem: seeds of one problem are not independent draws of the model's skill.

- `bootstrap_interval(values)`: the mean with a percentile bootstrap interval (Efron & Tibshirani, 1993).
- `paired_comparison(a, b)`: two systems scored on the same units (mappings unit -> value; only the units both have
  count, and the result says how many): the mean difference with a paired bootstrap interval, how many units each
  system won, and the two-sided exact sign test on those wins, which for 0/1 outcomes is McNemar's exact test.
- `pass_at_k(n, c, k)`: the unbiased pass@k estimate from n samples of which c are right (Chen et al., 2021,
  "Evaluating Large Language Models Trained on Code").

Bootstraps are seeded, so a report is reproducible.
"""

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass


CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean over `n` units with its bootstrap interval [low, high] at `confidence`; NaN when there are no units."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    def percent(self, digits: int = 1) -> str:
        """`45.0% [38.1, 52.0]` (the interval in percentage points), or `n/a` without units."""
        if self.n == 0:
            return "n/a"
        return f"{100 * self.estimate:.{digits}f}% [{100 * self.low:.{digits}f}, {100 * self.high:.{digits}f}]"

    def signed_points(self, digits: int = 1) -> str:
        """A difference as `+3.0 pts [-1.2, +7.1]`, or `n/a` without units."""
        if self.n == 0:
            return "n/a"
        return f"{100 * self.estimate:+.{digits}f} pts [{100 * self.low:+.{digits}f}, {100 * self.high:+.{digits}f}]"


@dataclass(frozen=True)
class PairedComparison:
    """System A against system B on the `n` units both were scored on (`left_out`: units only one of them has)."""

    n: int
    left_out: int
    mean_a: float
    mean_b: float
    difference: Interval  # mean of a - b, with a paired bootstrap interval
    a_better: int  # units where A scored higher
    b_better: int
    p_value: float  # two-sided exact sign test on a_better vs b_better (McNemar's exact test for 0/1 values)

    @property
    def ties(self) -> int:
        return self.n - self.a_better - self.b_better


def bootstrap_interval(
    values: Sequence[float], *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """The mean of `values` with a percentile bootstrap interval: resample the units with replacement."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(data.mean()), float(low), float(high), int(data.size), confidence)


def paired_comparison(
    a: Mapping[Hashable, float],
    b: Mapping[Hashable, float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Compare two systems unit by unit on the units both have (see the module docstring)."""
    common = [unit for unit in a if unit in b]
    left_out = len(set(a) ^ set(b))
    xs, ys = [float(a[unit]) for unit in common], [float(b[unit]) for unit in common]
    differences = [x - y for x, y in zip(xs, ys, strict=True)]
    a_better = sum(d > 0 for d in differences)
    b_better = sum(d < 0 for d in differences)
    return PairedComparison(
        n=len(common),
        left_out=left_out,
        mean_a=sum(xs) / len(xs) if xs else math.nan,
        mean_b=sum(ys) / len(ys) if ys else math.nan,
        difference=bootstrap_interval(differences, confidence=confidence, resamples=resamples, seed=seed),
        a_better=a_better,
        b_better=b_better,
        p_value=sign_test(a_better, b_better),
    )


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of `wins` against `losses` under equal odds (ties already left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of k samples drawn without replacement from n (c of them right) is right."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
