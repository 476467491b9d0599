"""The paper's figures: one registered builder each, ``build(inputs, config) -> matplotlib Figure`` (see
:mod:`spot.paper.registry`); figures that draw images read the dataset folder of the ``data`` manifest.
matplotlib and torch are imported by the builders, so the registry stays importable without them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._common import evaluation_rows, label, mean_std, oracle_rows, prior_label, prior_order, read_results
from .registry import figure


def _data_folder(inputs) -> Path:
    """The prepared dataset's folder: where its manifest (the ``data`` input) lies."""
    return Path(inputs["data"][0]).parent


def _examples(inputs) -> dict:
    """The first backbone's ``examples`` table (``spot examples``), its first image: ``{(figure, placement,
    positions): (budget, (m, 2) positions)}`` with the image's ``index``, ``split``, ``patch`` and ``image_size``."""
    import torch

    frame = pd.read_csv(inputs["examples"][0])
    first = frame[frame.image == frame.image.iloc[0]]
    out = {"index": int(first.image.iloc[0]), "split": str(first.split.iloc[0]), "patch": int(first.patch.iloc[0]),
           "image_size": (int(first.image_height.iloc[0]), int(first.image_width.iloc[0]))}
    for (figure, placement, positions, budget), g in first.groupby(["figure", "placement", "positions", "budget"],
                                                                   sort=False):
        coords = g.pivot(index="token", columns="metric", values="value").sort_index()
        out[(int(figure), placement, positions)] = (int(budget), torch.tensor(coords[["y", "x"]].to_numpy().copy(),
                                                                             dtype=torch.float64))
    return out


def _image(inputs, examples: dict):
    """The example image (C, H, W) the positions were measured on, for drawing."""
    from ..data.evaluation import EvalData

    d = EvalData.open(_data_folder(inputs), examples["split"], indices=[examples["index"]],
                      img_size=examples["image_size"][0])
    return d.take([examples["index"]])[0]


def _placed(examples: dict, figure: int, placement: str, positions: str = "placed"):
    """(budget, (m, 2) positions) of one placement of a figure in the examples table."""
    return examples[(figure, placement, positions)]


@figure("figure1", reads=("examples", "data"),
        caption="Figure 1: patch tokenization on the grid, a sparse subset of grid patches, and subpixel windows at the Center prior's positions, on an evaluation image.")
def figure1(inputs, config):
    """Figure 1: patch tokenization on the grid, a sparse subset of grid patches, and subpixel windows."""
    import matplotlib.pyplot as plt

    from .plotting import plot_positions

    ex = _examples(inputs)
    image, patch = _image(inputs, ex), ex["patch"]
    (n, grid), (m, subset), (_, center) = (_placed(ex, 1, p) for p in ("grid", "grid_random", "center"))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    plot_positions(image, grid, patch, ax=axes[0], grid_patch=patch, title=f"patch grid ({n} tokens)")
    plot_positions(image, subset, patch, ax=axes[1], grid_patch=patch, color="tab:orange",
                   title=f"{m} random grid patches")
    plot_positions(image, center, patch, ax=axes[2], grid_patch=patch, title=f"SPoT: {m} subpixel windows (Center)")
    fig.tight_layout()
    return fig


@figure("figure2", reads=("examples", "data"),
        caption="Figure 2: grid misalignment — the object's centre falls between patches; a subpixel window sits on it.")
def figure2(inputs, config):
    """Figure 2: grid misalignment — the object's centre falls between patches; a subpixel window sits on it."""
    import matplotlib.pyplot as plt

    from .plotting import plot_positions

    ex = _examples(inputs)
    image, patch = _image(inputs, ex), ex["patch"]
    (_, centre), (_, snapped) = _placed(ex, 2, "object_centre"), _placed(ex, 2, "object_centre", "snapped")
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    plot_positions(image, snapped, patch, ax=axes[0], grid_patch=patch, color="tab:orange",
                   title="nearest grid patch")
    plot_positions(image, centre, patch, ax=axes[1], grid_patch=patch, title="subpixel window at the centre")
    fig.tight_layout()
    return fig


@figure("figure3", reads=("examples", "data"),
        caption="Figure 3: the spatial priors (Uniform, Gaussian, Sobol, Isotropic, Center, Salient, Background, Boundary) on an evaluation image.")
def figure3(inputs, config):
    """Figure 3: the spatial priors (Uniform, Gaussian, Sobol, Isotropic, Center, Salient, Background, Boundary)."""
    import matplotlib.pyplot as plt

    from .plotting import plot_positions

    ex = _examples(inputs)
    image, patch = _image(inputs, ex), ex["patch"]
    priors = {k[1].split("(")[0]: k[1] for k in ex if isinstance(k, tuple) and k[0] == 3}  # name → label
    drawn = [p for p in prior_order() if p in priors]
    if len(drawn) < len(prior_order()):  # the examples job could not compute saliency maps: said here
        print(f"figure 3: not in the examples table (no saliency maps): {sorted(set(prior_order()) - set(drawn))}")
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
    for ax, name in zip(axes.flat, drawn):
        m, positions = _placed(ex, 3, priors[name])
        plot_positions(image, positions, patch, ax=ax, title=f"{name.capitalize()} ({m})")
    for ax in list(axes.flat)[len(drawn):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


@figure("figure4", reads=("trajectories", "examples", "data"),
        caption="Figure 4: SPoT-ON trajectories from the Isotropic prior at the sparse budget (dark → bright), for the first images of the oracle's set; ✓/✗: classified correctly at the final positions.")
def figure4(inputs, config):
    """Figure 4: SPoT-ON trajectories (dark → bright) from the Isotropic prior for the first stored images."""
    import matplotlib.pyplot as plt

    from ..data.evaluation import EvalData
    from .plotting import plot_positions

    files = list(inputs["trajectories"])
    stores = [dict(np.load(p, allow_pickle=False)) for p in files]
    n_cols = min(4, min(int(s["positions"].shape[2]) for s in stores))
    n_rows = sum(len(s["models"]) for s in stores)
    patch = _examples(inputs)["patch"]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.8 * n_rows), squeeze=False)
    row = 0
    for store in stores:
        indices = store["indices"]
        d = EvalData.open(_data_folder(inputs), config["oracle"]["split"], indices=indices[:n_cols])
        for mi, model in enumerate(store["models"]):
            for j in range(n_cols):
                image = d.take([int(indices[j])])[0]
                traj = store["positions"][mi, :, j]
                ok = "✓" if bool(store["final_correct"][mi, j] if store["final_correct"].ndim > 1
                                  else store["final_correct"][j]) else "✗"
                plot_positions(image, None, patch, ax=axes[row, j], trajectory=traj,
                               title=f"{label(config, str(model))} {ok}" if j == 0 else ok)
            row += 1
    fig.suptitle(f"SPoT-ON trajectories, {int(store['budget'])} tokens, lr {float(store['lr']):g}, "
                 f"{int(store['steps'])} steps")
    _trajectory_key(fig, axes, int(store["steps"]))
    return fig


def _trajectory_key(fig, axes, steps: int) -> None:
    """What Figure 4's colours mean: the search step along each token's path (the colour bar), and the window at
    its final position (the legend)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    fig.tight_layout(rect=(0, 0.07, 1, 1))
    bar = fig.add_axes((0.12, 0.035, 0.45, 0.012))
    fig.colorbar(ScalarMappable(Normalize(0, steps), "plasma"), cax=bar, orientation="horizontal",
                 label="search step (path from the Isotropic start, dark, to the final position, bright)")
    fig.legend(handles=[Patch(fill=False, edgecolor="tab:green", label="window at the final position")],
               loc="lower right", bbox_to_anchor=(0.98, 0.01), fontsize=8, frameon=False)


def _throughput(inputs) -> pd.DataFrame:
    tp = read_results(inputs, "throughput")
    return tp[tp.metric == "images_per_s"]


def _speeds(tp: pd.DataFrame, backbone: str, method: str) -> pd.Series:
    """Images/s per budget of a method on its model — SPoT on the SPoT model, PatchDropout on the grid ViT (the
    parent) —: the best over the batch sizes measured (each the median of repeats), so that a budget whose small batch
    is launch-bound on a GPU is read at a batch that fills it."""
    variant = "spot" if method == "spot" else "parent"
    f = tp[(tp.backbone == backbone) & (tp.variant == variant) & (tp.method == method)]
    if "setting" in f:  # the pruning comparison's own timings (other budgets) are not Figure 5's
        f = f[f["setting"].isna()]
    return f.groupby("budget")["value"].max().sort_index()


def _spot_acc1(frame: pd.DataFrame, budgets) -> pd.DataFrame:
    """Mean Acc@1 over seeds of SPoT (the SPoT model, placed positions) per backbone, prior and budget."""
    f = frame[(frame.variant == "spot") & (frame.method == "spot") & (frame.positions == "placed") &
              (frame.metric == "acc1") & frame.budget.isin(budgets)]
    return mean_std(f, ["backbone", "placement", "budget"])[["backbone", "placement", "budget", "mean"]]


def spot_choice(inputs, config) -> dict[int, tuple[str, str, float]]:
    """Figure 5's SPoT point per budget, chosen on validation and reported on test: ``{budget: (backbone, prior,
    test Acc@1)}`` — the (backbone, prior) with the best Acc@1 on ``prior_selection.split`` (the ``prior_selection``
    results), and that pair's Acc@1 on the evaluation's split (mean over seeds). Only pairs measured in both count
    (the evaluation's priors among the candidates, the run's backbones); a budget with none has no point."""
    budgets = list(config["evaluation"]["budgets"])
    val = _spot_acc1(read_results(inputs, "prior_selection"), budgets)
    test = _spot_acc1(evaluation_rows(inputs), budgets)
    both = val.merge(test, on=["backbone", "placement", "budget"], suffixes=("_val", "_test"))
    both = both[both.backbone.isin(list(config["backbones"]))]
    best = both.loc[both.groupby("budget")["mean_val"].idxmax()]
    return {int(r.budget): (str(r.backbone), str(r.placement), float(r.mean_test)) for r in best.itertuples()}


SALIENCY_SOURCES = {  # saliency.source → what Salient reads, as Figure 5's label says it
    "article_mask": "the article mask", "clipseg": "CLIPSeg maps", "spectral_residual": "spectral-residual maps"}


def _choice_label(choice: dict, config) -> str:
    """The SPoT line's label: where the backbone and prior were chosen, and — when a chosen prior places tokens on
    the saliency map (Salient, Background) — what that map is (``saliency.source``)."""
    from ..core.placement import PRIORS

    split, reported = config["prior_selection"]["split"], config["evaluation"]["split"]
    where = f"chosen on {split}" + (", the reported split" if split == reported else f", reported on {reported}")
    names = dict.fromkeys(prior.split("(")[0] for _, prior, _ in choice.values())
    readers = [prior_label(n) for n in names if n in PRIORS and PRIORS[n].needs_saliency]
    source = config["saliency"]["source"]
    reads = f"; {' and '.join(readers)} read{'s' if len(readers) == 1 else ''} " \
            f"{SALIENCY_SOURCES.get(source, source)}" if readers else ""
    return f"SPoT (backbone and prior {where}{reads})"


def _at_spot_backbone(frame: pd.DataFrame, column: str, choice: dict, speeds: dict) -> dict:
    """budget → (images/s, mean ``value``) of ``frame``'s rows whose ``column`` is the backbone chosen for SPoT at
    that budget (no second choice on the reported split)."""
    points = {}
    for b, (backbone, _, _) in choice.items():
        v = frame[(frame[column] == backbone) & (frame.budget == b)]["value"]
        if len(v) and b in speeds[backbone].index:
            points[b] = (float(speeds[backbone][b]), float(v.mean()))
    return points


def _shade_gaps(ax, spot: dict, others, budgets) -> None:
    """The gap from the SPoT line to each of ``others`` ((points, colour, label)): the first filled, the next
    hatched in their colour, so that where two gaps overlap both stay readable (two fills would blend to grey)."""
    for i, (points, color, name) in enumerate(others):
        common = [b for b in budgets if b in spot and b in points]
        if not common:
            continue
        x, low, high = [spot[b][0] for b in common], [spot[b][1] for b in common], [points[b][1] for b in common]
        if i == 0:
            ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0, label=name)
        else:
            ax.fill_between(x, low, high, facecolor="none", edgecolor=color, hatch="////", alpha=0.5, linewidth=0,
                            label=name)


@figure("figure5", reads=("throughput", "evaluation", "prior_selection", "oracle", "transfer"),
        caption="Figure 5: Acc@1 (%) against throughput (images/s) at every budget: the grid ViTs with PatchDropout; SPoT at the backbone and prior with the best Acc@1 on prior_selection's split (validation on the canvases; at paper scale ImageNet's val, the reported split), drawn at that pair's Acc@1 on the evaluation's split, each point labelled with its prior and backbone; SPoT-ON on the backbone chosen for SPoT at that budget; and SPoT-ON's positions searched on another model, evaluated on that same backbone (cross-model, ours: the oracle's gain without the label written into the positions for the model evaluated); the gap from SPoT to each shaded, and the ceiling band where the config gives one.")
def figure5(inputs, config):
    """Figure 5 as the paper draws it: one panel, Acc@1 vs throughput at every budget — the grid ViT of each backbone
    with PatchDropout, SPoT at its configuration chosen per budget on validation (:func:`spot_choice`: the paper
    takes the best backbone and prior; here chosen on ``prior_selection``'s split, reported on the evaluation's), and
    SPoT-ON on the backbone chosen for SPoT —, one point per budget sized by its token count, the *gap* between SPoT
    and SPoT-ON shaded; the same gap to the cross-model oracle (the SPoT backbone evaluated at SPoT-ON positions
    searched on another model, the mean over sources) — the oracle's gain with the steering of the evaluated model
    taken out —; and the *ceiling* band (``figures.figure5.ceiling``: ImageNet's label noise, Beyer et al. 2020; none
    for a benchmark without a published one)."""
    import matplotlib.pyplot as plt

    ceiling = ((config.get("figures") or {}).get("figure5") or {}).get("ceiling")
    budgets = list(config["evaluation"]["budgets"])
    tp = _throughput(inputs)
    e = evaluation_rows(inputs)
    e = e[(e.positions == "placed") & (e.metric == "acc1") & e.budget.isin(budgets)]
    acc = mean_std(e, ["backbone", "variant", "method", "placement", "budget"])
    o = oracle_rows(inputs)
    on = o[(o.experiment == "table5") & (o.placement == "spot_on") & (o.metric == "acc1")]
    t = read_results(inputs, "transfer")
    cross = t[(t.placement == "spot_on") & (t.metric == "transfer_acc1") & (t.source != t.target)]
    fig, ax = plt.subplots(figsize=(7.6, 6.0))
    size = {b: 12 + 140 * b / max(budgets) for b in budgets}

    def draw(points: dict, style: str, label: str, **kw):
        """points: budget → (images/s, Acc@1)."""
        bs = [b for b in budgets if b in points]
        if not bs:
            return
        x, y = [points[b][0] for b in bs], [points[b][1] for b in bs]
        line = ax.plot(x, y, style, label=label, **kw)[0]
        ax.scatter(x, y, s=[size[b] for b in bs], color=line.get_color(), zorder=3)

    for backbone in config["backbones"]:
        a = acc[(acc.backbone == backbone) & (acc.variant == "parent") & (acc.method == "patchdropout")]
        speed = _speeds(tp, backbone, "patchdropout")
        draw({int(r.budget): (float(speed[r.budget]), float(r["mean"])) for _, r in a.iterrows()
              if r.budget in speed.index}, "--", f"ViT {label(config, backbone)} + PatchDropout", alpha=0.8)
    choice = spot_choice(inputs, config)
    speeds = {backbone: _speeds(tp, backbone, "spot") for backbone in config["backbones"]}
    spot = {b: (float(speeds[bb][b]), v) for b, (bb, _, v) in choice.items() if b in speeds[bb].index}
    best_on = _at_spot_backbone(on, "backbone", choice, speeds)
    best_cross = _at_spot_backbone(cross, "target", choice, speeds)
    draw(spot, "-", _choice_label(choice, config), color="tab:blue", linewidth=2)
    draw(best_on, ":", "SPoT-ON (SPoT's backbone)", color="black")
    draw(best_cross, "-.", "SPoT-ON positions from another model (SPoT's backbone)", color="tab:purple")
    _shade_gaps(ax, spot, ((best_on, "tab:green", "gap"), (best_cross, "tab:purple", "gap, cross-model")), budgets)
    _label_choices(ax, spot, choice, config, size)
    if ceiling:
        ax.axhspan(float(ceiling["from"]), float(ceiling.get("to", 100.0)), color="tab:red", alpha=0.12,
                   label=f"ceiling ({ceiling.get('source', 'label noise')})")
    ax.set_xscale("log")
    ax.set_xlabel("throughput (images/s); points sized by tokens")
    ax.set_ylabel("Acc@1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)  # off the data
    fig.tight_layout()
    return fig


def _label_choices(ax, spot: dict, choice: dict, config, size: dict) -> None:
    """Each SPoT point's budget, prior and backbone, beside its marker (whose radius grows with the budget), on the
    side toward the middle of the line, on a light box."""
    xs = sorted(x for x, _ in spot.values())
    for b, (x, y) in spot.items():
        backbone, prior = choice[b][:2]
        side = -1 if len(xs) > 1 and x >= xs[len(xs) // 2] else 1
        offset = 4 + size[b] ** 0.5 / 2
        ax.annotate(f"{b} tok.: {prior_label(prior)}, {label(config, backbone)}", (x, y), textcoords="offset points",
                    xytext=(side * offset, -offset), fontsize=6, ha="left" if side > 0 else "right", va="top",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8), zorder=4)


@figure("figure5b", reads=("throughput", "evaluation", "oracle"),
        caption="Figure 5, one panel per backbone: Acc@1 (%) against throughput (images/s) for SPoT (Isotropic, Center), the grid ViT with PatchDropout and SPoT-ON.")
def figure5_per_backbone(inputs, config):
    """Figure 5, one panel per backbone: Acc@1 vs throughput (images/s) at every budget for SPoT (Isotropic,
    Center), PatchDropout on the grid ViT, and SPoT-ON (the oracle's placement)."""
    import matplotlib.pyplot as plt

    tp = _throughput(inputs)
    e = evaluation_rows(inputs)
    acc = mean_std(e[(e.metric == "acc1") & (e.positions == "placed")],
                   ["backbone", "variant", "method", "placement", "budget"])
    o = oracle_rows(inputs)
    on = o[(o.experiment == "table5") & (o.placement == "spot_on") & (o.metric == "acc1")]
    backbones = list(dict.fromkeys(acc["backbone"]))
    fig, axes = plt.subplots(1, len(backbones), figsize=(4.6 * len(backbones), 3.8), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        spot_speed = _speeds(tp, backbone, "spot")
        pd_speed = _speeds(tp, backbone, "patchdropout")
        a = acc[acc.backbone == backbone]
        series = [("SPoT (Isotropic)", a[(a.variant == "spot") & (a.method == "spot") & (a.placement == "isotropic")],
                   spot_speed, "o-"),
                  ("SPoT (Center)", a[(a.variant == "spot") & (a.method == "spot") & (a.placement == "center")],
                   spot_speed, "s-"),
                  ("ViT + PatchDropout", a[(a.variant == "parent") & (a.method == "patchdropout")], pd_speed, "^--")]
        for name, f, sp, style in series:
            f = f[f.budget.isin(sp.index)].sort_values("budget")
            if len(f):
                ax.plot(sp.loc[f.budget].values, f["mean"].values, style, label=name)
        f_on = on[(on.backbone == backbone) & on.budget.isin(spot_speed.index)].groupby("budget")["value"].mean()
        if len(f_on):
            ax.plot(spot_speed.loc[f_on.index].values, f_on.values, "*:", label="SPoT-ON (Isotropic init)")
        for b, x in spot_speed.items():
            ax.annotate(str(b), (x, ax.get_ylim()[0]), fontsize=7, ha="center", va="bottom", alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("throughput (images/s)")
        ax.set_ylabel("Acc@1 (%)")
        ax.set_title(label(config, backbone))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig
