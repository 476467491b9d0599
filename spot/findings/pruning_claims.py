"""Token pruning's findings: the SPOT-AD paper's claims for SPOT-AD, and ours on sampling against pruning at equal cost
(docs/pruning.md "Token pruning"). Every accuracy is on the evaluation's images (the ``pruning``
rows), paired per image; GFLOPs are exact numbers."""
from __future__ import annotations

from .defaults import (ABLATION, EQUAL_COST_SETTING, MARGIN, PRUNING_MIN_SAVING, PRUNING_TOLERANCE, RANKING,
                       RANKING_KEEP_RATIO, SAMPLING_KEEP_RATIO, SAMPLING_PRIOR, SPOT_AD_SETTINGS)
from .measure import greater, judge, label, less, paired, rows, within
from .registry import CONTRADICTED, NotMeasured, finding

RANKING_NAME = "SPOT-AD > EViT > heuristic"
WITHIN = "Within 1 point at ≥ 30 % fewer GFLOPs"
DYNAMICS = "The dynamics matter"
SAMPLING = "Sampling beats pruning below the pruners' trained cost"


def _pruned(inputs):
    """The pruning rows of models on the grid ViT (pruned fine-tunes, ToMe, the dense classifier)."""
    return rows(inputs, "pruning").where(variant="parent")


def _trained(rows_of_setting, setting: str) -> float:
    """The keep ratio a setting's fine-tunes were trained at."""
    ratios = rows_of_setting.distinct("trained_keep_ratio")
    if len(ratios) != 1:
        raise NotMeasured(f"no single trained keep ratio for {setting} ({ratios or 'no rows'})")
    return float(ratios[0])


def _at_trained(f, setting: str):
    """A setting's rows at the keep ratio it was trained at, and that ratio."""
    s = f.where(setting=setting)
    rho = _trained(s, setting)
    return s.where(keep_ratio=rho), rho


@finding(RANKING_NAME, source="SPOT-AD paper", reads=("pruning",),
         quote="Ranking SPOT-AD > EViT > heuristic at the trained keep ratio: SPOT-AD's learned attention-"
               "dynamics predictor keeps more accuracy than EViT's CLS-attention rule, which beats the heuristic.")
def ranking(inputs, config, *, margin=MARGIN, keep_ratio=RANKING_KEEP_RATIO, order=RANKING):
    """Each neighbouring pair of ``order`` (better − worse Acc@1) at ``keep_ratio``, per backbone."""
    p = _pruned(inputs).where(metric="acc1", keep_ratio=float(keep_ratio))
    for backbone in p.distinct("backbone"):
        f = p.where(backbone=backbone)
        for better, worse in zip(order, order[1:]):
            def compute(better=better, worse=worse):
                d = paired(f.scores(setting=better), f.scores(setting=worse))
                return d, greater(d, margin), ""

            yield judge(RANKING_NAME, f"{label(config, backbone)}: {better} vs {worse}",
                        f"Acc@1 {better} − {worse} (points) at ρ = {keep_ratio:g}", compute)


@finding(WITHIN, source="SPOT-AD paper", reads=("pruning",),
         quote="SPOT-AD keeps accuracy within 1 point of the dense model at ≥ 30 % fewer GFLOPs (the seed: DeiT-S "
               "−0.3 points at −39 %).")
def within_one_point(inputs, config, *, tolerance=PRUNING_TOLERANCE, min_saving=PRUNING_MIN_SAVING,
                     settings=SPOT_AD_SETTINGS):
    """Each SPOT-AD fine-tune of ``settings`` at its trained ρ: Acc@1 − dense above −``tolerance`` and GFLOPs ≤
    (1 − ``min_saving``) × dense; a smaller saving is the claim's condition unmet: contradicted."""
    p = _pruned(inputs)
    for backbone in p.distinct("backbone"):
        f = p.where(backbone=backbone)
        for setting in settings:
            def compute(setting=setting):
                s, rho = _at_trained(f, setting)
                d = paired(s.where(metric="acc1").scores(), f.where(method="vit", metric="acc1").scores())
                saving = 1 - s.value(metric="gflops") / f.value(method="vit", metric="gflops")
                if saving < min_saving:
                    return d, CONTRADICTED, (f"ρ = {rho:g} saves {100 * saving:.1f} % of the dense GFLOPs "
                                             f"(< {100 * min_saving:g} %): the claim's condition is not met")
                return d, within(d, tolerance), f"ρ = {rho:g} saves {100 * saving:.1f} % of the dense GFLOPs"

            yield judge(WITHIN, f"{label(config, backbone)}: {setting}",
                        f"Acc@1 {setting} at its trained ρ − dense (points), within {tolerance:g}", compute)


@finding(DYNAMICS, source="SPOT-AD paper", reads=("pruning",),
         quote="The dynamics matter (SPOT-AD paper Table 2): SPOT-AD without the running attention statistics D^M, "
               "D^Σ (the current block's attention only) loses accuracy against full SPOT-AD.")
def dynamics(inputs, config, *, margin=MARGIN, ablation=ABLATION):
    """The ablated fine-tune − full SPOT-AD, each at its trained ρ, per backbone: claimed below 0 (only the
    pruning_ablations preset has the ablation's rows: not measured otherwise)."""
    ablated, full = ablation
    p = _pruned(inputs).where(metric="acc1")
    for backbone in p.distinct("backbone"):
        f = p.where(backbone=backbone)

        def compute(f=f):
            a, rho = _at_trained(f, ablated)
            d = paired(a.scores(), _at_trained(f, full)[0].scores())
            return d, less(d, margin), f"trained at ρ = {rho:g}"

        yield judge(DYNAMICS, label(config, backbone), f"Acc@1 {ablated} − {full} (points)", compute)


def _equal_cost_budget(sampling, gflops: float) -> tuple[int, float]:
    """The SPoT budget (and its GFLOPs) among the equal-cost rows closest in cost to ``gflops`` (ties: smaller)."""
    costs = {int(b): sampling.value(budget=b, metric="gflops") for b in sampling.distinct("budget")}
    if not costs:
        raise NotMeasured("no equal-cost SPoT rows among the pruning results")
    m = min(costs, key=lambda b: (abs(costs[b] - gflops), b))
    return m, costs[m]


@finding(SAMPLING, source="ours", reads=("pruning",),
         quote="At ρ ≤ 0.5 SPoT wins on every backbone, with Isotropic alone too: the pruners were fine-tuned at "
               "0.7 and degrade fast away from it, SPoT was retrofitted over all budgets.")
def sampling_beats_pruning(inputs, config, *, margin=MARGIN, keep_ratio=SAMPLING_KEEP_RATIO, prior=SAMPLING_PRIOR,
                           anchor=EQUAL_COST_SETTING):
    """SPoT (``prior``) at the equal-cost budget of the anchor's (``pruning.equal_cost``, else ``anchor``) cost at
    ``keep_ratio`` − the anchor evaluated at ``keep_ratio``, per backbone (the same evaluation images)."""
    anchor = (config.get("pruning") or {}).get("equal_cost") or anchor
    p = rows(inputs, "pruning")
    for backbone in p.distinct("backbone"):
        f = p.where(backbone=backbone)

        def compute(f=f):
            a = f.where(setting=anchor, variant="parent", keep_ratio=float(keep_ratio))
            gflops = a.value(metric="gflops")
            sampling = f.where(setting="", variant="spot", method="spot", placement=prior)
            m, cost = _equal_cost_budget(sampling, gflops)
            d = paired(sampling.where(budget=m, metric="acc1").scores(), a.where(metric="acc1").scores())
            return d, greater(d, margin), (f"m* = {m} tokens at {cost:.4g} GFLOPs against {anchor}'s {gflops:.4g}; "
                                           f"{anchor} trained at ρ = {_trained(f.where(setting=anchor), anchor):g}")

        yield judge(SAMPLING, label(config, backbone),
                    f"Acc@1 SPoT {prior.capitalize()} at equal cost − {anchor} at ρ = {keep_ratio:g} (points)",
                    compute)
