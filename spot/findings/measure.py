"""What the findings share: reading result rows, per-image score vectors, paired comparisons and the decision rule.

* :func:`rows` — the rows of one result kind (``{kind: [paths]}``), as :class:`Rows`; a kind with no file raises
  :class:`~spot.findings.registry.NotMeasured`.
* :meth:`Rows.scores` — the per-image score vector of the rows matching some keys: the 0/1 outcomes of one row,
  or their mean over the ``seed`` rows of a stochastic prior (one row per seed).
* :func:`paired` — ``a − b`` in points over the same images (:func:`spot.stats.paired_difference`); refuses scores of
  different image subsets or numbers of images.
* :func:`decide` (:func:`greater`, :func:`within`, :func:`less`) — the decision rule on the difference's interval.
* :func:`judge` — one :class:`~spot.findings.registry.Verdict` from a comparison (not measured where rows lack);
  :func:`overall` — the row across scopes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..results import read_csv
from ..stats import PairedDifference, mean_outcomes, paired_difference
from .registry import CONTRADICTED, HOLDS, INCONCLUSIVE, MIXED, NOT_MEASURED, NotMeasured, Verdict

__all__ = ["SUBSETS", "Rows", "Scores", "rows", "paired", "decide", "greater", "within", "less", "judge", "overall",
           "label", "config_value", "main_setting_label", "fmt"]

# which image subset a kind's rows are measured on: rows compare paired only within one subset (the evaluation and
# the pruning job read the same stratified subset in the same order; the oracle's is nested in it, in another order)
SUBSETS = {"evaluation": "evaluation", "pruning": "evaluation", "oracle": "oracle", "transfer": "oracle",
           "prior_selection": "prior_selection", "learned_placement": "learned_placement"}
# columns whose empty cells mean "none" (read back as "")
TEXT_KEYS = ("init", "setting")


@lru_cache(maxsize=8)
def _read(paths: tuple, stamps: tuple) -> pd.DataFrame:
    frame = pd.concat([read_csv(p) for p in paths], ignore_index=True)
    for key in TEXT_KEYS:
        if key in frame:
            frame[key] = frame[key].fillna("")
    return frame


def rows(inputs: dict, kind: str) -> "Rows":
    """Every row of the ``kind`` result tables among ``inputs`` (read once per file version; never modify the
    frame in place)."""
    paths = tuple(str(p) for p in inputs.get(kind, []) if str(p).endswith(".csv"))
    if not paths:
        raise NotMeasured(f"no {kind} results among the inputs")
    return Rows(kind, _read(paths, tuple(Path(p).stat().st_mtime_ns for p in paths)))


@dataclass(frozen=True)
class Scores:
    """Per-image scores in [0, 1] of one measurement on the images of ``subset`` (``draws``: seeds averaged)."""

    values: np.ndarray
    kind: str
    draws: int

    @property
    def n(self) -> int:
        return int(self.values.size)

    @property
    def subset(self) -> str:
        return SUBSETS[self.kind]


def _mask(column: pd.Series, value) -> pd.Series:
    if value is None:
        return column.isna()
    if isinstance(value, float):
        return pd.Series(np.isclose(pd.to_numeric(column, errors="coerce"), value), index=column.index)
    return column == value


@dataclass(frozen=True)
class Rows:
    """The rows of one result kind (``frame``), filtered by keys."""

    kind: str
    frame: pd.DataFrame

    def where(self, **keys) -> "Rows":
        """The rows whose columns equal ``keys`` (a float compares with a tolerance, None matches empty cells)."""
        f = self.frame
        for key, value in keys.items():
            if key not in f:
                raise NotMeasured(f"the {self.kind} results have no {key} column")
            f = f[_mask(f[key], value)]
        return Rows(self.kind, f)

    def __len__(self) -> int:
        return len(self.frame)

    def distinct(self, column: str) -> list:
        """The values of ``column`` in the order they first appear (empty cells left out)."""
        return list(dict.fromkeys(self.frame[column].dropna())) if column in self.frame else []

    def value(self, **keys) -> float:
        """The ``value`` of the one row matching ``keys`` (an exact number: GFLOPs, …)."""
        r = self.where(**keys).frame
        if not len(r):
            raise NotMeasured(f"no {self.kind} row with {_describe(keys)}")
        if r["value"].nunique() != 1:
            raise ValueError(f"{len(r)} {self.kind} rows with {_describe(keys)} hold different values: add a key")
        return float(r["value"].iloc[0])

    def scores(self, **keys) -> Scores:
        """The per-image scores of the rows matching ``keys``: one row's 0/1 outcomes, or the mean over the rows
        of one measurement's seeds."""
        r = self.where(**keys).frame
        if not len(r):
            raise NotMeasured(f"no {self.kind} rows with {_describe(keys)}")
        seeds = r["seed"] if "seed" in r else pd.Series([math.nan] * len(r), index=r.index)
        if seeds.nunique(dropna=False) != len(r):
            raise ValueError(f"{len(r)} {self.kind} rows match {_describe(keys)} and differ in more than their seed: "
                             "the comparison needs more keys")
        counts = set(int(n) for n in r["n_images"])
        if len(counts) != 1:
            raise ValueError(f"the seeds of {self.kind} rows {_describe(keys)} hold different numbers of images "
                             f"{sorted(counts)}")
        if "outcomes" not in r or r["outcomes"].isna().any():
            raise NotMeasured(f"the {self.kind} rows with {_describe(keys)} carry no per-image outcomes (results "
                              "from before spot.stats: re-run them)")
        n = counts.pop()
        return Scores(mean_outcomes(r["outcomes"], n), self.kind, len(r))


def _describe(keys: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in keys.items()) or "no keys"


def paired(a: Scores, b: Scores) -> PairedDifference:
    """``a − b`` in points over the same images; a clear error when they cannot be the same images (another image
    subset, or another number of images)."""
    if a.subset != b.subset:
        raise ValueError(f"a paired comparison needs the same images: {a.kind} rows ({a.subset} subset) against "
                         f"{b.kind} rows ({b.subset} subset) are on different images in a different order")
    if a.n != b.n:
        raise ValueError(f"a paired comparison needs the same images: {a.n} {a.kind} images against {b.n} {b.kind} "
                         f"images (the results come from runs with different limits: re-run them on one subset)")
    return paired_difference(a.values, b.values)


def decide(d: PairedDifference, threshold: float, direction: int = 1) -> str:
    """The decision rule: the claim is that the difference lies above ``threshold`` (``direction`` +1) or below it
    (−1). Holds when the whole 95 % interval lies on the claimed side, contradicted when it lies wholly on the other
    side, inconclusive when it contains the threshold (or has no width: one image)."""
    side = d.excludes(threshold) * direction
    return HOLDS if side > 0 else CONTRADICTED if side < 0 else INCONCLUSIVE


def greater(d: PairedDifference, margin: float) -> str:
    """"a > b": the interval of a − b above ``margin`` (0: a plain win)."""
    return decide(d, margin, 1)


def within(d: PairedDifference, tolerance: float) -> str:
    """"a within ``tolerance`` points of b" (no worse by more): the interval of a − b above −tolerance."""
    return decide(d, -tolerance, 1)


def less(d: PairedDifference, margin: float) -> str:
    """"a < b": the interval of a − b below −``margin``."""
    return decide(d, -margin, -1)


def judge(finding: str, scope: str, statistic: str,
          compute: Callable[[], tuple[PairedDifference, str, str]]) -> Verdict:
    """The verdict of one scope: ``compute() -> (difference, verdict, note)``; "not measured" (with the reason)
    where it raises :class:`NotMeasured`."""
    try:
        d, verdict, note = compute()
    except NotMeasured as missing:
        return Verdict(finding, scope, statistic, NOT_MEASURED, note=str(missing))
    return Verdict(finding, scope, statistic, verdict, d.difference, d.low, d.high, d.p_value, d.n, note)


def overall(finding: str, verdicts: list[Verdict], scope: str = "all") -> Verdict:
    """The row across scopes: the common verdict of the measured scopes when they agree, else "mixed" (the note
    says which scope got which); "not measured" when no scope was."""
    measured = [v for v in verdicts if v.verdict != NOT_MEASURED]
    missing = [v.scope for v in verdicts if v.verdict == NOT_MEASURED]
    tail = f"; not measured: {', '.join(missing)}" if missing and measured else ""
    if not measured:
        return Verdict(finding, scope, "every scope", NOT_MEASURED, note="no scope was measured")
    kinds = list(dict.fromkeys(v.verdict for v in measured))
    if len(kinds) == 1:
        return Verdict(finding, scope, "every scope", kinds[0], n_images=None,
                       note=f"{kinds[0]} in all {len(measured)} measured scopes{tail}")
    which = "; ".join(f"{k}: {', '.join(v.scope for v in measured if v.verdict == k)}" for k in kinds)
    return Verdict(finding, scope, "every scope", MIXED, note=which + tail)


def label(config: dict, backbone) -> str:
    """A backbone's display label from the config's ``backbones`` (its name where the config has none)."""
    entry = (config.get("backbones") or {}).get(str(backbone)) or {}
    return str(entry.get("label", backbone))


def config_value(config: dict, path: str):
    """``config["a"]["b"]`` for ``a.b``; a config without it is a finding not measured."""
    value = config
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise NotMeasured(f"the config has no {path}")
        value = value[part]
    return value


def main_setting_label(config: dict) -> str:
    """The oracle rows' ``setting`` of the main SPoT-ON setting (``lr=0.01,steps=10``, as
    :attr:`spot.experiments.oracle.search.SearchSetting.label` writes it)."""
    setting = config_value(config, "oracle.settings")[int(config_value(config, "oracle.main_setting"))]
    return f"lr={float(setting['lr']):g},steps={int(setting['steps'])}"


def fmt(d: PairedDifference) -> str:
    """``+2.30 [1.10, 3.50]`` points."""
    return f"{d.difference:+.2f} [{d.low:.2f}, {d.high:.2f}]"
