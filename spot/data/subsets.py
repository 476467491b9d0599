"""Seeded, stratified subsets of a split: what a ``limit`` means everywhere in spot.

The first N images of a split are not a sample of it: torchvision's ImageNet splits are sorted by class, so the
first 100 000 training images hold about 78 of the 1 000 classes and the first 2 000 validation images 40 of them.
:func:`stratified_subset` draws N images so that every class keeps its share of the split (largest-remainder
rounding), each class's images in the order of one seeded permutation — so a smaller subset with the same seed is
contained in a larger one (the oracle's 1 000 images are among the evaluation's 2 000) — and returns the indices
sorted, so images are read in the split's order. :func:`subset_record` describes the draw for provenance.
"""
from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["stratified_subset", "subset_record"]


def stratified_subset(labels, n: int | None, seed: int) -> np.ndarray:
    """Sorted int64 indices of ``n`` images of a split with these ``labels``, stratified by class and seeded.

    ``n`` None or ≥ the split's size → every index. Class quotas are ``n · n_c / N`` rounded by largest remainder
    (ties to the lower class id); within class c the images are the first ``quota_c`` of one permutation drawn by
    ``numpy.random.default_rng([seed, c])`` — independent of the other classes and of ``n``, hence nested in ``n``.
    """
    labels = np.asarray(labels).reshape(-1)
    total = len(labels)
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
        raise ValueError(f"a subset size must be an int ≥ 1 (or None for the whole split), got {n!r}")
    if n is None or n >= total:
        return np.arange(total, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / total
    quota = np.floor(exact).astype(np.int64)
    remainder = exact - quota
    # largest remainders first; a stable sort on the negated remainder keeps the lower class first on ties
    for i in np.argsort(-remainder, kind="stable")[: n - int(quota.sum())]:
        quota[i] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        if q == 0:
            continue
        members = np.flatnonzero(labels == c)
        order = np.random.default_rng([int(seed), int(c)]).permutation(len(members))
        chosen.append(members[order[:q]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subset_record(indices: np.ndarray, labels, seed: int | None, split_size: int) -> dict:
    """How a subset was drawn, for a result's provenance: size, kind, seed, classes present, indices' sha256."""
    indices = np.asarray(indices, dtype=np.int64)
    whole = len(indices) == split_size
    present = np.unique(np.asarray(labels).reshape(-1)[indices]) if len(indices) else np.array([])
    return {"kind": "whole split" if whole else "stratified", "seed": None if whole else seed,
            "n_images": int(len(indices)), "split_size": int(split_size), "classes": int(len(present)),
            "indices_sha256": hashlib.sha256(indices.tobytes()).hexdigest()}
