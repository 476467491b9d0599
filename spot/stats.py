"""Uncertainty of the measured numbers: intervals over the evaluated images, paired comparisons, per-image outcomes.

Every accuracy of a result table is a proportion of ``n_images`` images. Its rows carry, besides the value:

=============  ====================================================================================================
column         meaning
=============  ====================================================================================================
n_correct      the number of images counted (correct, or output the target label, …)
ci_low/high    the 95 % Wilson score interval of the proportion, in percent (:func:`wilson`)
outcomes       which images were counted: one bit per evaluated image, in the order of the run's image subset
               (its sidecar's ``subsets``), packed and base64-encoded (:func:`encode_outcomes`)
=============  ====================================================================================================

so that two numbers measured on the same images can be compared *paired* (:func:`paired_difference`, McNemar's
exact test), and a mean over stochastic-prior draws gets an interval over images (:func:`mean_interval` of the
per-image mean over draws) instead of a spread over three draws alone. Importable without torch.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Z", "wilson", "encode_outcomes", "decode_outcomes", "mean_outcomes", "outcome_columns", "mean_interval",
           "Interval", "ratio_interval", "PairedDifference", "paired_difference", "unpaired_difference"]

Z = 1.959963984540054  # the two-sided 95 % normal quantile


def wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes out of ``n``, as fractions in [0, 1] (``(nan, nan)`` when n = 0).
    Well behaved at 0 and n, unlike the normal (Wald) interval."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exactly 0 (n) successes: the bound is exactly 0 (1), not a rounding error away from it
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def encode_outcomes(outcomes) -> str:
    """Per-image 0/1 outcomes → a compact ASCII string (bits packed, base64): 2 000 images in 336 characters."""
    bits = np.asarray(outcomes, dtype=bool).ravel()
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def decode_outcomes(text: str, n: int) -> np.ndarray:
    """The ``n`` per-image outcomes (bool) of :func:`encode_outcomes`."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    bits = np.unpackbits(raw)[:n].astype(bool)
    if len(bits) != n:
        raise ValueError(f"outcomes hold {len(bits)} images, the row says {n}")
    return bits


def mean_outcomes(texts, n: int) -> np.ndarray:
    """Each image's mean over several rows' packed outcomes (the draws of a stochastic prior on the same images)."""
    return np.stack([decode_outcomes(text, n) for text in texts]).astype(float).mean(axis=0)


def outcome_columns(outcomes) -> dict:
    """The uncertainty columns of an accuracy row from its per-image outcomes: ``value`` (%), ``n_images``,
    ``n_correct``, ``ci_low``, ``ci_high`` (Wilson, %) and ``outcomes``."""
    bits = np.asarray(outcomes, dtype=bool).ravel()
    n, k = int(bits.size), int(bits.sum())
    low, high = wilson(k, n)
    return {"value": 100.0 * k / n if n else float("nan"), "n_images": n, "n_correct": k,
            "ci_low": 100.0 * low, "ci_high": 100.0 * high, "outcomes": encode_outcomes(bits)}


@dataclass(frozen=True)
class Interval:
    """An estimate in percent with its 95 % interval."""

    value: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def mean_interval(scores) -> Interval:
    """The mean of per-image scores in [0, 1] (an image's correctness, or its mean over stochastic draws) with its
    95 % interval, in percent: Wilson when every score is 0 or 1, else the normal interval of the mean over images
    (the images are the independent units; the draws of one image are not)."""
    s = np.asarray(scores, dtype=float).ravel()
    n = int(s.size)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    if np.all((s == 0) | (s == 1)):
        low, high = wilson(int(s.sum()), n)
        return Interval(100.0 * s.mean(), 100.0 * low, 100.0 * high, n)
    half = Z * s.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return Interval(100.0 * s.mean(), 100.0 * max(0.0, s.mean() - half), 100.0 * min(1.0, s.mean() + half), n)


def ratio_interval(numerators, denominators) -> Interval:
    """``Σ numerators / Σ denominators`` over images (units: the ratio's own, not percent) with its 95 % interval,
    the images the independent units (a cluster-robust, linearised standard error of a ratio estimator:
    ``var = n/(n−1)·Σ(a_i − R·b_i)² / (Σ b_i)²``). With each image's sum of per-token values over its number of tokens
    this is the mean over tokens whose interval accounts for the tokens of one image not being independent; with
    ``denominators`` all 1 it is the normal interval of a per-image mean. An image with ``b_i = 0`` (no value)
    is left out (it holds no value)."""
    a = np.asarray(numerators, dtype=float).ravel()
    b = np.asarray(denominators, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a ratio over images needs one numerator per denominator: {a.size} vs {b.size}")
    keep = b != 0
    a, b = a[keep], b[keep]
    n, total = int(b.size), float(b.sum())
    if n == 0 or total == 0:
        return Interval(float("nan"), float("nan"), float("nan"), n)
    r = float(a.sum()) / total
    if n == 1:
        return Interval(r, float("nan"), float("nan"), n)
    half = Z * math.sqrt(n / (n - 1) * float(((a - r * b) ** 2).sum())) / abs(total)
    return Interval(r, r - half, r + half, n)


@dataclass(frozen=True)
class PairedDifference:
    """``a − b`` in points over the same images: the difference, its 95 % interval, and McNemar's exact two-sided
    p-value on the discordant images (for 0/1 outcomes; ``nan`` for averaged scores)."""

    difference: float
    low: float
    high: float
    n: int
    p_value: float

    def excludes(self, threshold: float = 0.0) -> int:
        """+1 when the whole interval lies above ``threshold``, −1 when below, 0 when it contains it."""
        return 1 if self.low > threshold else (-1 if self.high < threshold else 0)


def paired_difference(a, b) -> PairedDifference:
    """``mean(a) − mean(b)`` (points) of per-image scores measured on the *same* images in the same order, with the
    normal interval of the mean of the per-image differences (paired: what the two share cancels)."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs the same images: {a.size} vs {b.size}")
    d = a - b
    n = int(d.size)
    mean = float(d.mean())
    half = Z * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    p = float("nan")
    binary = np.all((a == 0) | (a == 1)) and np.all((b == 0) | (b == 1))
    if binary:
        from scipy.stats import binomtest

        up, down = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        p = 1.0 if up + down == 0 else float(binomtest(up, up + down, 0.5).pvalue)
    return PairedDifference(100.0 * mean, 100.0 * (mean - half), 100.0 * (mean + half), n, p)


def unpaired_difference(a: Interval, b: Interval) -> PairedDifference:
    """``a − b`` of two estimates on different images (independent): the normal interval from the two intervals'
    half-widths (each ≈ 1.96 standard errors)."""
    half = math.hypot(a.half_width, b.half_width)
    d = a.value - b.value
    return PairedDifference(d, d - half, d + half, min(a.n, b.n), float("nan"))
