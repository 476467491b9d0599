"""The paper's tables and figures, built from a run's result tables (the notebooks in notebooks/ call these).

Every table and figure is one registered builder (:mod:`spot.paper.registry`; the builders are in
:mod:`spot.paper.tables` and :mod:`spot.paper.figures`)::

    frame = paper.build("table5", {"evaluation": [...], "oracle": [...]}, config)   # a pandas DataFrame
    paper.write("table5", frame, "paper_figures/embedded", inputs, config)            # CSV, Markdown, LaTeX
    fig = paper.build("figure5", inputs, config)                                      # a matplotlib figure
    paper.write("figure5", fig, out_dir, inputs)                                      # PDF, PNG

Tables are laid out as the paper's (rows and columns as published, numbers as measured by this run — never typed in,
except Table 8's ElasticViT row, which is the published result of Pardyl et al. (2025) and labelled as such); every
written file has a provenance sidecar listing the result files (and their sha256) it was computed from. ``config`` is
the run's config: a mapping, a preset file, or the JSON list of files and overrides the workflow passes.
"""
from __future__ import annotations

import json
from pathlib import Path

from ._common import ELASTICVIT_TABLE8, load_run_config, split_lineage, write_figure_files, write_table_files
from .registry import ARTIFACTS, RESULT_KINDS, Artifact, artifact
from . import figures, findings, learned, pruning, tables  # noqa: E402,F401 — registers the builders

__all__ = ["ARTIFACTS", "RESULT_KINDS", "Artifact", "artifact", "build", "write", "write_table_files",
           "write_figure_files", "ELASTICVIT_TABLE8"]


def _inputs(inputs) -> dict:
    """``{kind: [paths]}`` from a mapping or its JSON text (papermill passes strings)."""
    if isinstance(inputs, str):
        inputs = json.loads(inputs) if inputs.strip() else {}
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs must map result kinds ({', '.join(RESULT_KINDS)}) to lists of files, got "
                         f"{type(inputs).__name__}")
    unknown = sorted(set(inputs) - set(RESULT_KINDS))
    if unknown:
        raise ValueError(f"unknown result kind(s) {unknown}; accepted: {', '.join(RESULT_KINDS)}")
    return {k: [Path(p) for p in ([v] if isinstance(v, (str, Path)) else v)] for k, v in inputs.items()}


def build(name: str, inputs, config):
    """Table or figure ``name`` (``table5``, ``figure5b`` …) from ``inputs`` (``{kind: [paths]}``: what it reads,
    :data:`RESULT_KINDS`; figures that draw images find the dataset beside its ``data`` manifest) and the run's
    ``config``."""
    a = artifact(name)
    inputs = _inputs(inputs)
    config = load_run_config(config)
    if a.kind == "figure":
        import matplotlib

        matplotlib.use("Agg")
        return a.build(inputs, config)
    return split_lineage(a.build(inputs, config))  # which record rows made each cell: attrs, not columns


def write(name: str, obj, out_dir, inputs, config=None) -> list[Path]:
    """Write a built table (CSV + Markdown + LaTeX) or figure (PDF + PNG) as ``out_dir/name.*``, with a provenance
    sidecar naming every input file and written file with its sha256, and the run's ``config`` and seeds."""
    files = [p for paths in _inputs(inputs).values() for p in paths]
    if artifact(name).kind == "table":
        return write_table_files(obj, out_dir, name, inputs=files, config=config)
    return write_figure_files(obj, out_dir, name, inputs=files, config=config)
