"""Figure 4's trajectories: every step of the SPoT-ON search for the first images, stored beside the oracle's table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...provenance import atomic_output

__all__ = ["write_trajectories"]


def write_trajectories(path, per_model: dict) -> Path | None:
    """Write Figure 4's trajectories of every model to one ``.npz`` (atomically).

    Arrays: ``models`` (M,) names; ``positions`` float32 (M, steps + 1, n, m, 2) (y, x) in [0, 1], entry 0 the
    Isotropic init; ``labels``, ``indices`` (n,) (the images' indices in the evaluation split); ``initial_correct``
    and ``final_correct`` (M, n) bool; ``prior``, ``budget``, ``lr``, ``steps``. None (nothing written) without
    trajectories.
    """
    per_model = {k: v for k, v in per_model.items() if v is not None}
    if not per_model:
        return None
    names = list(per_model)
    first = per_model[names[0]]
    for n in names[1:]:
        t = per_model[n]
        if not np.array_equal(t["indices"], first["indices"]) or t["positions"].shape != first["positions"].shape:
            raise ValueError(f"trajectories of {n!r} and {names[0]!r} cover different images or shapes")
    arrays = dict(models=np.array(names), labels=first["labels"], indices=first["indices"],
                  positions=np.stack([per_model[n]["positions"] for n in names]).astype(np.float32),
                  initial_correct=np.stack([per_model[n]["initial_correct"] for n in names]),
                  final_correct=np.stack([per_model[n]["final_correct"] for n in names]),
                  prior=np.array(first["prior"]), budget=np.array(first["budget"]), lr=np.array(first["lr"]),
                  steps=np.array(first["steps"]))
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path
