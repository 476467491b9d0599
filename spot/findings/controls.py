"""This project's own findings about SPoT (docs/results.md "Results of the embedded preset"): what the oracle's controls
show, the fair grid control, and what retrofitting costs at the full grid."""
from __future__ import annotations

from .defaults import MARGIN, RETROFIT_TOLERANCE, SAMPLING_PRIOR
from .measure import config_value, greater, judge, label, main_setting_label, paired, rows, within
from .registry import NOT_MEASURED, NotMeasured, Verdict, finding

STEERING = "The search steers the output to an arbitrary label"
BLANK = "SPoT-ON lifts accuracy on blank (content-free) images"
GRID_CONTROL = "SPoT beats the fair grid control at sparse budgets"
RETROFIT = "Retrofitting keeps full-token accuracy within 1 point"


@finding(STEERING, source="ours", reads=("oracle",),
         quote="Sub-cell moves are enough to write a label into the positions: the same search, given a random "
               "wrong label, makes the model output that label far more often than at the start.")
def steering(inputs, config, *, margin=MARGIN):
    """The share of images whose output is the random wrong target: after the search − at the start, at the
    sparse budget, per backbone (the same images and targets)."""
    setting, budget = main_setting_label(config), config_value(config, "oracle.sparse_budget")
    o = rows(inputs, "oracle").where(experiment="controls", placement="spot_on_random_target", setting=setting,
                                     budget=budget)
    statistic = f"random wrong label output after − before the search (points), {setting} at {budget} tokens"
    for backbone in o.distinct("backbone"):
        f = o.where(backbone=backbone)

        def compute(f=f):
            d = paired(f.scores(metric="target_rate"), f.scores(metric="target_rate_init"))
            return d, greater(d, margin), ""

        yield judge(STEERING, label(config, backbone), statistic, compute)


@finding(BLANK, source="ours", reads=("oracle",),
         quote="On blank canvases (the article removed) SPoT-ON lifts accuracy above SPoT's: the search needs no "
               "content to reach the label.")
def blank(inputs, config, *, margin=MARGIN):
    """Acc@1 on blank images, SPoT-ON − SPoT (Isotropic), per backbone and oracle budget."""
    setting = main_setting_label(config)
    o = rows(inputs, "oracle").where(experiment="controls", metric="blank_acc1")
    for backbone in o.distinct("backbone"):
        for budget in o.where(backbone=backbone).distinct("budget"):
            f = o.where(backbone=backbone, budget=budget)

            def compute(f=f):
                d = paired(f.where(setting=setting).scores(placement="spot_on"), f.scores(placement="isotropic"))
                return d, greater(d, margin), ""

            yield judge(BLANK, f"{label(config, backbone)}, {int(budget)} tokens",
                        f"blank-image Acc@1 SPoT-ON − SPoT Isotropic (points), {setting}", compute)


def _full_grid(e) -> int:
    """The backbone's number of grid patches (the evaluation rows' ``grid_tokens``)."""
    grid = e.distinct("grid_tokens")
    if len(grid) != 1:
        raise NotMeasured(f"no single grid size in the evaluation rows ({grid or 'none'})")
    return int(grid[0])


@finding(GRID_CONTROL, source="ours", reads=("evaluation",),
         quote="SPoT beats the fair control at sparse budgets: SPoT Isotropic is more accurate than the grid "
               "control (the same parent, recipe and budget schedule, trained on random grid patches) at every "
               "budget below the full grid.")
def grid_control(inputs, config, *, margin=MARGIN, prior=SAMPLING_PRIOR):
    """SPoT (``prior``) − the grid control on random grid patches (per-image mean over its seeds), per backbone and
    budget of ``evaluation.budgets`` below the full grid."""
    budgets = [int(b) for b in config_value(config, "evaluation.budgets")]
    e = rows(inputs, "evaluation").where(positions="placed", metric="acc1")
    statistic = f"Acc@1 SPoT {prior.capitalize()} − grid control on random grid patches (points)"
    for backbone in e.distinct("backbone"):
        f = e.where(backbone=backbone)
        try:
            full = _full_grid(f)
        except NotMeasured as missing:
            yield Verdict(GRID_CONTROL, label(config, backbone), statistic, NOT_MEASURED, note=str(missing))
            continue
        for budget in (b for b in budgets if b < full):
            g = f.where(budget=budget)

            def compute(g=g):
                d = paired(g.where(variant="spot", method="spot").scores(placement=prior),
                           g.where(variant="grid_control").scores(placement="grid_random"))
                return d, greater(d, margin), "grid control: per-image mean over its seeds"

            yield judge(GRID_CONTROL, f"{label(config, backbone)}, {budget} tokens", statistic, compute)


@finding(RETROFIT, source="ours", reads=("evaluation",),
         quote="Retrofitting keeps full-token accuracy within 1 point: SPoT Isotropic at the full grid against the "
               "parent ViT it was retrofitted from.")
def retrofit(inputs, config, *, tolerance=RETROFIT_TOLERANCE, prior=SAMPLING_PRIOR):
    """SPoT (``prior``) at the full grid − the parent ViT (PatchDropout at the full grid keeps every patch: the
    plain ViT), per backbone; holds when the interval lies above −``tolerance``."""
    e = rows(inputs, "evaluation").where(positions="placed", metric="acc1")
    for backbone in e.distinct("backbone"):
        f = e.where(backbone=backbone)

        def compute(f=f):
            g = f.where(budget=_full_grid(f))
            d = paired(g.where(variant="spot", method="spot").scores(placement=prior),
                       g.where(variant="parent", method="patchdropout").scores())
            return d, within(d, tolerance), f"tolerance {tolerance:g} points"

        yield judge(RETROFIT, label(config, backbone),
                    f"Acc@1 at the full grid, SPoT {prior.capitalize()} − parent ViT (points)", compute)
