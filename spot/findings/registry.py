"""The registry of the artifact's findings: one entry per reported claim, declared by the function that checks it.

    @finding("Subpixel beats grid placement", source="paper", quote="…", reads=("oracle",))
    def subpixel_beats_grid(inputs, config, *, margin=MARGIN): -> iterable of Verdict

``inputs`` is ``{kind: [paths]}`` (as the table builders get it, :mod:`spot.paper.registry`), ``config`` the run's
resolved config; the thresholds are keyword arguments with the defaults of :mod:`spot.findings.defaults`. A
finding yields one :class:`Verdict` per scope (a backbone, a budget, a source → target pair …);
:func:`spot.findings.evaluate` adds the row across scopes. Importable without torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["SOURCES", "KINDS", "VERDICTS", "HOLDS", "CONTRADICTED", "INCONCLUSIVE", "NOT_MEASURED", "MIXED",
           "Verdict", "Finding", "FINDINGS", "finding", "NotMeasured"]

SOURCES = {
    "paper": "SPoT (ICCVW 2025)",
    "SPOT-AD paper": "the SPOT-AD pruning method's claims",
    "ours": "this project's own findings",
}
# the result kinds a finding may read (a subset of spot.paper.registry.RESULT_KINDS: the tidy result tables)
KINDS = ("evaluation", "oracle", "transfer", "pruning", "prior_selection", "learned_placement")

HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED, MIXED = (
    "holds", "contradicted", "inconclusive", "not measured", "mixed")
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED, MIXED)


class NotMeasured(Exception):
    """The inputs lack what a finding (or one scope of it) needs: its verdict is "not measured", with this reason."""


@dataclass(frozen=True)
class Verdict:
    """One finding in one scope: the statistic (a difference in points over the same images), its 95 % interval,
    McNemar's p (0/1 outcomes; NaN for scores averaged over seeds), the number of images and the verdict."""

    finding: str
    scope: str
    statistic: str
    verdict: str
    estimate: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    n_images: int | None = None
    note: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"{self.finding}: unknown verdict {self.verdict!r}; accepted: {', '.join(VERDICTS)}")


@dataclass(frozen=True)
class Finding:
    name: str  # how the findings table names it
    source: str  # a key of SOURCES
    quote: str  # the claim as the artifact (or its source) words it
    reads: tuple  # kinds of KINDS
    evaluate: Callable = field(repr=False)  # (inputs, config, **thresholds) -> iterable of Verdict


FINDINGS: dict[str, Finding] = {}


def finding(name: str, *, source: str, quote: str, reads):
    """Register ``evaluate(inputs, config, **thresholds) -> iterable of Verdict`` as the finding ``name``."""
    if source not in SOURCES:
        raise ValueError(f"{name}: unknown source {source!r}; accepted: {', '.join(SOURCES)}")
    unknown = sorted(set(reads) - set(KINDS))
    if unknown or not reads:
        raise ValueError(f"{name}: unknown or no result kind(s) {unknown or list(reads)}; accepted: {', '.join(KINDS)}")

    def decorate(evaluate):
        if name in FINDINGS:
            raise ValueError(f"finding {name!r} is registered twice ({FINDINGS[name].evaluate.__name__} and "
                             f"{evaluate.__name__})")
        FINDINGS[name] = Finding(name, source, " ".join(quote.split()), tuple(reads), evaluate)
        return evaluate

    return decorate
