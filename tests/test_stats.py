"""spot.stats: Wilson intervals, packed per-image outcomes, paired differences and intervals of means."""
import math

import numpy as np
import pytest
from scipy.stats import binomtest

from spot.stats import (Z, decode_outcomes, encode_outcomes, mean_interval, outcome_columns, paired_difference,
                        ratio_interval, wilson)


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (1, 37), (500, 1000), (1999, 2000)])
def test_wilson_equals_scipy(k, n):
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson(k, n)
    assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)


@pytest.mark.parametrize("n", [3, 7, 10, 60, 100, 2000])
def test_wilson_contains_the_estimate_even_at_none_and_all(n):
    """The Wilson interval always holds k/n; at k = 0 and k = n rounding must not push a bound past it."""
    for k in (0, 1, n // 2, n - 1, n):
        low, high = wilson(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0, (k, n, low, high)


def test_wilson_of_no_images_is_nan():
    assert all(math.isnan(x) for x in wilson(0, 0))


@pytest.mark.parametrize("n", [1, 7, 9, 13, 2000, 2001])
def test_outcomes_round_trip_for_any_number_of_images(n):
    bits = np.random.default_rng(n).random(n) < 0.6
    text = encode_outcomes(bits)
    assert text.isascii() and len(text) == 4 * math.ceil(math.ceil(n / 8) / 3)
    assert np.array_equal(decode_outcomes(text, n), bits)
    with pytest.raises(ValueError, match="outcomes hold"):
        decode_outcomes(text, 8 * math.ceil(n / 8) + 1)


def test_outcome_columns_are_the_rows_value_count_and_interval():
    bits = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    c = outcome_columns(bits)
    low, high = wilson(7, 11)
    assert c["value"] == 100.0 * 7 / 11 and (c["n_images"], c["n_correct"]) == (11, 7)
    assert (c["ci_low"], c["ci_high"]) == (100.0 * low, 100.0 * high)
    assert np.array_equal(decode_outcomes(c["outcomes"], c["n_images"]), bits)


def test_paired_difference_by_hand():
    a = np.array([1, 1, 1, 0, 1, 0])
    b = np.array([0, 1, 0, 0, 1, 1])
    d = paired_difference(a, b)  # differences 1, 0, 1, 0, 0, −1: mean 1/6, sample std sqrt(17/30)
    half = Z * math.sqrt(17 / 30) / math.sqrt(6)
    assert d.difference == pytest.approx(100 / 6)
    assert (d.low, d.high) == (pytest.approx(100 * (1 / 6 - half)), pytest.approx(100 * (1 / 6 + half)))
    assert d.n == 6 and d.excludes() == 0


def test_mcnemar_is_the_binomial_test_on_the_discordant_images():
    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.7
    b = np.where(rng.random(300) < 0.2, ~a, a) & (rng.random(300) < 0.9)
    up, down = int((a & ~b).sum()), int((~a & b).sum())
    assert up != down
    assert paired_difference(a, b).p_value == pytest.approx(binomtest(up, up + down, 0.5).pvalue)
    assert paired_difference(a, a).p_value == 1.0  # no discordant image
    assert math.isnan(paired_difference(a * 0.5, b).p_value)  # averaged scores: no McNemar


def test_mean_interval_is_wilson_for_outcomes_and_normal_for_averaged_scores():
    bits = np.array([1] * 9 + [0] * 3)
    i = mean_interval(bits)
    low, high = wilson(9, 12)
    assert (i.value, i.low, i.high, i.n) == (75.0, 100 * low, 100 * high, 12)
    scores = np.array([1, 2 / 3, 1 / 3, 1, 0, 2 / 3, 1, 1 / 3])  # per-image means over three draws
    half = Z * scores.std(ddof=1) / math.sqrt(scores.size)
    j = mean_interval(scores)
    assert j.value == pytest.approx(100 * scores.mean())
    assert (j.low, j.high) == (pytest.approx(100 * (scores.mean() - half)), pytest.approx(100 * (scores.mean() + half)))


def test_ratio_interval_is_the_normal_interval_of_a_mean_for_one_value_per_image():
    x = np.random.default_rng(1).random(40)
    r, m = ratio_interval(x, np.ones(40)), mean_interval(x)
    assert (100 * r.value, 100 * r.low, 100 * r.high) == pytest.approx((m.value, m.low, m.high))


def test_ratio_interval_agrees_with_a_bootstrap_over_images():
    # tokens of one image share its level: the interval must follow the images (clusters), not the tokens
    rng = np.random.default_rng(2)
    level = rng.normal(0, 1, 300)
    counts = rng.integers(1, 9, 300)
    sums = np.array([(lv + rng.normal(0, 0.3, c)).sum() for lv, c in zip(level, counts)])
    i = ratio_interval(sums, counts)
    draws = rng.integers(0, 300, (4000, 300))
    boot = sums[draws].sum(1) / counts[draws].sum(1)
    assert i.value == pytest.approx(sums.sum() / counts.sum())
    assert (i.low, i.high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), abs=0.02)
    tokens = np.concatenate([np.full(c, s / c) for s, c in zip(sums, counts)])  # ignoring the clusters: narrower
    assert Z * tokens.std(ddof=1) / np.sqrt(tokens.size) < (i.high - i.low) / 2


def test_ratio_interval_leaves_out_images_without_values():
    i = ratio_interval([2.0, 0.0, 4.0], [2, 0, 2])
    assert (i.value, i.n) == (1.5, 2)
    assert np.isnan(ratio_interval([1.0], [1]).low) and np.isnan(ratio_interval([], []).value)
