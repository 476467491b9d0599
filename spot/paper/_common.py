"""What the table and figure builders share: the run's config, reading result tables, labels, writing files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..provenance import atomic_output, atomic_write_json, atomic_write_text, provenance, sha256_file

# Table 8 of the paper: ElasticViT's *published* ImageNet-1k accuracies (Pardyl et al., 2025), tokens → Acc@1 (%).
ELASTICVIT_TABLE8 = {39: 67.17, 59: 72.65, 78: 75.47, 98: 77.47, 118: 78.18, 137: 79.73, 157: 80.81, 176: 81.31,
                     196: 82.04}


def load_run_config(config) -> dict:
    """The run's config from a mapping, a preset file (its ``extends:`` resolved), or the JSON list of files and
    override mappings that the workflow passes (``--config-json``)."""
    from ..config import load_config, merge_configs

    if isinstance(config, dict):
        return config
    text = str(config)
    if text.lstrip().startswith("["):
        layers = json.loads(text)
        return merge_configs(*(load_config(i) if isinstance(i, str) else i for i in layers))
    return load_config(config)


SOURCE = "_source"  # a record row's address, ``results/…/evaluation/cls_in1k.csv#12``: which rows made a cell
LINEAGE = " ⟵ rows"  # a built table's hidden column: the record rows behind a cell (moved to its provenance)


def read_results(inputs: dict, kind: str) -> pd.DataFrame:
    """Every row of the ``kind`` result tables among ``inputs`` (``{kind: [paths]}``), concatenated."""
    paths = [p for p in inputs.get(kind, []) if str(p).endswith(".csv")]
    if not paths:
        raise ValueError(f"no {kind} result table among the inputs ({', '.join(inputs) or 'none'})")
    from ..results import read_csv

    frames = [read_csv(p).assign(**{SOURCE: lambda f, p=p: [f"{p}#{i}" for i in range(len(f))]}) for p in paths]
    return pd.concat(frames, ignore_index=True)


def prior_order() -> list[str]:
    """The priors in the paper's order: Uniform, Gaussian, Sobol, Isotropic, Center, Salient, Background, Boundary."""
    from ..core.placement import PRIORS

    return list(PRIORS)


def placements_in_order(present, exclude=()) -> list[str]:
    """The prior labels in ``present`` (other placements left out): the paper's priors first in its order, then any
    prior with settings (``center(scale=0.3)``) in the order they appear."""
    priors = prior_order()
    present = [p for p in dict.fromkeys(present) if str(p).split("(")[0] in priors]  # priors, with or without settings
    order = [p for p in priors if p in present]
    return [p for p in order + [p for p in present if p not in order] if p not in exclude]


def prior_label(placement: str) -> str:
    """How a table shows a placement: ``isotropic`` → ``Isotropic`` (a label with settings keeps them)."""
    return placement[:1].upper() + placement[1:]


def label(config: dict, backbone: str) -> str:
    """The display label of a backbone (``cls_in1k`` → ``CLS-IN1k``), from the config's ``backbones`` (else spot's
    own :data:`~spot.weights.backbones.BACKBONES`: ``deit_s`` → ``DeiT-S``)."""
    entry = config.get("backbones", {}).get(str(backbone))
    if entry is not None:
        return entry.get("label", str(backbone))
    from ..weights.backbones import BACKBONES  # a backbone pruned only (pruning.backbones: DeiT-S/T), known by spot

    known = BACKBONES.get(str(backbone))
    return known.label if known is not None else str(backbone)


def _image_scores(rows: pd.DataFrame):
    """Each image's mean outcome over ``rows`` (one measurement's seeds, on the same images); None where a row has no
    outcomes or the rows were measured on different numbers of images."""
    from ..stats import mean_outcomes

    if not len(rows) or "outcomes" not in rows or rows["outcomes"].isna().any() or rows["n_images"].nunique() != 1:
        return None
    return mean_outcomes(rows["outcomes"], int(rows["n_images"].iloc[0]))


def image_interval(rows: pd.DataFrame) -> tuple[float, float]:
    """The 95 % interval (%) over images of the mean of ``rows`` (:func:`spot.stats.mean_interval` of each image's
    mean outcome); nan without outcomes."""
    from ..stats import mean_interval

    scores = _image_scores(rows)
    if scores is None:
        return float("nan"), float("nan")
    interval = mean_interval(scores)
    return interval.low, interval.high


def mean_std(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and (sample) std over seeds of ``value`` per ``keys`` (std 0 when a prior is deterministic), and the
    mean's 95 % interval over the images (``ci_low``, ``ci_high``: :func:`image_interval`)."""
    g = frame.groupby(keys, dropna=False)
    out = g["value"].agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    intervals = [image_interval(rows) for _, rows in g]
    out["ci_low"], out["ci_high"] = zip(*intervals) if intervals else ((), ())
    if SOURCE in frame:
        out["sources"] = [list(rows[SOURCE]) for _, rows in g]
    return out


def paired_interval(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    """The 95 % interval (points) of mean(a) − mean(b) over the same images, paired (:func:`spot.stats.
    paired_difference` of each image's mean outcome over the rows of ``a`` and of ``b``); nan without outcomes."""
    from ..stats import paired_difference

    scores = [_image_scores(a), _image_scores(b)]
    if any(s is None for s in scores) or len(scores[0]) != len(scores[1]):
        return float("nan"), float("nan")
    d = paired_difference(*scores)
    return d.low, d.high


CI_SUFFIXES = (" 95% CI low", " 95% CI high")  # a table's interval columns: in its CSV, not its Markdown / LaTeX


def with_intervals(row: dict, column: str, stats_row) -> None:
    """``row[column]`` = the mean of a :func:`mean_std` row, and its interval columns beside it."""
    low, high = (np.nan, np.nan) if stats_row is None else (stats_row["ci_low"], stats_row["ci_high"])
    row[column] = np.nan if stats_row is None else float(stats_row["mean"])
    set_interval(row, column, (low, high))
    if stats_row is not None and isinstance(stats_row.get("sources"), list):
        row[column + LINEAGE] = stats_row["sources"]


def split_lineage(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without its :data:`LINEAGE` columns, which go to ``attrs["lineage"]``: ``{"row|column": [record row
    addresses]}`` — what :func:`write_table_files` records in the provenance for ``spot audit --row --column``."""
    hidden = [c for c in frame.columns if str(c).endswith(LINEAGE)]
    lineage = {f"{i}|{c[:-len(LINEAGE)]}": list(v) for c in hidden for i, v in enumerate(frame[c])
               if isinstance(v, list)}
    out = frame.drop(columns=hidden)
    out.attrs["lineage"] = {**frame.attrs.get("lineage", {}), **lineage}
    return out


def measure(rows: pd.DataFrame) -> pd.Series | None:
    """One cell from the record rows of one measurement (one row, or one per seed of a stochastic prior), as a
    :func:`mean_std`-like row: ``mean`` of ``value``, and ``ci_low`` / ``ci_high`` — over the images from the rows'
    outcomes (:func:`image_interval`), else the one row's own interval (a mean over tokens, a paired delta), else nan.
    None when no row matches."""
    if not len(rows):
        return None
    low, high = image_interval(rows)
    if np.isnan(low) and len(rows) == 1 and "ci_low" in rows:
        low, high = float(rows["ci_low"].iloc[0]), float(rows["ci_high"].iloc[0])
    cell = {"mean": float(rows["value"].mean()), "ci_low": low, "ci_high": high}
    if SOURCE in rows:
        cell["sources"] = list(rows[SOURCE])
    return pd.Series(cell)


def set_interval(row: dict, column: str, interval: tuple[float, float]) -> None:
    """``row``'s interval columns of ``column`` (:data:`CI_SUFFIXES`)."""
    row[column + CI_SUFFIXES[0]], row[column + CI_SUFFIXES[1]] = interval


def pm(mean, std) -> str:
    return f"{mean:.2f}" if not std else f"{mean:.2f} ± {std:.2f}"


def oracle_rows(inputs) -> pd.DataFrame:
    """The oracle's rows (``init`` empty — not a search — read back as "")."""
    frame = read_results(inputs, "oracle")
    frame["init"] = frame["init"].fillna("")
    return frame


def evaluation_rows(inputs) -> pd.DataFrame:
    return read_results(inputs, "evaluation")


def run_seeds(config: dict, prefix: str = "") -> dict:
    """Every seed the run's config sets (``{dotted.key: value}``: ``data.seed``, ``evaluation.seeds``,
    ``recipes.backbone_cls_in1k.seed`` …): what a table's numbers depend on besides the code and data."""
    out = {}
    for key, value in (config or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(run_seeds(value, f"{path}."))
        elif str(key).endswith(("seed", "seeds")):
            out[path] = value
    return out


def _sidecar(path: Path, inputs, files: list[Path], config=None, cells: dict | None = None) -> None:
    """``stem.provenance.json``: the sha256 of every file written (``files``) and of every input with its sidecar,
    and the provenance block with the run's config and seeds."""
    ins = {str(p): sha256_file(p) for p in inputs if Path(p).is_file()}
    for p in inputs:  # the result tables' own provenance sidecars are part of the chain
        side = Path(p).with_suffix(".json")
        if side.is_file() and str(side) not in ins:
            ins[str(side)] = sha256_file(side)
    config = load_run_config(config) if config is not None else {}
    meta = {"output": path.stem, "inputs": ins, "files": {p.name: sha256_file(p) for p in files},
            "provenance": provenance(config, seed=run_seeds(config) or None)}
    if cells:  # "row|column" → the record rows behind that cell (spot audit --row --column)
        meta["cells"] = cells
    atomic_write_json(path, meta)


def write_table_files(frame: pd.DataFrame, out_dir, stem: str, inputs=(), config=None) -> list[Path]:
    """``stem.csv``, ``stem.md``, ``stem.tex`` and ``stem.provenance.json`` in ``out_dir`` (atomic); ``config``: the
    run's config (a mapping, preset file or the workflow's JSON list), recorded in the provenance."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = split_lineage(frame)
    paths = [out_dir / f"{stem}.csv", out_dir / f"{stem}.md", out_dir / f"{stem}.tex"]
    # 10 decimals: a mean over seeds keeps its precision, a difference loses its float noise (2.3, not
    # 2.3000000000000007), so the CSV reads as the numbers it holds
    atomic_write_text(paths[0], frame.round(10).to_csv(index=False))
    shown = frame[[c for c in frame.columns if not str(c).endswith(CI_SUFFIXES)]]  # intervals: the CSV's
    atomic_write_text(paths[1], shown.to_markdown(index=False, floatfmt=".2f") + "\n")
    atomic_write_text(paths[2], shown.to_latex(index=False, float_format="%.2f", escape=True))
    _sidecar(out_dir / f"{stem}.provenance.json", inputs, paths, config, cells=frame.attrs.get("lineage"))
    return paths + [out_dir / f"{stem}.provenance.json"]


def write_figure_files(fig, out_dir, stem: str, inputs=(), config=None) -> list[Path]:
    """``stem.pdf`` and ``stem.png`` (atomic: drawn to a temporary name, then renamed) plus a provenance sidecar."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("pdf", "png"):
        path = out_dir / f"{stem}.{ext}"
        with atomic_output(path, suffix=f".tmp.{ext}") as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    _sidecar(out_dir / f"{stem}.provenance.json", inputs, paths, config)
    return paths + [out_dir / f"{stem}.provenance.json"]
