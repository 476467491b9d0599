"""The learned placement's findings (ours; docs/placements.md "A learned placement"): it beats every label-free
placement at equal total cost, its per-image positions matter, and a policy trained for one backbone still beats the
priors on another — and the equal-cost reading of a placement that they and the ``learned_placement`` table share.

Equal cost: a learned row at m tokens costs its glance plus the SPoT forward at m (``gflops``, per image). A prior is
read at exactly that total: at the budgets m1 < m2 whose costs c1 ≤ total < c2 bracket it, each image's score is
``(1 − w)·s(m1) + w·s(m2)`` with ``w = (total − c1)/(c2 − c1)`` — the expected score of reading a share w of the images
at m2 tokens and the rest at m1, whose expected cost is the total. The best label-free placement is chosen on the
same images (a best-of: optimistic for the priors, so a win against it is conservative).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .defaults import GAP_TARGET, LEARNED_TARGET, MARGIN
from .measure import Rows, Scores, fmt, greater, judge, label, paired, rows
from .registry import NotMeasured, finding

__all__ = ["EqualCost", "equal_cost", "label_free", "best_label_free", "oracle_ceiling", "BEATS_PRIORS", "PER_IMAGE",
           "TRANSFERS"]

BEATS_PRIORS = "The learned placement beats every label-free placement at equal cost"
PER_IMAGE = "The learned placement's per-image positions matter"
TRANSFERS = "A learned placement transfers to another backbone"


@dataclass(frozen=True)
class EqualCost:
    """A placement read at one total cost: its per-image ``scores``, the budgets ``low``/``high`` mixed, and the
    share ``weight`` of the higher one (0: read at ``low`` exactly)."""

    placement: str
    scores: Scores
    low: int
    high: int
    weight: float


def equal_cost(r: Rows, total: float) -> EqualCost:
    """The rows of one placement (one backbone, variant, method and placement; every budget, every seed) read at
    ``total`` GFLOPs per image (module docs)."""
    costs = r.frame.groupby("budget")["gflops"].first().sort_index()
    name = str(r.frame["placement"].iloc[0]) if len(r) else "?"
    tol = 1e-9 * abs(total)
    below, above = costs[costs <= total + tol], costs[costs > total + tol]
    if below.empty or (above.empty and not np.isclose(below.iloc[-1], total, rtol=1e-9, atol=0)):
        raise NotMeasured(f"{name}: no measured budgets bracket {total:.4g} GFLOPs (costs "
                          f"{costs.min():.4g} … {costs.max():.4g})")
    m1, c1 = int(below.index[-1]), float(below.iloc[-1])
    if np.isclose(c1, total, rtol=1e-9, atol=0):
        return EqualCost(name, r.scores(budget=m1), m1, m1, 0.0)
    m2, c2 = int(above.index[0]), float(above.iloc[0])
    w = (total - c1) / (c2 - c1)
    a, b = r.scores(budget=m1), r.scores(budget=m2)
    return EqualCost(name, Scores((1 - w) * a.values + w * b.values, r.kind, max(a.draws, b.draws)), m1, m2, w)


def label_free(f: Rows) -> list[str]:
    """The label-free placements among one backbone's rows: the SPoT model's priors and relevance placements that do
    not read the article's true mask (not the learned policies, their controls or the probe)."""
    p = f.where(variant="spot", method="spot", metric="acc1").frame
    p = p[~p["reads_true_mask"].astype(bool) & ~p["placement"].astype(str).str.startswith("learned")]
    return list(dict.fromkeys(p["placement"]))


def best_label_free(f: Rows, total: float) -> EqualCost:
    """The label-free placement with the highest mean Acc@1 at ``total`` GFLOPs, on these images."""
    readings = []
    for name in label_free(f):
        try:
            readings.append(equal_cost(f.where(variant="spot", method="spot", metric="acc1", placement=name), total))
        except NotMeasured:
            continue
    if not readings:
        raise NotMeasured(f"no label-free placement was measured around {total:.4g} GFLOPs")
    return max(readings, key=lambda e: float(e.scores.values.mean()))


def oracle_ceiling(inputs, backbone, budget) -> tuple[float, str]:
    """The cross-model oracle of ``backbone`` at ``budget`` — the ceiling of placement alone: its Acc@1 at SPoT-ON
    positions searched on another model (the best source), from the transfer rows (on the oracle's images, not the
    learned placement's: an estimate of the same test accuracy, compared unpaired); (NaN, "") without them."""
    try:
        t = rows(inputs, "transfer").where(metric="transfer_acc1", target=backbone, budget=budget)
    except NotMeasured:
        return float("nan"), ""
    f = t.frame[t.frame["source"] != backbone]
    if "placement" in f:
        f = f[f["placement"] == "spot_on"]
    if not len(f):
        return float("nan"), ""
    means = f.groupby("source")["value"].mean()
    return float(means.max()), str(means.idxmax())


def _learned(f: Rows, placement: str, budget) -> tuple[Scores, float]:
    """A learned row's scores and total GFLOPs."""
    r = f.where(variant="spot", method="spot", metric="acc1", placement=placement, budget=budget)
    if not len(r):
        raise NotMeasured(f"no {placement} row at {budget} tokens")
    return r.scores(), float(r.frame["gflops"].iloc[0])


def _scopes(inputs, placement="learned"):
    """(backbone rows, backbone, budget) of every learned budget."""
    lp = rows(inputs, "learned_placement").where(metric="acc1")
    for backbone in lp.distinct("backbone"):
        f = lp.where(backbone=backbone)
        for budget in f.where(placement=placement).distinct("budget"):
            yield f, backbone, int(budget)


def _against_priors(f, placement, budget, margin, target=LEARNED_TARGET):
    learned, total = _learned(f, placement, budget)
    best = best_label_free(f, total)
    d = paired(learned, best.scores)
    mix = f"{best.low}" if best.weight == 0 else f"{best.low}–{best.high} tokens, w = {best.weight:.2f}"
    met = "met" if d.difference >= target else f"missed by {target - d.difference:.2f} points"
    return d, greater(d, margin), (f"best label-free: {best.placement} at {mix}; {total * 1e3:.4g} MFLOPs; "
                                   f"target +{target:g} points: {met}"), best


def _gap_note(inputs, backbone, budget, d, best: float, target=GAP_TARGET) -> str:
    """The share of the gap between the best label-free placement and the cross-model oracle that ``d`` closes."""
    ceiling, source = oracle_ceiling(inputs, backbone, budget)
    if not ceiling == ceiling or ceiling <= best:
        return ""
    closed = 100 * d.difference / (ceiling - best)
    met = "met" if closed >= target else f"missed by {target - closed:.1f} points"
    return f"; closes {closed:.1f} % of the gap to the cross-model oracle ({ceiling:.2f} %, from {source}): " \
           f"target {target:g} % {met}"


@finding(BEATS_PRIORS, source="ours", reads=("learned_placement", "transfer"),
         quote="A small policy that glances at a 12×12 thumbnail and places the m tokens reads the image better than "
               "every label-free placement (the priors, the training-free relevance placement) charged the same total "
               "GFLOPs — the glance included.")
def beats_priors(inputs, config, *, margin=MARGIN, target=LEARNED_TARGET, gap_target=GAP_TARGET):
    """Acc@1 learned − the best label-free placement at the learned placement's total GFLOPs, per backbone and
    budget (module docs); the note says whether the lead meets ``target`` points and what share of the gap to the
    cross-model oracle it closes (where the transfer rows measure one)."""
    for f, backbone, budget in _scopes(inputs):
        def compute(f=f, backbone=backbone, budget=budget):
            d, verdict, note, best = _against_priors(f, "learned", budget, margin, target)
            return d, verdict, note + _gap_note(inputs, backbone, budget, d, 100 * best.scores.values.mean(),
                                                gap_target)

        yield judge(BEATS_PRIORS, f"{label(config, backbone)}, {budget} tokens",
                    "Acc@1 learned − best label-free placement at equal total GFLOPs (points)", compute)


@finding(PER_IMAGE, source="ours", reads=("learned_placement",),
         quote="Each image's own learned positions beat the same positions given to another image (the policy's "
               "layouts shuffled across images): the policy reads the image, not only a better average layout.")
def per_image(inputs, config, *, margin=MARGIN):
    """Acc@1 learned − learned shuffled across images (the same cost), per backbone and budget."""
    for f, backbone, budget in _scopes(inputs):
        def compute(f=f, budget=budget):
            learned, _ = _learned(f, "learned", budget)
            shuffled, _ = _learned(f, "learned_shuffled", budget)
            d = paired(learned, shuffled)
            return d, greater(d, margin), ""

        yield judge(PER_IMAGE, f"{label(config, backbone)}, {budget} tokens",
                    "Acc@1 learned − learned shuffled across images (points)", compute)


@finding(TRANSFERS, source="ours", reads=("learned_placement",),
         quote="A policy trained for one backbone's SPoT model still beats every label-free placement at equal cost "
               "when it places the tokens of another backbone's.")
def transfers(inputs, config, *, margin=MARGIN):
    """Acc@1 of the target at the source's learned positions − the target's best label-free placement at equal
    cost, per source → target and budget; the note gives the target's own policy for comparison."""
    lp = rows(inputs, "learned_placement").where(metric="acc1")
    transferred = [p for p in map(str, lp.distinct("placement")) if p.startswith("learned@") and not p.endswith("_blank")]
    for placement in transferred:  # (``learned@<source>_blank`` is its blank-image control, not a transfer)
        source = placement.split("@", 1)[1]
        for f, backbone, budget in _scopes(inputs, placement):
            def compute(f=f, budget=budget, placement=placement):
                d, verdict, note, _ = _against_priors(f, placement, budget, margin)
                try:
                    own = paired(_learned(f, "learned", budget)[0], _learned(f, placement, budget)[0])
                    note += f"; own policy − transferred: {fmt(own)}"
                except NotMeasured:
                    pass
                return d, verdict, note

            yield judge(TRANSFERS, f"{label(config, source)} → {label(config, backbone)}, {budget} tokens",
                        "Acc@1 at the transferred policy's positions − best label-free placement at equal GFLOPs "
                        "(points)", compute)
