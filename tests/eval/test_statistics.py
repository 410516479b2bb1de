"""Tests for numina_kit.eval.statistics: bootstrap intervals, the paired comparison on common units only, the exact
sign test (McNemar's exact test for 0/1 outcomes) and the unbiased pass@k estimator, against values computed by hand.
"""

import math

import pytest

from numina_kit.eval.statistics import bootstrap_interval, paired_comparison, pass_at_k, sign_test


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    values = [1.0] * 30 + [0.0] * 70
    interval = bootstrap_interval(values)
    assert interval.estimate == pytest.approx(0.3) and interval.n == 100
    assert 0.18 < interval.low < 0.3 < interval.high < 0.42  # about +-1.96 * sqrt(.3 * .7 / 100) = +-0.09
    assert bootstrap_interval(values) == interval


def test_interval_of_constant_values_has_no_width_and_of_nothing_is_empty():
    constant = bootstrap_interval([0.5] * 7)
    assert constant.low == constant.estimate == constant.high == 0.5
    empty = bootstrap_interval([])
    assert empty.n == 0 and math.isnan(empty.estimate) and empty.percent() == "n/a"


def test_interval_formats():
    interval = bootstrap_interval([1.0, 0.0, 1.0, 1.0])
    assert interval.percent().startswith("75.0% [")
    assert paired_comparison({"a": 1.0}, {"a": 0.0}).difference.signed_points() == "+100.0 pts [+100.0, +100.0]"


def test_paired_comparison_counts_wins_on_common_units_only():
    a = {"p1": 1.0, "p2": 1.0, "p3": 0.0, "p4": 0.5, "only_a": 1.0}
    b = {"p1": 0.0, "p2": 1.0, "p3": 1.0, "p4": 0.0, "only_b": 0.0}
    result = paired_comparison(a, b)
    assert (result.n, result.left_out) == (4, 2)
    assert (result.a_better, result.b_better, result.ties) == (2, 1, 1)
    assert result.mean_a == pytest.approx(2.5 / 4) and result.mean_b == pytest.approx(0.5)
    assert result.difference.estimate == pytest.approx(0.5 / 4)
    assert result.p_value == 1.0  # 2 wins against 1 is no evidence


def test_a_clear_difference_is_significant_and_its_interval_excludes_zero():
    a = {i: 1.0 for i in range(40)}
    b = {i: float(i < 20) for i in range(40)}
    result = paired_comparison(a, b)
    assert result.a_better == 20 and result.b_better == 0
    assert result.p_value == pytest.approx(2 / 2**20)
    assert result.difference.low > 0


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [(0, 0, 1.0), (5, 0, 2 / 32), (0, 5, 2 / 32), (3, 3, 1.0), (8, 2, 2 * (1 + 10 + 45) / 1024)],
)
def test_sign_test(wins, losses, p):
    assert sign_test(wins, losses) == pytest.approx(p)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(4, 0, 1, 0.0), (4, 1, 1, 0.25), (4, 4, 2, 1.0), (4, 1, 2, 0.5), (10, 3, 10, 1.0), (5, 2, 3, 1 - 1 / 10)],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
