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

__all__ = ["write_table", "read_csv", "read_table", "input_checksums", "parse_model_args"]


def parse_model_args(items) -> dict[str, Path]:
    """``--model NAME=PATH`` values → ``{NAME: Path}`` (names unique, at least one)."""
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model expects NAME=PATH (e.g. cls_in1k=checkpoints/retrofit_cls.safetensors), "
                             f"got {item!r}")
        if name in out:
            raise ValueError(f"--model {name!r} is given twice; give every model a distinct name")
        out[name] = Path(path)
    if not out:
        raise ValueError("give at least one --model NAME=PATH")
    return out


def input_checksums(checkpoints: dict | None = None, data_root=None) -> dict:
    """``{"checkpoint:NAME": {"path", "sha256", "record_sha256"}, "data:manifest": {"path", "sha256"}}`` for the
    provenance block: the path lets ``spot audit`` follow the chain, the checksums tell whether the file (and the
    checkpoint's record) changed since."""
    out = {}
    for name, path in (checkpoints or {}).items():
        entry = {"path": str(path), "sha256": sha256_file(path)}
        record = Path(path).with_suffix(".json")
        if record.is_file():  # the record is part of the chain: audit checks it against this checksum
            entry["record_sha256"] = sha256_file(record)
        out[f"checkpoint:{name}"] = entry
    if data_root is not None:
        manifest = Path(data_root) / "manifest.json"
        if manifest.is_file():
            out["data:manifest"] = {"path": str(manifest), "sha256": sha256_file(manifest)}
    return out


def write_table(rows: list[dict], out, *, config: dict, inputs: dict | None = None, seed=None, device=None,
                started: float | None = None, extra: dict | None = None) -> Path:
    """Write ``rows`` to ``out`` (``.csv``) and the provenance to ``out`` with suffix ``.json``; both atomic."""
    import pandas as pd

    out = Path(out)
    if out.suffix != ".csv":
        raise ValueError(f"result tables are CSV files: {out} should end in .csv")
    frame = pd.DataFrame(rows)
    for column in frame.columns:  # integer columns with gaps (e.g. seed of deterministic rows) stay integers
        values = frame[column]
        if values.dtype.kind == "f" and values.notna().any() and (values.dropna() % 1 == 0).all() and \
                values.isna().any():
            frame[column] = values.astype("Int64")
    atomic_write_text(out, frame.to_csv(index=False))
    meta = {"table": out.name, "rows": len(frame), "columns": list(frame.columns),
            "wall_time_s": None if started is None else time.time() - started,
            "provenance": provenance(config, seed=seed, device=device, inputs=inputs), **(extra or {})}
    atomic_write_json(out.with_suffix(".json"), meta)
    return out


def read_csv(path):
    """A result table's rows as a pandas DataFrame. Only an empty cell is missing: a cell of packed ``outcomes``
    (:mod:`spot.stats`) that happens to read ``NULL`` or ``None`` stays text."""
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"outcomes": str})


def read_table(path):
    """A result table as a pandas DataFrame, with its provenance in ``frame.attrs["provenance"]``."""
    path = Path(path)
    frame = read_csv(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        frame.attrs.update(json.loads(sidecar.read_text()))
    return frame
