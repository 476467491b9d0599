"""The learned keep predictor of SPOT-AD and DynamicViT (the SPOT-AD paper App. 6.1; DynamicViT's design where it is silent).

Token embeddings (B, n, C) → LayerNorm → Linear(C, d_remap) → GELU; the first half of the channels stays per token
(``z_local``), the second half is averaged over the retained tokens and broadcast (``z_global``); the attention
descriptors (if any) are concatenated: E = d_remap + descriptors. Then Linear(E, E/2) → GELU → Linear(E/2, E/4) →
GELU → Linear(E/4, 2) → log-softmax; channel 0 is "keep".
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["KeepPredictor"]


class KeepPredictor(nn.Module):
    def __init__(self, embed_dim: int, d_remap: int, num_stats: int = 0, init_std: float | None = None):
        """``init_std``: Linear weights ``trunc_normal(std)`` and biases 0 (DynamicViT's ``_init_weights``, applied
        to its predictors before the pretrained weights load); None: PyTorch's default initialisation."""
        super().__init__()
        self.d_remap, self.num_stats = d_remap, num_stats
        self.remap = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, d_remap), nn.GELU()) \
            if d_remap else None
        E = d_remap + num_stats
        self.mlp = nn.Sequential(nn.Linear(E, E // 2), nn.GELU(), nn.Linear(E // 2, E // 4), nn.GELU(),
                                 nn.Linear(E // 4, 2), nn.LogSoftmax(dim=-1))
        if init_std is not None:
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.trunc_normal_(layer.weight, std=init_std)
                    nn.init.zeros_(layer.bias)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor | None = None,
                stats: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n, 2) log-probabilities (keep, drop) of the n patch tokens; ``keep`` (B, n): the retained ones
        (training masks; None = all), over which ``z_global`` averages."""
        parts = []
        if self.remap is not None:
            z = self.remap(tokens)
            local, glob = z.split(self.d_remap // 2, dim=-1)
            if keep is None:
                glob = glob.mean(dim=1, keepdim=True)
            else:
                w = keep[..., None].to(glob.dtype)
                glob = (glob * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp_min(1e-6)
            parts += [glob.expand_as(local), local]
        if stats is not None:
            parts.append(stats.to(tokens.dtype))
        return self.mlp(torch.cat(parts, dim=-1))
