"""The paper's tables and figures, built from a run's result tables (the notebooks in notebooks/ call these).

``build_table(n, results, config)`` → a pandas DataFrame laid out as Table n of the paper (rows and columns as
published, numbers as measured by this run — never typed in, except Table 8's ElasticViT row, which is the
published result of Pardyl et al. (2025) and labelled as such); ``write_table_files`` writes it as CSV, Markdown and
LaTeX with a provenance sidecar listing the result files (and their sha256) it was computed from.
``build_figure(n, results, config, data=)`` → a matplotlib figure; ``write_figure_files`` → PDF + PNG + sidecar.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

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


def _read(paths, suffix=".csv") -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in paths if str(p).endswith(suffix)]
    if not frames:
        raise ValueError(f"no {suffix} result files given")
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
                "sampler": f"{r.tokens.prior} (m ∈ [{r.tokens.min_tokens}, {r.tokens.max_tokens or 'grid'}], "
                           f"jitter {r.tokens.jitter})" if r.tokens.mode == "subpixel" else r.tokens.mode,
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


_TABLES = {7: table7}
_FIGURES: dict = {}


def build_table(n: int, results, config) -> pd.DataFrame:
    n = int(n)
    if n not in _TABLES:
        raise ValueError(f"no builder for table {n}; available: {sorted(_TABLES)}")
    return _TABLES[n](list(results), config)


def build_figure(n: int, results, config, data=None):
    import matplotlib

    matplotlib.use("Agg")
    n = int(n)
    if n not in _FIGURES:
        raise ValueError(f"no builder for figure {n}; available: {sorted(_FIGURES)}")
    return _FIGURES[n](list(results), config, data)
