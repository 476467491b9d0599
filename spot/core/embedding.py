"""Kernelized positional embedding (Aasan et al., 2024), the positional term of SPoT tokens.

``PE(μ) = W·κ(μ)`` with ``κ_l(μ) = exp(−½ ((μ_y − λ_y,l)/σ_y)² − ½ ((μ_x − λ_x,l)/σ_x)²)``: a Gaussian-kernel
interpolation of learned vectors ``W[:, l]`` that sit on a fixed lattice ``λ`` of ``Ly × Lx`` points.

Lattice and kernel width (the defaults used by :meth:`SPoTViT.from_timm`):
    * the lattice is the centres of a ``Ly × Lx`` grid over the image, ``((i + ½)/Ly, (j + ½)/Lx)``; when wrapping a
      ViT it is the ViT's own patch grid, so every learned ``pos_embed`` vector has a lattice point;
    * ``σ = sigma · (1/Ly, 1/Lx)`` with ``sigma = 0.5`` lattice spacings by default (half a patch, 8 px for
      ViT-B/16 at 224², the width the authors' release uses). At this width the lattice kernel matrix is well
      conditioned (smallest eigenvalue ≈ 0.4 of the largest for a 14×14 lattice), so the exact fit below is stable,
      and the embedding varies smoothly between lattice points.

Initialising from a pretrained ViT solves ``W K = P`` (``K`` the kernel matrix of the lattice with itself, ``P`` the
learned ``pos_embed`` grid) by minimum-norm least squares in float64, so ``PE`` equals timm's ``pos_embed`` at
every grid centre.

:class:`ReleaseHeatmapEmbedding` is the authors' release's variant of the same idea (a k×k lattice over the whole
image, σ tied to the image size, and a batch-wide normalisation); it is used only to load the released checkpoints.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks
from .positions import grid_positions

__all__ = ["KernelizedPositionalEmbedding", "ReleaseHeatmapEmbedding"]


class KernelizedPositionalEmbedding(nn.Module):
    """Positions (..., 2) → embeddings (..., D) by Gaussian-kernel interpolation of lattice vectors."""

    def __init__(self, embed_dim: int, lattice_size=(14, 14), sigma: float = 0.5):
        super().__init__()
        Ly, Lx = _checks.pair(lattice_size, "lattice_size")
        if not (sigma > 0):
            raise ValueError(f"sigma (kernel width in lattice spacings) must be > 0, got {sigma}")
        self.lattice_size = (Ly, Lx)
        self.sigma = float(sigma)
        self.weight = nn.Parameter(torch.zeros(Ly * Lx, embed_dim))  # W^T: one vector per lattice point
        nn.init.trunc_normal_(self.weight, std=0.02)

    @property
    def embed_dim(self) -> int:
        return self.weight.shape[1]

    def kernel(self, positions: torch.Tensor) -> torch.Tensor:
        """κ(μ): positions (..., 2) → kernel weights (..., Ly·Lx), in the positions' dtype; separable in y and x."""
        Ly, Lx = self.lattice_size
        sy, sx = self.sigma / Ly, self.sigma / Lx
        # lattice = centres of the Ly×Lx grid (the grid positions of an Ly×Lx image with patch 1)
        ly = (torch.arange(Ly, dtype=torch.float64, device=positions.device) + 0.5).div(Ly).to(positions.dtype)
        lx = (torch.arange(Lx, dtype=torch.float64, device=positions.device) + 0.5).div(Lx).to(positions.dtype)
        ky = torch.exp(-0.5 * ((positions[..., 0, None] - ly) / sy) ** 2)  # (..., Ly)
        kx = torch.exp(-0.5 * ((positions[..., 1, None] - lx) / sx) ** 2)  # (..., Lx)
        return (ky[..., :, None] * kx[..., None, :]).flatten(-2)

    def forward(self, positions: torch.Tensor, image_size=None) -> torch.Tensor:
        """Positions (..., 2) → (..., D); ``image_size`` is accepted for a common call signature and not used."""
        k = self.kernel(positions.to(self.weight.dtype))
        return k @ self.weight

    @torch.no_grad()
    def fit_(self, values: torch.Tensor) -> "KernelizedPositionalEmbedding":
        """Set W so that PE equals ``values`` (Ly, Lx, D) at the lattice points (min-norm least squares, float64)."""
        Ly, Lx = self.lattice_size
        if values.shape != (Ly, Lx, self.embed_dim):
            raise ValueError(f"values must have shape {(Ly, Lx, self.embed_dim)}, got {tuple(values.shape)}")
        lattice = grid_positions((Ly, Lx), 1, dtype=torch.float64, device=self.weight.device)
        K = self.kernel(lattice).cpu()  # (L, L), symmetric positive definite
        sol = torch.linalg.lstsq(K, values.reshape(Ly * Lx, -1).detach().to(torch.float64).cpu(), driver="gelsd").solution
        self.weight.copy_(sol.to(self.weight))
        return self

    @classmethod
    def from_grid(cls, values: torch.Tensor, sigma: float = 0.5) -> "KernelizedPositionalEmbedding":
        """A kernelized PE equal to a learned grid embedding ``values`` (Ly, Lx, D) at the grid centres."""
        Ly, Lx, D = values.shape
        pe = cls(D, (Ly, Lx), sigma).to(device=values.device)
        pe.fit_(values)
        return pe.to(dtype=values.dtype)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, lattice_size={self.lattice_size}, sigma={self.sigma} (lattice spacings)"


class ReleaseHeatmapEmbedding(nn.Module):
    """The positional term of the authors' release (to reproduce the released checkpoints; not ``spot``'s default).

    The release appends a k×k "position channel" to the 3 colour channels of every window and embeds the 4×k×k
    input with one linear map, so the positional term is ``W_pos · h(μ)`` (``W_pos`` the last k² input columns of
    that map, no bias: the bias belongs to the window projection). The heat map is a Gaussian over the fixed lattice
    ``linspace(0, 1, k)²`` of the whole image (row-major: y then x),
    ``h_ij(μ) = exp(−((g_i − μ_y)² + (g_j − μ_x)²) / (2σ²))`` with ``σ = k · n_sigma / (H + W)`` and
    ``n_sigma = softplus(raw_n_sigma)`` (learned; 1.0 in all three checkpoints).

    The release's behaviour, kept here on purpose: the heat maps of the whole call (every image and token of the
    batch) are divided by their single largest value, so a token's embedding depends slightly on the other
    positions in the batch. (It is NaN if every position is so far outside the image that all heat maps underflow
    to 0, as in the release.)

    Called like :class:`KernelizedPositionalEmbedding`, positions (B or 1, m, 2) → (B or 1, m, D), but it needs
    ``image_size=(H, W)`` (``SPoTViT.embed_tokens`` passes it).
    """

    def __init__(self, embed_dim: int, window: int = 16, n_sigma: float = 1.0):
        super().__init__()
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window (the heat map size k) must be an int ≥ 2, got {window!r}")
        if not (n_sigma > 0):
            raise ValueError(f"n_sigma must be > 0, got {n_sigma}")
        self.window = window
        self.weight = nn.Parameter(torch.zeros(window * window, embed_dim))  # W_pos^T: one vector per lattice point
        nn.init.trunc_normal_(self.weight, std=0.02)
        raw = n_sigma + math.log(-math.expm1(-n_sigma))  # softplus⁻¹
        self.raw_n_sigma = nn.Parameter(torch.tensor([raw]))

    @property
    def embed_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def n_sigma(self) -> torch.Tensor:
        return F.softplus(self.raw_n_sigma)

    def heatmap(self, positions: torch.Tensor, image_size) -> torch.Tensor:
        """The normalised position channel: positions (..., m, 2) → (..., m, k·k), divided by the batch maximum."""
        if image_size is None:
            raise ValueError("ReleaseHeatmapEmbedding needs image_size=(H, W): its kernel width depends on it")
        H, W = _checks.pair(tuple(image_size), "image_size")
        k = self.window
        sigma = k * self.n_sigma.to(positions.dtype) / (H + W)
        g = torch.linspace(0, 1, k, dtype=positions.dtype, device=positions.device)
        dy = (g - positions[..., 0, None]) ** 2  # (..., m, k)
        dx = (g - positions[..., 1, None]) ** 2
        heat = torch.exp(-(dy[..., :, None] + dx[..., None, :]) / (2 * sigma ** 2)).flatten(-2)
        return heat / heat.amax()

    def forward(self, positions: torch.Tensor, image_size=None) -> torch.Tensor:
        return self.heatmap(positions.to(self.weight.dtype), image_size) @ self.weight

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, window={self.window} (release heat map, batch-max normalised)"
