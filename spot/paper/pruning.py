"""Token pruning's tables and figure ("SPOT-AD" (Schlesinger et al.) and the comparison neither paper makes): registered builders
reading ``spot pruning`` and ``spot throughput`` tables. Display labels live here."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.pruning.catalog import BEFORE_BLOCK
from ._common import label, measure, paired_interval, read_results, set_interval, with_intervals
from .registry import figure, table

METHOD_LABELS = {"vit": "Baseline (dense)", "spot_ad": "SPOT-AD", "evit": "EViT", "dynamicvit": "DynamicViT",
                 "heuristic": "Heuristic (CLS attention, SPOT-AD paper Tab. 7)", "tome": "ToMe", "spot": "SPoT",
                 "patchdropout": "PatchDropout"}


def _pruning(inputs) -> pd.DataFrame:
    f = read_results(inputs, "pruning")
    f["setting"] = f["setting"].fillna("")
    return f


def _speed(inputs, backbone, **match) -> float:
    """Images/s of one throughput measurement (best over batch sizes), NaN when it was not timed."""
    if not inputs.get("throughput"):
        return np.nan
    tp = read_results(inputs, "throughput")
    tp = tp[(tp.backbone == backbone) & (tp.metric == "images_per_s")]
    return _best(tp, match)


def _best(frame: pd.DataFrame, match: dict) -> float:
    """The largest ``value`` among rows matching ``match`` (None: the column is empty or absent), NaN if none."""
    for key, value in match.items():
        if key not in frame:
            if value is None:
                continue
            return np.nan
        frame = frame[frame[key].isna()] if value is None else frame[np.isclose(frame[key], value)] \
            if isinstance(value, float) else frame[frame[key] == value]
    return float(frame["value"].max()) if len(frame) else np.nan


def _rows(f, metric, **match) -> pd.DataFrame:
    for key, value in match.items():
        f = f[np.isclose(f[key], value)] if isinstance(value, float) else f[f[key] == value]
    return f[f.metric == metric]


def _value(f, metric, **match) -> float:
    f = _rows(f, metric, **match)
    return float(f["value"].mean()) if len(f) else np.nan


def _flops_unit(frame: pd.DataFrame) -> pd.DataFrame:
    """GFLOPs columns in MFLOPs when every value is below 1 G (the embedded ViTs: ≈ 0.035 GFLOPs), so that two
    decimals still tell methods apart; the column names say which."""
    columns = [c for c in frame.columns if "GFLOPs" in c and "Δ" not in c and "share" not in c]
    if columns and frame[columns].abs().max().max() < 1:
        frame = frame.copy()
        for c in columns:
            frame[c] = frame[c] * 1000
        frame = frame.rename(columns={c: c.replace("GFLOPs", "MFLOPs") for c in columns})
    return frame


def _trained_ratio(f) -> float:
    """The keep ratio the fine-tunes of ``f`` were trained at (the most common one; 0.7 when none says)."""
    r = f["trained_keep_ratio"].dropna()
    return float(r.mode().min()) if len(r) else 0.7


def _settings(config, key="models") -> list[str]:
    return list(((config.get("pruning") or {}).get(key) or {}))


@table("pruning_table1", reads=("pruning", "throughput"),
       caption="Token pruning in the format of the SPOT-AD paper's Table 1: per backbone, the dense classifier and every pruning fine-tune at the keep ratio it was trained at (ρ column), with ToMe at the r matching the most common one — Acc@1 (%), its change (points), GFLOPs per image (2 per multiply-add), their change (%), and measured throughput (images/s). The CSV also holds the 95 % intervals: Wilson for Acc@1, and for Δ the paired interval over the same images.")
def pruning_table1(inputs, config) -> pd.DataFrame:
    f = _pruning(inputs)
    rows = []
    for backbone, b in f.groupby("backbone", sort=False):
        if not (b.method == "vit").any():
            continue
        n0 = int(b.loc[b.method == "vit", "budget"].iloc[0])
        dense = {"acc": _rows(b, "acc1", method="vit"), "g": _value(b, "gflops", method="vit"),
                 "speed": _speed(inputs, backbone, variant="parent", method="vit", setting=None)}
        rho = _trained_ratio(b)
        entries = [("Baseline (dense)", dense)]
        for setting in _settings(config):
            s = b[(b.setting == setting) & (b.variant == "parent")]
            if not len(s):
                continue
            method, own = s["method"].iloc[0], _trained_ratio(s)  # each fine-tune at the ratio it was trained at
            entries.append((METHOD_LABELS.get(method, method) + ("" if setting == method else f" [{setting}]"), {
                "acc": _rows(s, "acc1", keep_ratio=own), "g": _value(s, "gflops", keep_ratio=own),
                "speed": _speed(inputs, backbone, setting=setting, keep_ratio=own), "rho": own}))
        t = b[(b.method == "tome") & np.isclose(b.keep_ratio, rho)]
        if len(t):
            entries.append((f"ToMe (r = {int(t['r'].iloc[0])}, training-free)", {
                "acc": _rows(t, "acc1"), "g": _value(t, "gflops"),
                "speed": _speed(inputs, backbone, setting="tome", keep_ratio=rho), "rho": rho}))
        dense_acc = measure(dense["acc"])
        for name, e in entries:
            row = {"Model": label(config, backbone), "Method": name, "ρ": e.get("rho", 1.0)}
            acc = measure(e["acc"])
            with_intervals(row, "Acc@1 (%)", acc)
            row["Δ (points)"] = row["Acc@1 (%)"] - dense_acc["mean"]
            set_interval(row, "Δ (points)", paired_interval(e["acc"], dense["acc"]))  # the same images
            rows.append({**row, "GFLOPs": e["g"], "GFLOPs Δ (%)": 100 * (e["g"] / dense["g"] - 1),
                         "Throughput (images/s)": e["speed"], "Speed-up (×)": e["speed"] / dense["speed"],
                         "Input tokens": n0})
    return _flops_unit(pd.DataFrame(rows))


@table("pruning_ablations", reads=("pruning",),
       caption="Pruning ablations in the spirit of the SPOT-AD paper's Tables 2, 7 and 8: every fine-tune of a learned or heuristic method at its training keep ratio ρ — Acc@1 (%), GFLOPs, and the predictor's own cost (GFLOPs beyond the heuristic's at the same token counts; none for DynamicViT, which prunes before the stage block and so runs on other counts) and share of the model's GFLOPs. The CSV also holds each Acc@1 cell's 95 % interval over the images.")
def pruning_ablations(inputs, config) -> pd.DataFrame:
    f = _pruning(inputs)
    rows = []
    for backbone, b in f.groupby("backbone", sort=False):
        for setting in _settings(config):
            s = b[(b.setting == setting) & (b.variant == "parent")]
            if not len(s) or s["method"].iloc[0] not in ("spot_ad", "dynamicvit", "heuristic"):
                continue
            rho = _trained_ratio(s)  # each fine-tune at the ratio it was trained at
            s = s[np.isclose(s.keep_ratio, rho)]
            same_counts = b[(b.method == "heuristic") & np.isclose(b.keep_ratio, rho)]
            reference = _value(same_counts, "gflops") if len(same_counts) else np.nan
            g = _value(s, "gflops")
            method = s["method"].iloc[0]
            # the heuristic prunes where SPOT-AD does (after the stage block's attention): a method that prunes
            # before the stage block (DynamicViT) runs on other token counts, so the difference is not its cost
            predictor = 0.0 if method == "heuristic" else np.nan if method in BEFORE_BLOCK else g - reference
            row = {"Model": label(config, backbone), "Setting": setting,
                   "Method": METHOD_LABELS.get(s["method"].iloc[0], s["method"].iloc[0]), "ρ": rho}
            with_intervals(row, "Acc@1 (%)", measure(_rows(s, "acc1")))
            rows.append({**row, "GFLOPs": g, "Predictor GFLOPs": predictor, "Predictor share (%)": 100 * predictor / g})
    return _flops_unit(pd.DataFrame(rows))


def _sampling_at(b, gflops: float) -> dict:
    """The sampling rows (SPoT per prior, PatchDropout, grid control) at the equal-cost budget closest to
    ``gflops``: ``m``, its ``gflops``, and {name: acc1 record rows} — ``best`` (SPoT's prior with the highest test
    Acc@1: a best-of, named in ``best_prior``), ``isotropic``, ``patchdropout``, ``grid_control``."""
    s = b[(b.setting == "") & b.method.isin(["spot", "patchdropout"])]
    g = s[s.metric == "gflops"].groupby("budget")["value"].mean()
    if not len(g):
        return {}
    m = int((g - gflops).abs().idxmin())
    at = s[(s.budget == m) & (s.metric == "acc1")]
    spot = at[(at.variant == "spot") & (at.method == "spot")]
    out = {"m": m, "gflops": float(g[m]), "priors": int(spot.placement.nunique())}
    if len(spot):
        means = spot.groupby("placement")["value"].mean()
        out["best_prior"] = means.idxmax()
        out["best"] = spot[spot.placement == out["best_prior"]]
        out["isotropic"] = spot[spot.placement == "isotropic"]
    for key, variant, method in (("patchdropout", "parent", "patchdropout"), ("grid_control", "grid_control", "spot")):
        out[key] = at[(at.variant == variant) & (at.method == method)]
    return out


def _winner(best_sampling: pd.DataFrame | None, best_pruning: pd.DataFrame | None) -> str:
    """Which family's best row wins the cost point: ``sampling`` or ``pruning`` when the paired 95 % interval of
    their difference over the same images excludes 0, else ``tie (within noise)``."""
    if best_sampling is None or best_pruning is None or not len(best_sampling) or not len(best_pruning):
        return ""
    low, high = paired_interval(best_sampling, best_pruning)
    if np.isnan(low):  # no per-image outcomes: the point estimates
        d = best_sampling["value"].mean() - best_pruning["value"].mean()
        return "sampling" if d > 0 else "pruning" if d < 0 else "tie"
    return "sampling" if low > 0 else "pruning" if high < 0 else "tie (within noise)"


def _best_of(cells: dict) -> pd.DataFrame | None:
    """The record rows of the cell with the highest mean Acc@1 among ``cells`` ({name: rows})."""
    cells = [c for c in cells.values() if c is not None and len(c)]
    return max(cells, key=lambda c: c["value"].mean()) if cells else None


@table("sampling_vs_pruning", reads=("pruning",),
       caption="Sampling vs pruning at equal cost: at each keep ratio ρ of SPOT-AD (its GFLOPs the cost point), Acc@1 (%) of every pruning method at the same ρ, SPoT + SPOT-AD on the full grid, and — at the token budget m* whose GFLOPs are closest — SPoT with its best prior (the best of the measured priors on the test images: optimistic) and with Isotropic, PatchDropout and the grid control. Winner: the family whose best row is higher by a paired 95 % interval over the same images that excludes 0, else a tie within noise. The CSV holds every Acc@1 cell's 95 % interval.")
def sampling_vs_pruning(inputs, config) -> pd.DataFrame:
    f = _pruning(inputs)
    pruning_cfg = config.get("pruning") or {}
    anchor = pruning_cfg.get("equal_cost") or "spot_ad"
    rows = []
    for backbone, b in f.groupby("backbone", sort=False):
        a = b[(b.setting == anchor) & (b.variant == "parent")]
        if not len(a):
            continue
        n0 = int(a["budget"].iloc[0])
        for rho in sorted(a["keep_ratio"].dropna().unique()):
            g = _value(a, "gflops", keep_ratio=float(rho))
            row = {"Model": label(config, backbone), "ρ": float(rho), "GFLOPs": g}
            pruned = {}
            for setting in _settings(config) + ["tome"]:
                s = b[(b.setting == setting) & (b.variant == "parent")]
                if len(s):
                    name = METHOD_LABELS.get(s["method"].iloc[0], setting) + ("" if setting in (
                        s["method"].iloc[0], "tome") else f" [{setting}]")
                    pruned[name] = _rows(s, "acc1", keep_ratio=float(rho))
            for setting in _settings(config, "combined"):
                c = b[(b.setting == setting) & (b.budget == n0)]
                if len(c):
                    pruned[f"SPoT + SPOT-AD ({n0} tok.)"] = _rows(c, "acc1", keep_ratio=float(rho))
            for name, cell in pruned.items():
                with_intervals(row, name, measure(cell))
            sampled = _sampling_at(b, g)
            if sampled:
                row.update({"m*": sampled["m"], "m* GFLOPs": sampled["gflops"]})
                cells = {"SPoT best prior": sampled.get("best"), "SPoT Isotropic": sampled.get("isotropic"),
                         "PatchDropout": sampled["patchdropout"], "Grid control": sampled["grid_control"]}
                for name, cell in cells.items():
                    with_intervals(row, name, measure(cell) if cell is not None else None)
                row["Best prior"] = f"{sampled.get('best_prior', '')} (best of {sampled['priors']})"
                sampling = {k: v for k, v in cells.items() if k != "SPoT Isotropic"}
                row["Winner"] = _winner(_best_of(sampling), _best_of(pruned))
            rows.append(row)
    return _flops_unit(pd.DataFrame(rows))


@figure("figure_sampling_vs_pruning", reads=("pruning", "throughput", "evaluation"),
        caption="Sampling vs pruning: Acc@1 (%) against GFLOPs per image (left) and measured throughput (right) per backbone — SPoT (Isotropic, and its best prior per budget) over token budgets, PatchDropout, the grid control, every pruning method over its keep-ratio sweep, ToMe, SPoT + SPOT-AD, and the dense classifier (star).")
def figure_sampling_vs_pruning(inputs, config):
    import matplotlib.pyplot as plt

    f = _pruning(inputs)
    tp = read_results(inputs, "throughput") if inputs.get("throughput") else pd.DataFrame()
    e = read_results(inputs, "evaluation") if inputs.get("evaluation") else pd.DataFrame()
    backbones = list(dict.fromkeys(f["backbone"]))
    fig, axes = plt.subplots(len(backbones), 2, figsize=(10, 3.4 * len(backbones) + 0.9), squeeze=False)

    def tp_value(backbone, metric, **match):
        if not len(tp):
            return np.nan
        return _best(tp[(tp.backbone == backbone) & (tp.metric == metric)], match)

    rows = {backbone: _sampling_vs_pruning_curves(f[f.backbone == backbone], e, backbone, tp_value)
            for backbone in backbones}
    names = list(dict.fromkeys(n for curves, _ in rows.values() for n in curves))
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}  # one colour per curve in every row
    for row, backbone in zip(axes, backbones):
        curves, dense = rows[backbone]
        for ax, axis in zip(row, (0, 1)):
            for name, points in curves.items():
                # joined in the order of the axis drawn (GFLOPs, or throughput)
                points = sorted((p for p in points if np.isfinite(p[axis]) and np.isfinite(p[2])),
                                key=lambda p: p[axis])
                if points:
                    style = "o-" if name.startswith("SPoT") and "+" not in name else "s--" if name in (
                        "PatchDropout", "Grid control") else "^-"
                    ax.plot([p[axis] for p in points], [p[2] for p in points], style, label=name, markersize=4,
                            color=colours[name])
            if np.isfinite(dense[axis]):
                ax.plot([dense[axis]], [dense[2]], "k*", markersize=12, label="dense classifier")
            ax.set_xlabel("GFLOPs per image" if axis == 0 else "throughput (images/s)")
            ax.set_ylabel("Acc@1 (%)")
            ax.set_title(f"{label(config, backbone)}: accuracy vs {'GFLOPs' if axis == 0 else 'throughput'}")
            ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.flat:  # one legend for the figure, every curve once
        for handle, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, handle)
    columns = min(5, max(1, len(handles)))
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=columns, fontsize=8, frameon=False)
    legend_inches = 0.2 + 0.22 * -(-len(handles) // columns)  # the legend's rows, below the panels
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    return fig


def _sampling_vs_pruning_curves(b: pd.DataFrame, e: pd.DataFrame, backbone: str, tp_value) -> tuple[dict, tuple]:
    """One backbone's curves, label → [(GFLOPs, images/s, Acc@1)]: sampling (SPoT Isotropic, PatchDropout, the grid
    control over the evaluation's and the equal-cost budgets), every pruning setting over its sweep (the combined
    models per budget) and ToMe; and the dense classifier's point."""
    curves = {}
    if len(e):
        ev = e[(e.backbone == backbone) & (e.metric == "acc1") & (e.positions == "placed")]
        for name, variant, method, placement in (("SPoT (Isotropic)", "spot", "spot", "isotropic"),
                                                 ("PatchDropout", "parent", "patchdropout", "grid_random"),
                                                 ("Grid control", "grid_control", "spot", "grid_random")):
            g = ev[(ev.variant == variant) & (ev.method == method) & (ev.placement == placement)]
            for m, acc in g.groupby("budget")["value"].mean().items():
                kind = "spot" if method == "spot" else "patchdropout"
                tvariant = "spot" if method == "spot" else "parent"
                curves.setdefault(name, []).append(
                    (tp_value(backbone, "gflops_per_image", variant=tvariant, method=kind, budget=int(m)),
                     tp_value(backbone, "images_per_s", variant=tvariant, method=kind, budget=int(m)), acc))
    sampled = b[(b.setting == "") & b.method.isin(["spot", "patchdropout"])]
    for (variant, method, placement), g in sampled.groupby(["variant", "method", "placement"]):
        if variant == "spot" and placement != "isotropic":
            continue
        # the same curves as the evaluation's, at the equal-cost budgets
        name = {"parent": "PatchDropout", "grid_control": "Grid control"}.get(variant, "SPoT (Isotropic)")
        for m, gg in g.groupby("budget"):
            kind = "spot" if method == "spot" else "patchdropout"
            curves.setdefault(name, []).append(
                (_value(gg, "gflops"), tp_value(backbone, "images_per_s", setting="equal_cost", method=kind,
                                                budget=int(m)), _value(gg, "acc1")))
    for setting, s in b[b.setting != ""].groupby("setting", sort=False):
        method = s["method"].iloc[0]
        for m, sm in s.groupby("budget"):
            name = METHOD_LABELS.get(method, method) + ("" if setting in (method, "tome") else f" [{setting}]")
            if s["variant"].iloc[0] == "spot":
                name = f"SPoT + SPOT-AD ({int(m)} tok.)"
            for rho, sr in sm.groupby("keep_ratio"):
                curves.setdefault(name, []).append(
                    (_value(sr, "gflops"), tp_value(backbone, "images_per_s", setting=setting,
                                                    keep_ratio=float(rho), budget=int(m)), _value(sr, "acc1")))
    dense = (_value(b, "gflops", method="vit"), tp_value(backbone, "images_per_s", variant="parent", method="vit",
                                                       setting=None), _value(b, "acc1", method="vit"))
    return curves, dense
