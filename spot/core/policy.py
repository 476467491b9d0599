"""Learned placement: a small policy that glances at the image and says where to read its m tokens.

    policy = GlancePolicy(PolicySettings(in_chans=1))
    positions = policy.positions(images, 9)                     # (B, 9, 2), differentiable in the policy's weights
    place("learned:results/embedded/models/cls_in1k_policy.safetensors", 9, ImageBatch(size, B, images=images))

The policy sees a *glance* — the image average-pooled to ``glance`` × ``glance`` pixels — and turns it, through two
3×3 convolutions and a 1×1 head, into a relevance map at the glance's resolution: a softmax over its cells mixed
with a uniform ``floor`` share (every region keeps some density). The positions for any budget m are the Isotropic
layout of m points moved through that map (:func:`~spot.core.placement.priors.transport_layout`, as Salient moves it
through a saliency map): **one policy for every budget** — the map does not depend on m, m only sets how finely the
layout samples it, so the policy trained on the budget schedule of the SPoT model serves all of them, and a budget
it was not trained at gets a layout as consistent as Salient's. The head starts at zero: an untrained policy gives
the Isotropic layout exactly, so training starts from the best label-free prior's layout, not below it.

Positions are differentiable in the map (the transport's inverse CDFs are linear inside each cell) and the
tokenizer's bilinear windows are differentiable in the positions, so the policy trains with the classification
loss of the SPoT model it places tokens for (``task: place``, :mod:`spot.train`). It reads no label at inference.

A trained policy is stored as safetensors (keys ``policy.*``) beside a JSON record holding its settings and the
file's sha256 (checked on load): :func:`load_policy`; the ``learned`` placement names that file.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..provenance import sha256_file
from .placement.learned import POLICY_PREFIX, PolicySettings
from .placement.priors import isotropic_layout, transport_layout

__all__ = ["GlancePolicy", "PlacedSPoT", "load_policy", "policy_record"]

class GlancePolicy(nn.Module):
    """images (B, C, H, W) → relevance maps (B, g, g) → positions (B, m, 2) for any m (module docs)."""

    def __init__(self, settings: PolicySettings):
        super().__init__()
        self.settings = settings.validate()
        c1, c2 = settings.channels
        self.features = nn.Sequential(
            nn.Conv2d(settings.in_chans, c1, 3, padding=1), nn.GELU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.GELU())
        self.head = nn.Conv2d(c2, 1, 1)
        nn.init.zeros_(self.head.weight)  # an untrained policy: the uniform map, i.e. the Isotropic layout
        nn.init.zeros_(self.head.bias)

    def glance(self, images: torch.Tensor) -> torch.Tensor:
        """The low-resolution view the policy sees: (B, C, g, g), each pixel the mean of its region."""
        g = self.settings.glance
        return F.adaptive_avg_pool2d(images.to(self.head.weight.dtype), (g, g))

    def relevance(self, images: torch.Tensor) -> torch.Tensor:
        """Each image's map (B, g, g), summing to 1: softmax over the cells, mixed with the uniform ``floor``."""
        logits = self.head(self.features(self.glance(images)))[:, 0]
        B, g, _ = logits.shape
        p = logits.reshape(B, -1).softmax(dim=-1).reshape(B, g, g)
        floor = float(self.settings.floor)
        return (1.0 - floor) * p + floor / (g * g)

    def positions(self, images: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """(B, m, 2) float64 in [0, 1]: the Isotropic layout of m points transported through each image's map."""
        layout = isotropic_layout(int(num_tokens), tuple(images.shape[-2:])).to(images.device)
        return transport_layout(layout, self.relevance(images).to(torch.float64))

    def forward(self, images: torch.Tensor, num_tokens: int) -> torch.Tensor:
        return self.positions(images, num_tokens)


def policy_record(policy: GlancePolicy) -> dict:
    """What a checkpoint's record says about its policy (:func:`load_policy` rebuilds it from this)."""
    return {"policy": {**asdict(policy.settings), "channels": list(policy.settings.channels)}}  # JSON: a list


@functools.lru_cache(maxsize=8)
def _load(path: str, stamp: tuple) -> GlancePolicy:
    record_path = Path(path).with_suffix(".json")
    if not record_path.exists():
        raise FileNotFoundError(f"learned placement: {path} has no record {record_path.name} (the policy's settings "
                                f"and sha256): train it with `spot train --recipe <a task: place recipe>`")
    record = json.loads(record_path.read_text())
    if "policy" not in record:
        raise ValueError(f"learned placement: {record_path} holds no policy (is it a checkpoint of task: place?)")
    digest = sha256_file(path)
    if record.get("sha256") not in (None, digest):
        raise ValueError(f"learned placement: {path} does not match its record's sha256 (changed after training); "
                         f"retrain it or restore the file")
    policy = GlancePolicy(PolicySettings(**record["policy"]))
    state = {k[len(POLICY_PREFIX):]: v for k, v in load_file(path).items() if k.startswith(POLICY_PREFIX)}
    policy.load_state_dict(state)
    return policy.eval().requires_grad_(False)


def load_policy(path) -> GlancePolicy:
    """The trained policy of a checkpoint (safetensors + record; sha256 checked), cached while the file is unchanged."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"learned placement: no policy checkpoint at {path}")
    stat = path.stat()
    return _load(str(path.resolve()), (stat.st_mtime_ns, stat.st_size))


class PlacedSPoT(nn.Module):
    """A SPoT model whose token positions come from a glance policy: ``forward(images, num_tokens=m)`` places m
    tokens with ``policy`` and classifies them with ``model``; given positions (or none: the full grid) it is
    ``model`` itself. What ``task: place`` trains (the policy, with the model frozen or tuned jointly) and stores
    (keys ``policy.*`` and ``model.*``)."""

    def __init__(self, policy: GlancePolicy, model: nn.Module):
        super().__init__()
        self.policy = policy
        self.model = model

    def positions(self, images: torch.Tensor, num_tokens: int) -> torch.Tensor:
        return self.policy.positions(images, num_tokens)

    def train(self, mode: bool = True) -> "PlacedSPoT":
        """The policy in ``mode``; a frozen model (no parameter to train) stays in eval mode: no dropout or
        drop-path in the classifier whose loss the policy learns from."""
        self.training = mode
        self.policy.train(mode)
        self.model.train(mode and any(p.requires_grad for p in self.model.parameters()))
        return self

    def forward_features(self, images: torch.Tensor, positions=None, *, num_tokens=None) -> torch.Tensor:
        if positions is None and num_tokens is not None:
            positions = self.positions(images, num_tokens)
        return self.model.forward_features(images, positions)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(x, pre_logits=pre_logits)

    def forward(self, images: torch.Tensor, positions=None, *, num_tokens=None) -> torch.Tensor:
        return self.forward_head(self.forward_features(images, positions, num_tokens=num_tokens))
