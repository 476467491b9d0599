"""The paper's tables and figures, built from a run's result tables (the notebooks in notebooks/ call these).

``build_table(n, results, config)`` → a pandas DataFrame laid out as Table n of the paper (rows and columns as
published, numbers as measured by this run — never typed in, except Table 8's ElasticViT row, which is the
published result of Pardyl et al. (2025) and labelled as such); ``write_table_files`` writes it as CSV, Markdown and
LaTeX with a provenance sidecar listing the result files (and their sha256) it was computed from.
``build_figure(n, results, config, data=)`` → a matplotlib figure; ``write_figure_files`` → PDF + PNG + sidecar.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .priors import PRIORS
from .provenance import atomic_write_json, atomic_write_text, provenance, sha256_file

__all__ = ["build_table", "build_figure", "write_table_files", "write_figure_files", "ELASTICVIT_TABLE8"]

# Table 8 of the paper: ElasticViT's *published* ImageNet-1k accuracies (Pardyl et al., 2025), tokens → Acc@1 (%).
ELASTICVIT_TABLE8 = {39: 67.17, 59: 72.65, 78: 75.47, 98: 77.47, 118: 78.18, 137: 79.73, 157: 80.81, 176: 81.31,
                     196: 82.04}


def _config(config) -> dict:
    if isinstance(config, dict):
        return config
    from .recipes import load_config

    return load_config(config)


# which result table a CSV is, told by a column only that command writes
_KINDS = {"evaluation": "model_format", "oracle": "experiment", "transfer": "source", "throughput": "images_per_s"}


def _read(paths, kind: str) -> pd.DataFrame:
    """The rows of every ``kind`` result table among ``paths`` (evaluation, oracle, transfer or throughput)."""
    frames = []
    for p in paths:
        if str(p).endswith(".csv"):
            frame = pd.read_csv(p)
            if _KINDS[kind] in frame.columns and (kind != "oracle" or "source" not in frame.columns):
                frames.append(frame)
    if not frames:
        raise ValueError(f"no {kind} result table among {list(map(str, paths))}")
    return pd.concat(frames, ignore_index=True)


def _label(config: dict, model: str) -> str:
    """Backbone label (CLS-IN1k …) of a row's model name ``family:variant`` or ``family``."""
    family = str(model).split(":")[0]
    return config.get("backbones", {}).get(family, {}).get("label", family)


# ------------------------------------------------------------------------------------------------------ writing

def _sidecar(path: Path, inputs, extra=None) -> None:
    ins = {str(p): sha256_file(p) for p in inputs if Path(p).is_file()}
    for p in inputs:  # the result tables' own provenance sidecars are part of the chain
        side = Path(p).with_suffix(".json")
        if side.is_file() and str(side) not in ins:
            ins[str(side)] = sha256_file(side)
    atomic_write_json(path, {"output": path.stem, "inputs": ins, **(extra or {}), "provenance": provenance()})


def write_table_files(frame: pd.DataFrame, out_dir, stem: str, inputs=()) -> list[Path]:
    """``stem.csv``, ``stem.md``, ``stem.tex`` and ``stem.provenance.json`` in ``out_dir`` (atomic)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.csv", out_dir / f"{stem}.md", out_dir / f"{stem}.tex"]
    atomic_write_text(paths[0], frame.to_csv(index=False))
    atomic_write_text(paths[1], frame.to_markdown(index=False, floatfmt=".2f") + "\n")
    atomic_write_text(paths[2], frame.to_latex(index=False, float_format="%.2f", escape=True))
    _sidecar(out_dir / f"{stem}.provenance.json", inputs, {"files": [p.name for p in paths]})
    return paths + [out_dir / f"{stem}.provenance.json"]


def write_figure_files(fig, out_dir, stem: str, inputs=()) -> list[Path]:
    """``stem.pdf`` and ``stem.png`` (atomic: drawn to a temporary name, then renamed) plus a provenance sidecar."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("pdf", "png"):
        path = out_dir / f"{stem}.{ext}"
        tmp = out_dir / f".{stem}.tmp.{ext}"
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(path)
        paths.append(path)
    plt.close(fig)
    _sidecar(out_dir / f"{stem}.provenance.json", inputs, {"files": [p.name for p in paths]})
    return paths + [out_dir / f"{stem}.provenance.json"]


# ------------------------------------------------------------------------------------------------------ tables

def _sampler(t) -> str:
    """Table 7's sampler cell: the prior, budget range, jitter and full-grid share of subpixel training."""
    if t.mode != "subpixel":
        return t.mode
    full = f"; full grid {t.full_share:.0%} of batches" if t.full_share else ""
    return f"{t.prior} (m ∈ [{t.min_tokens}, {t.max_tokens or 'grid'}], jitter {t.jitter}{full})"


def table7(results, config) -> pd.DataFrame:
    """Table 7: the retrofitting protocols of this run, from the run's resolved recipes (the workflow re-trains when
    a recipe changes, so these are the settings the models were trained with; each model's record has them too)."""
    config = _config(config)
    from .recipes import load_recipe

    cols = {}
    for family, b in config.get("backbones", {}).items():
        stages = [load_recipe(config, r) for r in b["retrofit"]]
        for stage_index, r in enumerate(stages):
            label = b["label"] + (" (fine-tune)" if stage_index else "")
            o, s = r.optimizer, r.schedule
            cols[label] = {
                "sampler": _sampler(r.tokens),
                "batch size": r.batch_size, "epochs": r.epochs, "dataset": r.data.kind,
                "loss fn.": "MSE" if r.task == "mae" else f"CE ({r.label_smoothing} smooth.)",
                "optimizer": o.name, "momentum": ", ".join(map(str, o.betas)),
                "lr.sched.": f"{s.name} ({s.warmup_epochs} w.u.)", "lr": f"{r.lr:.0e}",
                "dropout path": r.model.drop_path, "opt. ε": f"{o.eps:.0e}",
                "augment": ("rrc / " + (r.data.randaug or "—")) if r.data.kind == "imagenet" else
                           f"flip {r.data.hflip} / shift ±{r.data.translate}px",
                "mixup α": r.mixup.mixup_alpha, "cutmix α": r.mixup.cutmix_alpha,
                "llrd": o.layer_decay if o.layer_decay is not None else "—",
            }
    frame = pd.DataFrame(cols)
    frame.index.name = "config"
    return frame.reset_index()


# ------------------------------------------------------------------------------------------------------ figures 1–3

def _geometry(config: dict) -> tuple[int, int]:
    """(patch size, grid token count) of the run's first backbone."""
    from .factory import create_backbone
    from .recipes import load_recipe

    family = next(iter(config["backbones"].values()))
    kind, name = family["classifier"].split(":", 1)
    if kind == "train":
        r = load_recipe(config, name)
        kwargs = dict(r.model.timm_kwargs)
        for key in ("img_size", "in_chans", "num_classes"):
            if getattr(r.model, key) is not None:
                kwargs[key] = getattr(r.model, key)
        vit = create_backbone(r.model.backbone, **kwargs)
    else:
        vit = create_backbone(name)
    return int(vit.patch_embed.patch_size[0]), int(vit.patch_embed.num_patches)


def _example(data, index: int = 0):
    """An evaluation image (H, W[, C]) for drawing, its saliency-free footprint info, and the EvalData."""
    from .data.evaluation import EvalData

    d = EvalData.open(data, "test" if (Path(data) / "test.npz").is_file() else "val", indices=[index])
    return d.take([index])[0], d


def figure1(results, config, data):
    """Figure 1: patch tokenization on the grid, a sparse subset of grid patches, and subpixel windows."""
    import matplotlib.pyplot as plt
    import torch

    from .plotting import plot_positions
    from .positions import grid_positions
    from .priors import sample_positions

    config = _config(config)
    patch, n = _geometry(config)
    image, _ = _example(data)
    size = tuple(image.shape[-2:])
    m = config["oracle"]["sparse_budget"]
    grid = grid_positions(size, patch)
    keep = torch.randperm(len(grid), generator=torch.Generator().manual_seed(0))[:m]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    plot_positions(image, grid, patch, ax=axes[0], grid_patch=patch, title=f"patch grid ({n} tokens)")
    plot_positions(image, grid[keep], patch, ax=axes[1], grid_patch=patch, color="tab:orange",
                   title=f"{m} random grid patches")
    plot_positions(image, sample_positions("center", m, 1, size)[0], patch, ax=axes[2], grid_patch=patch,
                   title=f"SPoT: {m} subpixel windows (Center)")
    fig.tight_layout()
    return fig


def figure2(results, config, data):
    """Figure 2: grid misalignment — the object's centre falls between patches; a subpixel window sits on it."""
    import matplotlib.pyplot as plt
    import torch

    from .plotting import plot_positions
    from .positions import snap_to_grid

    config = _config(config)
    patch, _ = _geometry(config)
    image, d = _example(data)
    size = tuple(image.shape[-2:])
    if "top_left" in d.extras:  # the canvas benchmark knows where the article is: its centre
        from .data.fmnist import ARTICLE

        centre = (torch.tensor(d.extras["top_left"][int(d.index[0])], dtype=torch.float64) + ARTICLE / 2) / \
            torch.tensor(size)
    else:  # otherwise the image's centre of mass of |x|
        w = image.abs().sum(0) if image.dim() == 3 else image.abs()
        ys, xs = torch.meshgrid(torch.arange(size[0]) + 0.5, torch.arange(size[1]) + 0.5, indexing="ij")
        centre = torch.stack([(w * ys).sum() / w.sum() / size[0], (w * xs).sum() / w.sum() / size[1]]).double()
    snapped = snap_to_grid(centre[None], size, patch)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    plot_positions(image, snapped, patch, ax=axes[0], grid_patch=patch, color="tab:orange",
                   title="nearest grid patch")
    plot_positions(image, centre[None], patch, ax=axes[1], grid_patch=patch, title="subpixel window at the centre")
    fig.tight_layout()
    return fig


def figure3(results, config, data):
    """Figure 3: the spatial priors (Uniform, Gaussian, Sobol, Isotropic, Center, Salient, Background, Boundary)."""
    import matplotlib.pyplot as plt
    import torch

    from .plotting import plot_positions
    from .priors import make_prior, sample_positions
    from .saliency import SaliencySettings, saliency_maps

    config = _config(config)
    patch, n = _geometry(config)
    image, d = _example(data)
    size = tuple(image.shape[-2:])
    m = config["evaluation"]["budgets"][1] if len(config["evaluation"]["budgets"]) > 1 else n // 4
    priors = list(PRIOR_ORDER)
    saliency = None
    try:
        from .recipes import settings_from_dict

        settings = settings_from_dict(SaliencySettings, config.get("saliency"), "saliency")
        saliency = saliency_maps(d, torch.arange(1), settings)[0]
    except (ValueError, FileNotFoundError, ImportError) as err:  # drawn without the saliency priors, said in the title
        priors = priors[:5] + ["boundary"]
        print(f"figure 3: saliency unavailable ({err}); salient/background not drawn")
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
    for ax, name in zip(axes.flat, priors):
        g = torch.Generator().manual_seed(0)
        pos = sample_positions(name, m, 1, size, generator=g,
                               saliency=saliency if make_prior(name).needs_saliency else None)[0]
        plot_positions(image, pos, patch, ax=ax, title=f"{name.capitalize()} ({m})")
    for ax in list(axes.flat)[len(priors):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------ tables 1–6, 8

PRIOR_ORDER = list(PRIORS)  # the paper's order: Uniform, Gaussian, Sobol, Isotropic, Center, Salient, Background, Boundary


def _mean_std(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and (sample) std over seeds of ``value`` per ``keys`` (std 0 when a prior is deterministic)."""
    g = frame.groupby(keys, dropna=False)["value"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _pm(mean, std) -> str:
    return f"{mean:.2f}" if not std else f"{mean:.2f} ± {std:.2f}"


def _family(model: str) -> str:
    return str(model).split(":")[0]


def _oracle(results) -> pd.DataFrame:
    frame = _read(results, "oracle")
    frame["family"] = frame["model"].map(_family)
    return frame


def _evaluation(results) -> pd.DataFrame:
    frame = _read(results, "evaluation")
    frame["family"] = frame["model"].map(_family)
    frame["variant"] = frame["model"].map(lambda m: str(m).split(":")[1] if ":" in str(m) else "")
    return frame


def table1(results, config) -> pd.DataFrame:
    """Table 1: SPoT vs SPoT-ON at the sparse budget, the oracle's final positions kept subpixel or snapped to the
    grid; with the mean token displacement (px) and the share of tokens that changed grid cell."""
    config = _config(config)
    o = _oracle(results)
    o = o[o["experiment"] == "table1"]
    rows = []
    for family, f in o.groupby("family", sort=False):
        def val(method, setting, positions, metric):
            v = f[(f.method == method) & (f.setting == setting) & (f.positions == positions) & (f.metric == metric)]
            return float(v["value"].iloc[0]) if len(v) else np.nan

        base = {"Model": _label(config, family), "Tokens": int(f["budget"].iloc[0])}
        rows.append({**base, "Method": "SPoT", "Positions": "–", "lr": "–", "Steps": "–",
                     "Acc@1 (%)": val("spot", "none", "subpixel", "acc1"), "Mean displacement (px)": np.nan,
                     "Tokens changing cell (%)": np.nan})
        settings = [s for s in f["setting"].unique() if s != "none"]
        for positions, label in (("snapped", "Grid"), ("subpixel", "Subpixel")):
            for setting in settings:
                lr, steps = (kv.split("=")[1] for kv in setting.split(","))
                rows.append({**base, "Method": "SPoT-ON", "Positions": label, "lr": lr, "Steps": steps,
                             "Acc@1 (%)": val("spot_on", setting, positions, "acc1"),
                             "Mean displacement (px)": val("spot_on", setting, "subpixel", "displacement_px"),
                             "Tokens changing cell (%)": val("spot_on", setting, "subpixel", "cells_changed")})
    return pd.DataFrame(rows)


def _setting_label(setting: str) -> str:
    """``lr=0.003,steps=5`` → ``lr 0.003 × 5 steps``."""
    values = dict(kv.split("=") for kv in str(setting).split(","))
    return f"lr {values['lr']} × {values['steps']} steps"


def table2(results, config) -> pd.DataFrame:
    """Table 2: per prior at the sparse budget, SPoT kNN (mean ± std over seeds) and Acc@1, and the oracle gain for
    every oracle setting: §4.2's stated one (``oracle.prior_setting``) first, then the others (the paper's own
    numbers imply 1e-2 × 10: Isotropic + Δ = Table 5's SPoT-ON)."""
    config = _config(config)
    budget = config["oracle"]["sparse_budget"]
    e = _evaluation(results)
    e = e[(e.variant == "spot") & (e.method == "SPoT") & (e.budget == budget)]
    stats = _mean_std(e, ["family", "prior", "metric"])
    o = _oracle(results)
    delta = o[(o.experiment == "table2") & (o.metric == "oracle_delta")]
    settings = list(dict.fromkeys(delta["setting"]))
    stated = config["oracle"]["settings"][config["oracle"].get("prior_setting", 0)]
    stated = f"lr={float(stated['lr']):g},steps={int(stated['steps'])}"
    settings.sort(key=lambda st: st != stated)  # stable: the stated setting first
    rows = []
    for family in stats["family"].unique():
        for prior in [p for p in PRIOR_ORDER if p in set(stats.prior)]:
            def get(metric):
                r = stats[(stats.family == family) & (stats.prior == prior) & (stats.metric == metric)]
                return (float(r["mean"].iloc[0]), float(r["std"].iloc[0])) if len(r) else (np.nan, 0.0)

            knn, acc = get("knn"), get("acc1")
            row = {"Model": f"SPoT {_label(config, family)}", "Prior": prior.capitalize(),
                   "k-NN (%)": _pm(*knn), "Acc@1 (%)": _pm(*acc)}
            for st in settings:
                d = delta[(delta.family == family) & (delta.prior == prior) & (delta.setting == st)]["value"]
                name = f"Oracle Δ (points), {_setting_label(st)}" + (" (§4.2)" if st == stated else "")
                row[name] = float(d.mean()) if len(d) else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


TABLE3_STATISTICS = {  # oracle metric → Table 3 row label
    "rsg": "RSG (%), mean over trajectories (Eq. 5)",
    "rsg_median": "RSG (%), median over trajectories",
    "rsg_ratio_of_means": "RSG (%), ratio of mean scores",
    "rsg_zero_init": "trajectories skipped, initial score 0 (%)",
}


def table3(results, config) -> pd.DataFrame:
    """Table 3: relative saliency gain (Eq. 4–5) of SPoT-ON placements over their Isotropic start, per budget: the
    paper's average of Eq. 5 over trajectories (one per token; those starting at saliency 0 are skipped, their share
    is a row), the median, and the ratio of the mean scores."""
    config = _config(config)
    o = _oracle(results)
    r = o[(o.experiment == "table3") & o.metric.isin(list(TABLE3_STATISTICS))]
    rows = []
    for family, f in r.groupby("family", sort=False):
        for metric, label in TABLE3_STATISTICS.items():
            g = f[f.metric == metric]
            rows.append({"Backbone": _label(config, family), "Statistic": label,
                         **{f"{b} Tok.": float(g[g.budget == b]["value"].mean()) for b in sorted(f.budget.unique())}})
    return pd.DataFrame(rows)


def table4(results, config) -> pd.DataFrame:
    """Table 4: SPoT-ON positions of a source model evaluated on a target model (original, transfer, Δ)."""
    config = _config(config)
    t = _read(results, "transfer")
    rows = []
    for (src, tgt), f in t.groupby(["source", "target"], sort=False):
        if src == tgt:  # the source's own oracle accuracy, not a transfer
            continue
        val = {m: float(f[f.metric == m]["value"].iloc[0]) for m in f.metric.unique()}
        rows.append({"Source": _label(config, src), "Target": _label(config, tgt),
                     "Original (%)": val.get("original_acc1"), "Transfer (%)": val.get("transfer_acc1"),
                     "Δ": val.get("transfer_delta")})
    return pd.DataFrame(rows)


def table5(results, config) -> pd.DataFrame:
    """Table 5: Acc@1 and kNN per model × prior × budget: the grid ViT with PatchDropout (the paper's ViT-B/16
    rows), SPoT with each prior, SPoT-ON from Isotropic; plus the fair controls (grid control model with random and
    evenly spaced grid patches)."""
    config = _config(config)
    budgets = list(config["evaluation"]["budgets"])
    e = _evaluation(results)
    e = e[e.budget.isin(budgets)]
    stats = _mean_std(e, ["family", "variant", "method", "prior", "budget", "metric"])
    o = _oracle(results)
    on = o[(o.experiment == "table5") & (o.method == "spot_on")]
    rows = []

    def add(family, model, prior, oracle, pick):
        row = {"Backbone": _label(config, family), "Model": model, "Prior": prior, "Oracle": oracle}
        for b in budgets:
            for metric, name in (("acc1", "Acc@1"), ("knn", "kNN")):
                row[f"{b} Tok. {name}"] = pick(b, metric)
        rows.append(row)

    def picker(f):
        def pick(b, metric):
            r = f[(f.budget == b) & (f.metric == metric)]
            return float(r["mean"].iloc[0]) if len(r) else np.nan
        return pick

    for family in stats["family"].unique():
        s = stats[stats.family == family]
        add(family, "ViT", "Patch grid (PatchDropout)", "", picker(s[(s.variant == "vit") & (s.method == "PatchDropout")]))
        spot = s[(s.variant == "spot") & (s.method == "SPoT")]
        for prior in [p for p in PRIOR_ORDER if p in set(spot.prior) and p not in ("background", "boundary")]:
            add(family, "SPoT", prior.capitalize(), "✓" if prior == "salient" else "", picker(spot[spot.prior == prior]))
        f_on = on[on.family == family]

        def pick_on(b, metric, f_on=f_on):
            v = f_on[(f_on.budget == b) & (f_on.metric == metric)]["value"]
            return float(v.mean()) if len(v) else np.nan

        # kNN of SPoT-ON: our procedure (the paper gives no method) — the pooled feature at the oracle's final
        # positions classified against the evaluation's bank encoded at Isotropic positions
        add(family, "SPoT-ON", "Isotropic (kNN at final positions: ours)", "✓", pick_on)
        grid = s[s.variant == "gridctl"]
        for method in ("grid subset (random)", "grid subset (even)"):
            g = grid[grid.method == method]
            if len(g):
                add(family, "Grid control", method.replace("grid subset ", "grid patches "), "", picker(g))
        # the grid control given subpixel prior positions, and SPoT's positions snapped to the grid: whatever priors
        # the sweep measured (evaluation.grid_model_priors, evaluation.snapped)
        g = grid[grid.method == "SPoT"]
        for prior in [p for p in PRIOR_ORDER if p in set(g.prior)]:
            add(family, "Grid control", f"{prior.capitalize()} (subpixel)", "", picker(g[g.prior == prior]))
        snapped = s[(s.variant == "spot") & (s.method == "SPoT (snapped)")]
        for prior in [p for p in PRIOR_ORDER if p in set(snapped.prior)]:
            add(family, "SPoT", f"{prior.capitalize()}, snapped to grid", "", picker(snapped[snapped.prior == prior]))
    return pd.DataFrame(rows)


def table6(results, config) -> pd.DataFrame:
    """Table 6: harmful priors and adversarial oracles at the sparse budget vs Isotropic SPoT (drop in points)."""
    config = _config(config)
    o = _oracle(results)
    t = o[o.experiment == "table6"]
    rows = []
    names = {"spot": None, "ascent": "Ascent (SPoT-ON)", "label_obfuscation": "Label obfuscation (SPoT-ON)"}
    for family, f in t.groupby("family", sort=False):
        acc = f[f.metric == "acc1"]
        drop = f[f.metric == "drop_vs_isotropic"]
        for _, r in acc.iterrows():
            name = names.get(r["method"]) or f"{str(r['prior']).capitalize()} prior"
            d = drop[(drop.method == r["method"]) & (drop.prior == r["prior"])]["value"]
            rows.append({"Model": _label(config, family), "Case": name, "Acc@1 (%)": float(r["value"]),
                         "Drop vs Isotropic": float(d.iloc[0]) if len(d) else np.nan})
    return pd.DataFrame(rows)


def table8(results, config) -> pd.DataFrame:
    """Table 8: SPoT (Isotropic) Acc@1 at arbitrary budgets; at paper scale next to ElasticViT's *published*
    numbers (Pardyl et al., 2025; quoted, not measured here)."""
    config = _config(config)
    budgets = sorted(set(config["evaluation"]["extra_budgets"]) | set(config["evaluation"]["budgets"]))
    e = _evaluation(results)
    e = e[(e.variant == "spot") & (e.method == "SPoT") & (e.prior == "isotropic") & (e.metric == "acc1")]
    stats = _mean_std(e, ["family", "budget"])
    rows = []
    if config.get("data", {}).get("kind") == "imagenet":
        rows.append({"Model": "ElasticViT (published, Pardyl et al. 2025)",
                     **{str(b): ELASTICVIT_TABLE8.get(b, np.nan) for b in budgets}})
    for family in stats["family"].unique():
        f = stats[stats.family == family]
        rows.append({"Model": f"SPoT {_label(config, family)}",
                     **{str(b): float(f[f.budget == b]["mean"].iloc[0]) if len(f[f.budget == b]) else np.nan
                        for b in budgets}})
    return pd.DataFrame(rows)


def figure4(results, config, data):
    """Figure 4: SPoT-ON trajectories (dark → bright) from the Isotropic prior for the first stored images."""
    import matplotlib.pyplot as plt

    from .data.evaluation import EvalData
    from .plotting import plot_positions

    config = _config(config)
    files = [p for p in results if str(p).endswith(".npz")]
    if not files:
        raise ValueError("figure 4 needs the oracle's .trajectories.npz files")
    stores = [dict(np.load(p, allow_pickle=False)) for p in files]
    n_cols = min(4, min(int(s["positions"].shape[2]) for s in stores))
    n_rows = sum(len(s["models"]) for s in stores)
    patch, _ = _geometry(config)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.8 * n_rows), squeeze=False)
    row = 0
    for store in stores:
        indices = store["indices"]
        d = EvalData.open(data, config["oracle"]["split"], indices=indices[:n_cols])
        for mi, model in enumerate(store["models"]):
            for j in range(n_cols):
                image = d.take([int(indices[j])])[0]
                traj = store["positions"][mi, :, j]
                ok = "✓" if bool(store["final_correct"][mi, j] if store["final_correct"].ndim > 1
                                  else store["final_correct"][j]) else "✗"
                plot_positions(image, None, patch, ax=axes[row, j], trajectory=traj,
                               title=f"{_label(config, str(model))} {ok}" if j == 0 else ok)
            row += 1
    fig.suptitle(f"SPoT-ON trajectories, {int(store['budget'])} tokens, lr {float(store['lr']):g}, "
                 f"{int(store['steps'])} steps")
    fig.tight_layout()
    return fig


def _throughput(results) -> pd.DataFrame:
    tp = _read(results, "throughput")
    tp["family"] = tp["model"].map(_family)
    tp["variant"] = tp["model"].map(lambda m: str(m).split(":")[1] if ":" in str(m) else "")
    return tp


def _speeds(tp: pd.DataFrame, family: str, method: str) -> pd.Series:
    """Images/s per budget of a method on its model — SPoT on the SPoT model, PatchDropout on the grid ViT —: the
    best over the batch sizes measured (each the median of repeats), so that a budget whose small batch is
    launch-bound on a GPU is read at a batch that fills it."""
    variant = "spot" if method == "SPoT" else "vit"
    f = tp[(tp.family == family) & (tp.variant == variant) & (tp.method == method)]
    return f.groupby("budget")["images_per_s"].max().sort_index()


def figure5(results, config, data):
    """Figure 5 as the paper draws it: one panel, Acc@1 vs throughput for five models at every budget — the grid ViT
    of each backbone with PatchDropout, SPoT (its optimal configuration at each budget: the best backbone and prior)
    and SPoT-ON (the best backbone) —, one point per budget sized by its token count, the *gap* between SPoT and
    SPoT-ON shaded, and the *ceiling* band (``figures.figure5.ceiling``: ImageNet's label noise, Beyer et al. 2020;
    none for a benchmark without a published one)."""
    import matplotlib.pyplot as plt

    config = _config(config)
    ceiling = ((config.get("figures") or {}).get("figure5") or {}).get("ceiling")
    budgets = list(config["evaluation"]["budgets"])
    tp = _throughput(results)
    e = _evaluation(results)
    acc = _mean_std(e[(e.metric == "acc1") & e.budget.isin(budgets)], ["family", "variant", "method", "prior", "budget"])
    o = _oracle(results)
    on = o[(o.experiment == "table5") & (o.method == "spot_on") & (o.metric == "acc1")]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    size = {b: 12 + 140 * b / max(budgets) for b in budgets}

    def draw(points: dict, style: str, label: str, **kw):
        """points: budget → (images/s, Acc@1)."""
        bs = [b for b in budgets if b in points]
        if not bs:
            return
        x, y = [points[b][0] for b in bs], [points[b][1] for b in bs]
        line = ax.plot(x, y, style, label=label, **kw)[0]
        ax.scatter(x, y, s=[size[b] for b in bs], color=line.get_color(), zorder=3)

    best_spot, best_on = {}, {}  # budget → (images/s, Acc@1, family)
    for family in config["backbones"]:
        a = acc[(acc.family == family) & (acc.variant == "vit") & (acc.method == "PatchDropout")]
        speed = _speeds(tp, family, "PatchDropout")
        draw({int(r.budget): (float(speed[r.budget]), float(r["mean"])) for _, r in a.iterrows()
              if r.budget in speed.index}, "--", f"ViT {_label(config, family)} + PatchDropout", alpha=0.8)
        speed = _speeds(tp, family, "SPoT")
        spot = acc[(acc.family == family) & (acc.variant == "spot") & (acc.method == "SPoT")]
        for b, v in spot.groupby("budget")["mean"].max().items():
            if b in speed.index and v > best_spot.get(b, (0, -np.inf))[1]:
                best_spot[int(b)] = (float(speed[b]), float(v), family)
        for b, v in on[on.family == family].groupby("budget")["value"].mean().items():
            if b in speed.index and v > best_on.get(b, (0, -np.inf))[1]:
                best_on[int(b)] = (float(speed[b]), float(v), family)
    draw(best_spot, "-", "SPoT (best backbone and prior)", color="tab:blue", linewidth=2)
    draw(best_on, ":", "SPoT-ON (best backbone)", color="black")
    common = [b for b in budgets if b in best_spot and b in best_on]
    if common:
        ax.fill_between([best_spot[b][0] for b in common], [best_spot[b][1] for b in common],
                        [best_on[b][1] for b in common], color="tab:green", alpha=0.15, label="gap")
    for b, (x, y, _) in best_spot.items():
        ax.annotate(f"{b}", (x, y), textcoords="offset points", xytext=(0, -14), fontsize=7, ha="center")
    if ceiling:
        ax.axhspan(float(ceiling["from"]), float(ceiling.get("to", 100.0)), color="tab:red", alpha=0.12,
                   label=f"ceiling ({ceiling.get('source', 'label noise')})")
    ax.set_xscale("log")
    ax.set_xlabel("throughput (images/s); points sized by tokens")
    ax.set_ylabel("Acc@1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def figure5_per_backbone(results, config, data):
    """Figure 5, one panel per backbone: Acc@1 vs throughput (images/s) at every budget for SPoT (Isotropic,
    Center), PatchDropout on the grid ViT, and SPoT-ON (the oracle's placement)."""
    import matplotlib.pyplot as plt

    config = _config(config)
    tp = _throughput(results)
    e = _evaluation(results)
    acc = _mean_std(e[e.metric == "acc1"], ["family", "variant", "method", "prior", "budget"])
    o = _oracle(results)
    on = o[(o.experiment == "table5") & (o.method == "spot_on") & (o.metric == "acc1")]
    families = list(dict.fromkeys(acc["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.6 * len(families), 3.8), squeeze=False)
    for ax, family in zip(axes[0], families):
        spot_speed = _speeds(tp, family, "SPoT")
        pd_speed = _speeds(tp, family, "PatchDropout")
        a = acc[acc.family == family]
        series = [("SPoT (Isotropic)", a[(a.variant == "spot") & (a.method == "SPoT") & (a.prior == "isotropic")],
                   spot_speed, "o-"),
                  ("SPoT (Center)", a[(a.variant == "spot") & (a.method == "SPoT") & (a.prior == "center")],
                   spot_speed, "s-"),
                  ("ViT + PatchDropout", a[(a.variant == "vit") & (a.method == "PatchDropout")], pd_speed, "^--")]
        for name, f, sp, style in series:
            f = f[f.budget.isin(sp.index)].sort_values("budget")
            if len(f):
                ax.plot(sp.loc[f.budget].values, f["mean"].values, style, label=name)
        f_on = on[(on.family == family) & on.budget.isin(spot_speed.index)].groupby("budget")["value"].mean()
        if len(f_on):
            ax.plot(spot_speed.loc[f_on.index].values, f_on.values, "*:", label="SPoT-ON (Isotropic init)")
        for b, x in spot_speed.items():
            ax.annotate(str(b), (x, ax.get_ylim()[0]), fontsize=7, ha="center", va="bottom", alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("throughput (images/s)")
        ax.set_ylabel("Acc@1 (%)")
        ax.set_title(_label(config, family))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


_TABLES = {1: table1, 2: table2, 3: table3, 4: table4, 5: table5, 6: table6, 7: table7, 8: table8}
_FIGURES: dict = {"1": figure1, "2": figure2, "3": figure3, "4": figure4, "5": figure5, "5b": figure5_per_backbone}


def build_table(n: int, results, config) -> pd.DataFrame:
    n = int(n)
    if n not in _TABLES:
        raise ValueError(f"no builder for table {n}; available: {sorted(_TABLES)}")
    return _TABLES[n](list(results), config)


def build_figure(n: int, results, config, data=None):
    import matplotlib

    matplotlib.use("Agg")
    n = str(n)
    if n not in _FIGURES:
        raise ValueError(f"no builder for figure {n}; available: {', '.join(_FIGURES)}")
    return _FIGURES[n](list(results), config, data)
