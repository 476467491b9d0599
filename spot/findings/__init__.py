"""The artifact's findings as code: every claim the README reports is one registered unit
(:func:`~spot.findings.registry.finding`) that reads the result tables and returns a verdict per scope — **holds**,
**contradicted**, **inconclusive**, or **not measured** where the preset lacks the rows — from the per-image outcomes
and their uncertainty (:mod:`spot.stats`), plus a row across scopes (holds / contradicted when every measured scope
agrees, else **mixed**, naming which scope got which).

    from spot.findings import FINDINGS, evaluate, evaluate_all
    verdicts = evaluate("Subpixel beats grid placement", {"oracle": [...]}, config)
    everything = evaluate_all(inputs, config)       # the workflow's `findings` table (spot.paper.findings)

The decision rule (:func:`~spot.findings.measure.decide`): a claim "a > b" holds when the 95 % interval of the
paired difference a − b (points, the same images) lies above 0, is contradicted when it lies below 0, and is
inconclusive otherwise; "within X points" compares the interval with −X. Every threshold is a keyword argument whose
default is named in :mod:`spot.findings.defaults`. Importable without torch.
"""
from __future__ import annotations

from .registry import (CONTRADICTED, FINDINGS, HOLDS, INCONCLUSIVE, MIXED, NOT_MEASURED, SOURCES, VERDICTS, Finding,
                       NotMeasured, Verdict, finding)
from .measure import overall
from . import paper_claims  # noqa: E402,F401 — registers the findings, in the table's order: the paper's,
from . import controls  # noqa: E402,F401 — ours on SPoT,
from . import pruning_claims  # noqa: E402,F401 — token pruning's,
from . import learned_claims  # noqa: E402,F401 — the learned placement's

__all__ = ["FINDINGS", "Finding", "Verdict", "NotMeasured", "finding", "evaluate", "evaluate_all", "reads", "SOURCES",
           "VERDICTS", "HOLDS", "CONTRADICTED", "INCONCLUSIVE", "NOT_MEASURED", "MIXED"]


def evaluate(name: str, inputs: dict, config: dict, **thresholds) -> list[Verdict]:
    """The verdicts of finding ``name``, one per scope, then the row across them (scope ``all``). Inputs that lack
    what it reads give "not measured", never an error; results that cannot be compared (a paired comparison of
    different images) are an error."""
    if name not in FINDINGS:
        raise ValueError(f"no finding named {name!r}; registered: {', '.join(FINDINGS)}")
    f = FINDINGS[name]
    try:
        verdicts = list(f.evaluate(inputs, config, **thresholds))
    except NotMeasured as missing:
        verdicts = [Verdict(name, "all", "", NOT_MEASURED, note=str(missing))]
    if not verdicts:
        verdicts = [Verdict(name, "all", "", NOT_MEASURED, note=f"no rows of {', '.join(f.reads)} to compare")]
    return verdicts + [overall(name, verdicts)] if len(verdicts) > 1 or verdicts[0].scope != "all" else verdicts


def evaluate_all(inputs: dict, config: dict) -> list[Verdict]:
    """Every registered finding at its default thresholds, in registration order."""
    return [v for name in FINDINGS for v in evaluate(name, inputs, config)]


def reads() -> tuple:
    """The result kinds the findings read, together."""
    return tuple(dict.fromkeys(kind for f in FINDINGS.values() for kind in f.reads))
