"""Evaluation images for the experiment commands: a split, normalised as the model was trained, in fixed order.

``EvalData.open(root, split, limit=…, subset_seed=…)`` reads a Fashion-MNIST folder (``spot data fmnist``: held in
memory) or a prepared ImageNet folder (``spot data imagenet``: decoded by DataLoader workers with the paper's
evaluation transform). With a ``limit`` the images are a seeded subset stratified by class
(:func:`~spot.data.subsets.stratified_subset`; never the first N of a class-sorted split), described by ``subset``
for provenance; ``indices=`` picks given images instead (figures). ``batches(batch_size)`` yields ``(images, labels,
indices)`` in the split's order, ``indices`` being the images' indices *in the split*: per-image random draws and
saliency maps are keyed by them, so an image gets the same positions whichever subset it is part of. The
normalisation comes from the model's record (the ``data.mean``/``std`` of the recipe that trained it), or the
model's ``pretrained_cfg`` for ImageNet.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .subsets import stratified_subset, subset_record
from .imagenet import imagenet_dataset
from .transforms import eval_transform
from .fmnist import load_split

__all__ = ["EvalData", "normalisation_of"]


def normalisation_of(record: dict, default=((0.5,), (0.5,))) -> tuple[tuple, tuple]:
    """(mean, std) a checkpoint was trained with: its recipe's ``data.mean``/``std`` (fmnist), else ``default``."""
    data = (record.get("recipe") or {}).get("data") or {}
    if data.get("kind", "fmnist") == "fmnist" and "mean" in data:
        return tuple(data["mean"]), tuple(data["std"])
    return tuple(default[0]), tuple(default[1])


@dataclass
class EvalData:
    kind: str  # fmnist | imagenet
    root: Path
    split: str
    index: torch.Tensor  # (n,) long: the selected images' indices in the split, ascending
    manifest: dict
    subset: dict = field(default_factory=dict)  # how the images were chosen (spot.data.subsets.subset_record)
    images: torch.Tensor | None = None  # fmnist: (n, C, H, W) normalised, the selected images only
    labels: torch.Tensor | None = None  # (n,) labels of the selected images
    dataset: object = None  # imagenet: the whole split as a torchvision dataset with the evaluation transform
    workers: int = 8
    extras: dict = field(default_factory=dict)  # fmnist: top_left / source_index of the whole split (article masks)
    mean: tuple = (0.5,)  # the normalisation applied to the images (undone by saliency sources that need pixels)
    std: tuple = (0.5,)

    @property
    def n(self) -> int:
        return len(self.index)

    @classmethod
    def open(cls, root, split: str = "test", *, mean=(0.5,), std=(0.5,), limit: int | None = None,
             subset_seed: int = 0, indices=None, img_size: int = 224, workers: int = 8,
             crop_mode: str = "center") -> "EvalData":
        """The images of ``split`` of a prepared dataset folder: all, a stratified subset of ``limit`` images drawn
        with ``subset_seed``, or the given split ``indices``. ImageNet images get the evaluation transform at
        ``img_size`` with ``crop_mode`` (:func:`~spot.data.transforms.eval_transform`)."""
        root = Path(root)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be an int ≥ 1 (or omitted for the whole split), got {limit!r}")
        if limit is not None and indices is not None:
            raise ValueError("give a limit (a stratified subset) or indices (given images), not both")
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{root} is not a prepared dataset (no manifest.json): build it with "
                                    f"`spot data fmnist --out {root}` or `spot data imagenet --out {root}`")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("kind") in ("canvas", "plain"):
            x, y = load_split(root, split).tensors()
            index, subset = _select(y.numpy(), limit, subset_seed, indices, split)
            m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
            s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
            extras = {}
            with np.load(root / manifest["splits"][split]["file"]) as arrays:
                for key in ("top_left", "source_index"):
                    if key in arrays:
                        extras[key] = arrays[key]
                if "source_split" in arrays:
                    extras["source_split"] = str(arrays["source_split"])
            return cls("fmnist", root, split, index, manifest, subset, images=(x[index] - m) / s, labels=y[index],
                       extras=extras, mean=tuple(mean), std=tuple(std))

        dataset = imagenet_dataset(root, split, eval_transform(img_size=img_size, mean=mean, std=std,
                                                               crop_mode=crop_mode))
        targets = np.asarray(dataset.targets)
        index, subset = _select(targets, limit, subset_seed, indices, split)
        return cls("imagenet", root, split, index, manifest, subset, labels=torch.from_numpy(targets[index.numpy()]),
                   dataset=dataset, workers=workers, mean=tuple(mean), std=tuple(std))

    def batches(self, batch_size: int):
        """``(images, labels, split indices)`` batches in the split's order."""
        if self.images is not None:
            for i in range(0, self.n, batch_size):
                rows = torch.arange(i, min(i + batch_size, self.n))
                yield self.images[rows], self.labels[rows], self.index[rows]
            return
        workers = min(self.workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(self.dataset, self.index.tolist()),
                                             batch_size=batch_size, shuffle=False, num_workers=workers,
                                             pin_memory=torch.cuda.is_available())
        start = 0
        for x, y in loader:
            yield x, y, self.index[start:start + len(y)]
            start += len(y)

    def take(self, indices) -> torch.Tensor:
        """The normalised images (B, C, H, W) of these split indices (each must be one of the selected images for
        Fashion-MNIST, which holds only those; any index of the split for ImageNet)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if self.images is None:
            return torch.stack([self.dataset[int(i)][0] for i in idx])
        rows = torch.searchsorted(self.index, idx).clamp_max(max(self.n - 1, 0))
        if self.n == 0 or not torch.equal(self.index[rows], idx):
            missing = idx[self.index[rows] != idx].tolist() if self.n else idx.tolist()
            raise IndexError(f"split indices {missing[:5]} are not among the {self.n} opened images of {self.split!r}")
        return self.images[rows]

    @property
    def image_size(self) -> tuple[int, int]:
        if self.images is not None:
            return tuple(self.images.shape[-2:])
        x, _ = self.dataset[int(self.index[0])]
        return tuple(x.shape[-2:])


def _select(labels: np.ndarray, limit, seed, indices, split: str) -> tuple[torch.Tensor, dict]:
    total = len(labels)
    if indices is not None:
        idx = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if len(idx) and (idx[0] < 0 or idx[-1] >= total):
            raise IndexError(f"indices outside the {total} images of split {split!r}")
        record = {**subset_record(idx, labels, None, total), "kind": "given indices"}
    else:
        idx = stratified_subset(labels, limit, seed)
        record = subset_record(idx, labels, seed, total)
    return torch.from_numpy(idx), record
