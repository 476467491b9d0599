"""The learned placement's table and figure (ours; issue 31): every placement at the learned placement's total GFLOPs,
read from ``spot learned_placement`` tables (the equal-cost reading of :mod:`spot.findings.learned_claims`), with the
cross-model oracle (``spot transfer``) as the ceiling of placement alone and the pruning methods (``spot pruning``)
at the nearest cost they reach."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..findings.learned_claims import best_label_free, equal_cost, oracle_ceiling
from ..findings.measure import Rows, Scores
from ..findings.registry import NotMeasured
from ..stats import mean_interval, paired_difference
from ._common import label, read_results, set_interval
from .pruning import METHOD_LABELS, _flops_unit
from .registry import figure, table

__all__ = ["learned_placement_table", "figure_learned_placement", "figure_learned_positions"]


def _cell(row: dict, column: str, scores: Scores | None) -> None:
    """``row[column]``: the mean Acc@1 (%) of per-image ``scores`` with its 95 % interval columns."""
    if scores is None:
        row[column] = np.nan
        set_interval(row, column, (np.nan, np.nan))
        return
    i = mean_interval(scores.values)
    row[column] = i.value
    set_interval(row, column, (i.low, i.high))


def _reading(f: Rows, total: float, **keys):
    """The equal-cost reading of the rows matching ``keys`` at ``total`` GFLOPs, None where not measured."""
    r = f.where(**keys)
    if not len(r):
        return None
    try:
        return equal_cost(r, total)
    except NotMeasured:
        return None


def _pruning_points(inputs, backbone) -> pd.DataFrame:
    """Every pruning fine-tune (and ToMe) point of ``backbone``: GFLOPs ``g`` and Acc@1 ``acc`` indexed by
    (setting, method, keep_ratio); empty without pruning rows."""
    keys = ["setting", "method", "keep_ratio"]
    if not inputs.get("pruning"):
        return pd.DataFrame(columns=["g", "acc"], index=pd.MultiIndex.from_tuples([], names=keys))
    p = read_results(inputs, "pruning")
    p = p[(p.backbone == backbone) & (p.variant == "parent") & p.setting.fillna("").ne("")]
    g = p[p.metric == "gflops"].groupby(keys)["value"].mean()
    acc = p[p.metric == "acc1"].groupby(keys)["value"].mean()
    return pd.DataFrame({"g": g, "acc": acc}).dropna()


def _pruning_near(inputs, backbone, total: float) -> tuple[float, float, str]:
    """The pruning point closest in GFLOPs to ``total``: (Acc@1, its GFLOPs, its name); NaN without pruning rows."""
    both = _pruning_points(inputs, backbone)
    if not len(both):
        return np.nan, np.nan, ""
    best = both.assign(gap=(both.g - total).abs()).sort_values(["gap", "acc"], ascending=[True, False]).iloc[0]
    setting, method, rho = best.name
    return float(best.acc), float(best.g), f"{METHOD_LABELS.get(method, method)} (ρ = {rho:g})"


def _speed(f: pd.DataFrame, placement: str, budget: int) -> float:
    s = f[(f.metric == "images_per_s") & (f.placement == placement) & (f.budget == budget)]
    return float(s["value"].mean()) if len(s) else np.nan


def _budget_row(f: Rows, raw: pd.DataFrame, inputs, config, backbone, budget) -> dict:
    acc = f.where(metric="acc1")
    learned = acc.where(variant="spot", method="spot", placement="learned", budget=budget)
    total = float(learned.frame["gflops"].iloc[0])
    glance = float(learned.frame["placement_gflops"].iloc[0])
    grid = raw[raw.metric == "forward_gflops"]
    row = {"Model": label(config, backbone), "m": budget, "GFLOPs (total)": total,
           "Glance share (%)": 100 * glance / float(grid["value"].iloc[0]) if len(grid) else np.nan}
    ours = learned.scores()
    _cell(row, "Learned", ours)
    try:
        best = best_label_free(acc, total)
    except NotMeasured:
        best = None
    _cell(row, "Best label-free", best.scores if best else None)
    row["Best label-free is"] = "" if best is None else best.placement
    d = paired_difference(ours.values, best.scores.values) if best else None
    row["Δ vs best label-free (points)"] = d.difference if d else np.nan
    set_interval(row, "Δ vs best label-free (points)", (d.low, d.high) if d else (np.nan, np.nan))
    for column, keys in (("Shuffled", dict(variant="spot", placement="learned_shuffled", budget=budget)),
                         ("Joint", dict(variant="joint", placement="learned_joint", budget=budget)),
                         ("Joint control", dict(variant="joint_control", placement="learned_joint_control",
                                                budget=budget)),
                         ("Blank at learned positions", dict(variant="spot", placement="learned_blank", budget=budget)),
                         ("Joint, blank", dict(variant="joint", placement="learned_joint_blank", budget=budget))):
        r = acc.where(**keys)
        _cell(row, column, r.scores() if len(r) else None)
    for column, keys in (("Salient (true mask)", dict(variant="spot", method="spot", placement="salient")),
                         ("PatchDropout", dict(variant="parent", method="patchdropout")),
                         ("Grid control", dict(variant="grid_control", method="spot"))):
        e = _reading(acc, total, **keys)
        _cell(row, column, e.scores if e else None)
    oracle, _ = oracle_ceiling(inputs, backbone, budget)
    row["Cross-model oracle"] = oracle
    row["Gap closed (%)"] = 100 * (row["Learned"] - row["Best label-free"]) / (oracle - row["Best label-free"]) \
        if np.isfinite(oracle) and oracle > row["Best label-free"] else np.nan
    pruned, pruned_g, pruned_name = _pruning_near(inputs, backbone, total)
    row.update({"Pruning nearest in cost": pruned, "its GFLOPs": pruned_g, "Pruning method": pruned_name})
    for column, keys in (("Glance probe", dict(placement="glance_probe")),
                         ("Positions probe", dict(variant="spot", placement="positions_probe", budget=budget)),
                         ("Joint positions probe", dict(variant="joint", placement="positions_probe", budget=budget))):
        probe = acc.where(**keys)
        row[column] = float(probe.frame["value"].iloc[0]) if len(probe) else np.nan
    row["Learned (images/s)"] = _speed(raw, "learned", budget)
    row["Isotropic (images/s)"] = _speed(raw, "isotropic", budget)
    return row


@table("learned_placement", reads=("learned_placement", "transfer", "pruning"), optional=("transfer", "pruning"),
       caption="The learned placement at equal cost (ours): per backbone and budget m, the learned policy's Acc@1 (%) at its total GFLOPs per image (glance + SPoT forward; the glance's share of the SPoT forward on the full grid), the best label-free placement at exactly that cost (the priors and the relevance placement, each read between the two budgets that bracket it — best of on the same test images, optimistic for the priors) and the paired difference, the controls (the policy's positions shuffled across images; the policy tuned jointly with the model, and that tuning's control: the same tuning with tokens held at the Isotropic layout — the joint gain over it is the policy's), Salient reading the true mask, PatchDropout and the grid control at the same cost, the cross-model oracle (positions searched on another model, the best source) as the ceiling of placement alone and the gap closed towards it, the pruning fine-tune nearest in cost, the probes (a linear classifier on the policy's glance features alone, and on its positions alone), the model reading a blank image at the positions the policy gave the real one (what it reads from the positions alone; chance 1 / classes), and measured images/s (learned vs Isotropic at m). The CSV holds every Acc@1 cell's 95 % interval.")
def learned_placement_table(inputs, config) -> pd.DataFrame:
    raw = read_results(inputs, "learned_placement")
    lp = Rows("learned_placement", raw.drop(columns=[c for c in raw.columns if c.startswith("_")]))
    rows = []
    for backbone in lp.distinct("backbone"):
        f = lp.where(backbone=backbone)
        for budget in f.where(metric="acc1", placement="learned").distinct("budget"):
            rows.append(_budget_row(f, raw[raw.backbone == backbone], inputs, config, backbone, int(budget)))
    return _flops_unit(pd.DataFrame(rows))


def _curves(f: pd.DataFrame) -> dict:
    """One backbone's learned_placement rows as curves, label → (style, [(MFLOPs, Acc@1)]): every placement over its
    budgets (seeds averaged), each learned variant at its own total cost."""
    acc = f[f.metric == "acc1"]
    curves = {}
    for (variant, method, placement), g in acc.groupby(["variant", "method", "placement"], sort=False):
        if method == "probe" or str(placement).endswith("_blank"):  # the probes and blank controls: no curve
            continue
        points = sorted((1e3 * gg["gflops"].iloc[0], gg["value"].mean()) for _, gg in g.groupby("budget"))
        learned = str(placement).startswith("learned")
        name = {"parent": "PatchDropout", "grid_control": "Grid control"}.get(variant, str(placement))
        if bool(g["reads_true_mask"].astype(bool).any()):
            name += " (true mask)"
        style = "*-" if placement == "learned" else "D-" if learned else "s--" if variant != "spot" else "o-"
        curves[name] = (style, points)
    return curves


def _pruning_curves(inputs, backbone) -> dict:
    curves = {}
    for (setting, method), points in _pruning_points(inputs, backbone).groupby(level=[0, 1], sort=False):
        curves[f"{METHOD_LABELS.get(method, method)} (pruning)"] = (
            "^:", sorted(zip(1e3 * points.g, points.acc)))
    return curves


def _plain_log_ticks(ax):
    """A log x axis labelled 1, 2, 5, 10, 20, … (the MFLOPs span about a decade: no overlapping 3×10¹ labels)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


@figure("figure_learned_placement", reads=("learned_placement", "pruning"),
        caption="The learned placement at equal cost (ours): Acc@1 (%) against total MFLOPs per image (log scale; the glance and the relevance placement's coarse pass included) per backbone — every label-free placement over its budgets, Salient reading the true mask, PatchDropout and the grid control, the learned policy (stars) with its shuffled, jointly tuned and transferred variants, and every token-pruning fine-tune over its keep ratios.")
def figure_learned_placement(inputs, config):
    import matplotlib.pyplot as plt

    f = read_results(inputs, "learned_placement")
    backbones = list(dict.fromkeys(f["backbone"]))
    fig, axes = plt.subplots(1, len(backbones), figsize=(max(8.0, 4.6 * len(backbones)), 4.6), squeeze=False)
    panels = {b: {**_curves(f[f.backbone == b]), **_pruning_curves(inputs, b)} for b in backbones}
    names = list(dict.fromkeys(name for curves in panels.values() for name in curves))  # one colour per curve name
    for ax, backbone in zip(axes[0], backbones):
        for name, (style, points) in panels[backbone].items():
            i = names.index(name)
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name, markersize=9 if "*" in style
                    else 4, color="black" if name == "learned" else plt.get_cmap("tab20")(i % 20))
        _plain_log_ticks(ax)
        ax.set_xlabel("total MFLOPs per image")
        ax.set_ylabel("Acc@1 (%)")
        ax.set_title(label(config, backbone))
        ax.grid(alpha=0.3, which="both")
    handles = {}
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    columns = min(3 if len(backbones) < 2 else 5, max(1, len(handles)))
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=columns, fontsize=7, frameon=False)
    legend_inches = 0.2 + 0.2 * -(-len(handles) // columns)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    return fig


@figure("figure_learned_positions", reads=("learned_positions", "data"),
        caption="Where the learned policy reads (ours): the first test image of every class, per backbone and budget, with the tokens' windows at the positions its policy gives.")
def figure_learned_positions(inputs, config):
    import matplotlib.pyplot as plt

    from ..data.evaluation import EvalData
    from ..data.fmnist import FMNIST_CLASSES
    from .plotting import plot_positions

    split = (config.get("learned_placement") or {}).get("split", "test")
    stores = [(Path(p).name.split(".")[0], dict(np.load(p, allow_pickle=False))) for p in inputs["learned_positions"]]
    rows = [(backbone, key) for backbone, s in stores for key in sorted((k for k in s if k.startswith("m")),
                                                                       key=lambda k: int(k[1:]))]
    n = max(len(s["indices"]) for _, s in stores)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.5 * n, 1.6 * len(rows)), squeeze=False)
    folder = Path(inputs["data"][0]).parent
    for r, (backbone, key) in enumerate(rows):
        store = dict(stores)[backbone]
        d = EvalData.open(folder, split, indices=store["indices"])
        for j in range(n):
            ax = axes[r, j]
            if j >= len(store["indices"]):
                ax.axis("off")
                continue
            image = d.take([int(store["indices"][j])])[0]
            c = int(store["labels"][j])
            name = FMNIST_CLASSES[c] if d.kind == "fmnist" and c < len(FMNIST_CLASSES) else f"class {c}"
            plot_positions(image, store[key][j], tuple(int(v) for v in np.atleast_1d(store["patch"])), ax=ax,
                           title=name if r == 0 else None, marker_size=4)
            if j == 0:
                ax.text(-0.08, 0.5, f"{label(config, backbone)}\n{key[1:]} tokens", transform=ax.transAxes,
                        rotation=90, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    return fig
