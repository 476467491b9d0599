"""The ``relevance`` placement: tokens where the model itself looks, from a coarse pass of the same model (no training,
no label).

    place({"name": "relevance", "coarse": 9, "source": "received"}, 18, ImageBatch(size, B, images=x, model=spot_vit))

A coarse pass runs the SPoT model on ``coarse`` tokens (the Isotropic layout) up to its last block, whose attention
map says how much each token matters: ``source="cls"`` — the class token's row (the attentiveness EViT keeps tokens
by), ``"received"`` — the attention each token receives, averaged over every query (a model pooled by the mean of
its tokens has no trained class-token row in its last block). Those weights are splatted onto a
``resolution`` × ``resolution`` map (a Gaussian of σ = ``width`` × the coarse layout's spacing around each token),
mixed with a uniform ``floor`` share, and the Isotropic layout of m points is transported through the map
(:func:`~spot.core.placement.priors.transport_layout`, as Salient does with a saliency map). The cost is the coarse
pass on top of the m-token forward: the cost tables charge it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ... import _checks
from ..._lazy import lazy
from . import ImageBatch, Placement, register
from .priors import generator_device, isotropic_layout, transport_layout

torch = lazy("torch")

__all__ = ["Relevance", "RELEVANCE_SOURCES", "token_relevance", "splat"]

RELEVANCE_SOURCES = ("cls", "received")


def token_relevance(model, images, positions, source: str):
    """The last block's attention to each of the coarse tokens (B, k): the class token's row or the mean received."""
    from ..pruning.encoder import attention  # imports torch: the registry stays torch-free

    x = model.norm_pre(model.embed_tokens(images, positions))
    for block in model.blocks[:-1]:
        x = block(x)
    last = model.blocks[-1]
    _, probs, _ = attention(last.attn, last.norm1(x), view="map")
    probs = probs.mean(dim=1)  # over heads: (B, N, N)
    prefix = model.num_prefix_tokens
    if source == "cls":
        if prefix == 0:
            raise ValueError("relevance placement: source 'cls' needs a class token; use source 'received'")
        return probs[:, 0, prefix:]
    return probs[:, :, prefix:].mean(dim=1)


def splat(positions, weights, resolution: int, sigma: float):
    """Weights (B, k) at positions (B, k, 2) in [0, 1] → maps (B, r, r): a Gaussian of σ around each position,
    evaluated at the cells' centres."""
    r = int(resolution)
    centres = (torch.arange(r, dtype=positions.dtype, device=positions.device) + 0.5) / r
    dy = centres.view(1, 1, r, 1) - positions[..., 0].view(*positions.shape[:2], 1, 1)
    dx = centres.view(1, 1, 1, r) - positions[..., 1].view(*positions.shape[:2], 1, 1)
    kernel = torch.exp(-(dy ** 2 + dx ** 2) / (2 * sigma ** 2))  # (B, k, r, r)
    return (weights[..., None, None].to(kernel.dtype) * kernel).sum(dim=1)


@register
@dataclass(frozen=True)
class Relevance(Placement):
    """Tokens where the model's own coarse pass attends (module docs); deterministic per image."""

    name: ClassVar[str] = "relevance"
    needs_model: ClassVar[bool] = True
    coarse: int = 9
    source: str = "received"
    width: float = 1.0
    floor: float = 0.1
    resolution: int = 16

    def validate(self) -> "Relevance":
        _checks.integer(self.coarse, "relevance placement: coarse", meaning=" (tokens of the coarse pass)")
        if self.source not in RELEVANCE_SOURCES:
            raise ValueError(f"relevance placement: source must be one of {', '.join(RELEVANCE_SOURCES)}, "
                             f"got {self.source!r}")
        _checks.number(self.width, "relevance placement: width", above=0, meaning=" (σ in coarse spacings)")
        _checks.number(self.floor, "relevance placement: floor", at_least=0, below=1)
        _checks.integer(self.resolution, "relevance placement: resolution", minimum=2)
        return self

    @property
    def random(self) -> bool:  # type: ignore[override]
        return False

    def relevance_maps(self, batch: ImageBatch):
        """The maps (B, r, r), each summing to 1, that the layout is transported through."""
        images = batch.images
        size = tuple(images.shape[-2:])
        coarse = isotropic_layout(self.coarse, size).to(images.device)[None].expand(len(images), -1, -1)
        with torch.no_grad():
            weights = token_relevance(batch.model, images, coarse, self.source)
        maps = splat(coarse, weights.to(torch.float64), self.resolution, float(self.width) / math.sqrt(self.coarse))
        maps = maps / maps.sum(dim=(1, 2), keepdim=True).clamp_min(1e-300)
        r2 = self.resolution ** 2
        return (1.0 - float(self.floor)) * maps + float(self.floor) / r2

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        maps = self.relevance_maps(batch)
        layout = isotropic_layout(num_tokens, tuple(batch.images.shape[-2:])).to(maps.device)
        return transport_layout(layout, maps).to(generator_device(generator))
