"""Evaluation images for the experiment commands: a split, normalised as the model was trained, in fixed order.

``EvalData.open(root, split, model_record=…, limit=…)`` reads a Fashion-MNIST folder (``spot data fmnist``: held in
memory) or a prepared ImageNet folder (``spot data imagenet``: decoded by DataLoader workers with the paper's
evaluation transform). ``batches(batch_size)`` yields ``(images, labels, indices)`` in the split's order, so every
command sees the same first ``limit`` images and results are reproducible. The normalisation comes from the model's
record (the ``data.mean``/``std`` of the recipe that trained it), or the model's ``pretrained_cfg`` for ImageNet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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
    n: int
    manifest: dict
    images: torch.Tensor | None = None  # fmnist: (N, C, H, W) normalised
    labels: torch.Tensor | None = None
    dataset: object = None  # imagenet: a torchvision dataset with the evaluation transform
    workers: int = 8
    extras: dict = field(default_factory=dict)  # fmnist: top_left / source_index arrays (article masks)
    mean: tuple = (0.5,)  # the normalisation applied to the images (undone by saliency sources that need pixels)
    std: tuple = (0.5,)

    @classmethod
    def open(cls, root, split: str = "test", *, mean=(0.5,), std=(0.5,), limit: int | None = None,
             img_size: int = 224, workers: int = 8) -> "EvalData":
        """The first ``limit`` images of ``split`` (all when None) of a prepared dataset folder."""
        root = Path(root)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be ≥ 1 (or omitted for the whole split), got {limit}")
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{root} is not a prepared dataset (no manifest.json): build it with "
                                    f"`spot data fmnist --out {root}` or `spot data imagenet --out {root}`")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("kind") in ("canvas", "plain"):
            from .fmnist import load_split

            ds = load_split(root, split)
            x, y = ds.tensors()
            n = len(y) if limit is None else min(limit, len(y))
            m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
            s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
            extras = {}
            with np.load(root / manifest["splits"][split]["file"]) as arrays:
                for key in ("top_left", "source_index"):
                    if key in arrays:
                        extras[key] = arrays[key][:n]
                if "source_split" in arrays:
                    extras["source_split"] = str(arrays["source_split"])
            return cls("fmnist", root, split, n, manifest, images=(x[:n] - m) / s, labels=y[:n], extras=extras,
                       mean=tuple(mean), std=tuple(std))
        from .imagenet import imagenet_dataset
        from .transforms import eval_transform

        dataset = imagenet_dataset(root, split, eval_transform(img_size=img_size, mean=mean, std=std))
        n = len(dataset) if limit is None else min(limit, len(dataset))
        if n < len(dataset):
            dataset = torch.utils.data.Subset(dataset, range(n))
        return cls("imagenet", root, split, n, manifest, dataset=dataset, workers=workers, mean=tuple(mean),
                   std=tuple(std))

    def batches(self, batch_size: int):
        """``(images, labels, indices)`` batches in the split's order."""
        if self.images is not None:
            for i in range(0, self.n, batch_size):
                idx = torch.arange(i, min(i + batch_size, self.n))
                yield self.images[idx], self.labels[idx], idx
            return
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=False,
                                             num_workers=self.workers, pin_memory=torch.cuda.is_available())
        start = 0
        for x, y in loader:
            yield x, y, torch.arange(start, start + len(y))
            start += len(y)

    @property
    def image_size(self) -> tuple[int, int]:
        if self.images is not None:
            return tuple(self.images.shape[-2:])
        x, _ = self.dataset[0]
        return tuple(x.shape[-2:])
