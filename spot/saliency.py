"""Per-image saliency maps for the Salient / Background priors and the saliency gain of Table 3 (pluggable).

``SaliencySettings.source`` picks the source:

* ``article_mask`` — the Fashion-MNIST canvas benchmark's own ground truth: the footprint of the pasted article
  (recomputed from the stored article position and source image; no model involved).

``saliency_maps(data, indices, settings)`` → (B, H, W) float maps in [0, 1] at the evaluation images' size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["SaliencySettings", "saliency_maps", "SOURCES"]

SOURCES = ("article_mask",)


@dataclass
class SaliencySettings:
    source: str = "article_mask"
    clipseg: dict = field(default_factory=lambda: {"model": "CIDAS/clipseg-rd64-refined",
                                                   "prompt": "a photo of the main object"})
    cache_dir: str | None = None

    def validate(self) -> "SaliencySettings":
        if self.source not in SOURCES:
            raise ValueError(f"saliency.source = {self.source!r} is not available; accepted: {', '.join(SOURCES)}")
        return self


def _article_masks(data, indices: torch.Tensor) -> torch.Tensor:
    from .data.fmnist import article_masks, load_fmnist

    if data.kind != "fmnist" or "top_left" not in data.extras:
        raise ValueError("saliency source 'article_mask' needs the Fashion-MNIST canvas benchmark (its article "
                         "positions); use another saliency.source for this dataset")
    cache = data.extras.setdefault("_articles", {})
    if "all" not in cache:  # the source articles, read once from the Fashion-MNIST files the canvases were built from
        from pathlib import Path

        sources = list(data.manifest.get("sources", {}))
        splits, _ = load_fmnist(Path(sources[0]).parent if sources else None)
        cache["all"] = splits[str(data.extras["source_split"])][0][data.extras["source_index"]]
    idx = indices.cpu().numpy()
    masks = article_masks(data.extras["top_left"][idx], cache["all"][idx], data.image_size[-1])
    return torch.from_numpy(masks).float()


def saliency_maps(data, indices: torch.Tensor, settings: SaliencySettings) -> torch.Tensor:
    """Saliency maps (B, H, W) in [0, 1] of the evaluation images ``indices`` of ``data`` (an ``EvalData``)."""
    settings.validate()
    if settings.source == "article_mask":
        return _article_masks(data, indices)
    raise AssertionError(settings.source)
