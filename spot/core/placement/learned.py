"""The ``learned`` placement: the positions a trained glance policy (:mod:`spot.core.policy`) gives each image.

    place("learned:results/embedded/models/cls_in1k_policy.safetensors", 9, ImageBatch(size, B, images=images))

This module holds the placement and the policy's typed settings only, without torch (the registry is what the
workflow checks configs against); the network, its training and loading are :mod:`spot.core.policy`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ... import _checks
from ..._lazy import lazy
from . import ImageBatch, Placement, register
from .priors import generator_device

torch = lazy("torch")

__all__ = ["PolicySettings", "Learned", "POLICY_PREFIX"]

POLICY_PREFIX = "policy."  # the policy's keys in a checkpoint that may also hold the SPoT model it was trained with


@dataclass(frozen=True)
class PolicySettings:
    """The policy's shape: ``glance`` (side of the average-pooled glance, pixels), the two convolutions' ``channels``,
    the uniform ``floor`` share of the map and the images' ``in_chans``."""

    glance: int = 12
    channels: list = field(default_factory=lambda: [8, 16])
    floor: float = 0.1
    in_chans: int = 3

    def validate(self) -> "PolicySettings":
        _checks.integer(self.glance, "glance", minimum=2, meaning=" (pixels of the glance's side)")
        if not isinstance(self.channels, (list, tuple)) or len(self.channels) != 2:
            raise ValueError(f"channels must be two positive integers, got {self.channels!r}")
        for c in self.channels:
            _checks.integer(c, "each of channels")
        _checks.number(self.floor, "floor", at_least=0, below=1, meaning=" (the map's uniform share)")
        _checks.integer(self.in_chans, "in_chans")
        return self


@register
@dataclass(frozen=True)
class Learned(Placement):
    """The positions of a trained :class:`~spot.core.policy.GlancePolicy` (``checkpoint``: its safetensors file; written
    ``learned:<checkpoint>`` or ``{name: learned, checkpoint: …}``). Reads the batch's images, never its labels;
    deterministic per image."""

    name: ClassVar[str] = "learned"
    needs_images: ClassVar[bool] = True
    positional: ClassVar[str] = "checkpoint"
    checkpoint: str = ""

    def validate(self) -> "Learned":
        if not isinstance(self.checkpoint, str) or not self.checkpoint:
            raise ValueError("learned placement: give the policy's checkpoint (learned:<path>.safetensors)")
        return self

    @property
    def random(self) -> bool:  # type: ignore[override]
        return False

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        from ..policy import load_policy  # the network imports torch: the registry stays torch-free

        policy = load_policy(self.checkpoint)
        images = batch.images
        device = next(policy.parameters()).device
        with torch.no_grad():
            out = policy.positions(images.to(device), num_tokens)
        return out.to(torch.float64).to(generator_device(generator))
