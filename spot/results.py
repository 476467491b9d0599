"""Tidy result tables with provenance: one row per measurement, written atomically as CSV + a JSON sidecar.

Every experiment command (``spot evaluate``, ``oracle``, ``transfer``, ``throughput``) writes ``OUT.csv`` (columns
such as model, prior, budget, setting, metric, value, n_images, seed) and ``OUT.json`` — the provenance block
(code version, config, checksums of checkpoints and the data manifest, software, device, times) plus the rows'
column names — so that any number in a table or figure can be traced to the run that produced it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .provenance import atomic_write_json, atomic_write_text, provenance, sha256_file

__all__ = ["write_table", "read_table", "input_checksums"]


def input_checksums(checkpoints: dict | None = None, data_root=None) -> dict:
    """sha256 of each checkpoint file (name → digest) and of the data manifest (``data:manifest``)."""
    out = {}
    for name, path in (checkpoints or {}).items():
        out[f"checkpoint:{name}"] = sha256_file(path)
    if data_root is not None:
        manifest = Path(data_root) / "manifest.json"
        if manifest.is_file():
            out["data:manifest"] = sha256_file(manifest)
    return out


def write_table(rows: list[dict], out, *, config: dict, inputs: dict | None = None, seed=None, device=None,
                started: float | None = None, extra: dict | None = None) -> Path:
    """Write ``rows`` to ``out`` (``.csv``) and the provenance to ``out`` with suffix ``.json``; both atomic."""
    import pandas as pd

    out = Path(out)
    if out.suffix != ".csv":
        raise ValueError(f"result tables are CSV files: {out} should end in .csv")
    frame = pd.DataFrame(rows)
    atomic_write_text(out, frame.to_csv(index=False))
    meta = {"table": out.name, "rows": len(frame), "columns": list(frame.columns),
            "wall_time_s": None if started is None else time.time() - started,
            "provenance": provenance(config, seed=seed, device=device, inputs=inputs), **(extra or {})}
    atomic_write_json(out.with_suffix(".json"), meta)
    return out


def read_table(path):
    """A result table as a pandas DataFrame, with its provenance in ``frame.attrs["provenance"]``."""
    import pandas as pd

    path = Path(path)
    frame = pd.read_csv(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        frame.attrs.update(json.loads(sidecar.read_text()))
    return frame
