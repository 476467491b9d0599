"""Token positions on the patch grid: grid centres, snapping, and the pixel convention.

Positions are ``(y, x)`` in ``[0, 1]²`` (0 and 1 are the outer image edges). The patch-grid cell ``(r, c)`` of a
ViT with patch ``p`` on an ``H×W`` image has centre ``((r + ½)·p/H, (c + ½)·p/W)``; cells are numbered
row-major, the order of a ViT's patch tokens.
"""
from __future__ import annotations

from .._lazy import lazy

torch = lazy("torch")

from .. import _checks

__all__ = ["grid_shape", "grid_positions", "snap_to_grid", "grid_cell_index", "to_pixels"]


def grid_shape(image_size, patch) -> tuple[int, int]:
    """(rows, cols) of the patch grid; a ViT's patch convolution covers ``floor(H/p) × floor(W/p)`` cells."""
    (H, W), (ph, pw) = _checks.image_size_of(image_size), _checks.pair(patch, "patch")
    if ph > H or pw > W:
        raise ValueError(f"patch {(ph, pw)} is larger than the image {(H, W)}")
    return H // ph, W // pw


def grid_positions(image_size, patch, *, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Centres of the patch grid as (rows·cols, 2) positions (y, x), row-major like a ViT's patch tokens.

    float64 by default (as all positions in ``spot``): a float32 position at 224 px is only good to ~1e-5 px.
    """
    (H, W), (ph, pw) = _checks.image_size_of(image_size), _checks.pair(patch, "patch")
    gh, gw = grid_shape((H, W), (ph, pw))
    ys = (torch.arange(gh, dtype=torch.float64) + 0.5) * ph / H
    xs = (torch.arange(gw, dtype=torch.float64) + 0.5) * pw / W
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
    return grid.to(dtype=dtype or torch.float64, device=device)


def grid_cell_index(positions: torch.Tensor, image_size, patch) -> torch.Tensor:
    """Row-major index of the grid cell nearest each position (..., 2) → (...). Outside points clamp to the border cell."""
    (H, W), (ph, pw) = _checks.image_size_of(image_size), _checks.pair(patch, "patch")
    gh, gw = grid_shape((H, W), (ph, pw))
    r = torch.floor(positions[..., 0].detach().to(torch.float64) * H / ph).clamp(0, gh - 1).long()
    c = torch.floor(positions[..., 1].detach().to(torch.float64) * W / pw).clamp(0, gw - 1).long()
    return r * gw + c


def snap_to_grid(positions: torch.Tensor, image_size, patch) -> torch.Tensor:
    """Move every position to the centre of its nearest patch-grid cell (Table 1's "grid" setting).

    The nearest cell centre of a point is the centre of the cell that contains it (points outside the image
    go to the nearest border cell). The result has the input's shape, dtype and device and no gradient.
    """
    if not isinstance(positions, torch.Tensor) or positions.shape[-1:] != (2,):
        raise ValueError("positions must be a tensor of shape (..., 2) holding (y, x)")
    centres = grid_positions(image_size, patch, dtype=positions.dtype, device=positions.device)
    return centres[grid_cell_index(positions, image_size, patch)]


def to_pixels(positions: torch.Tensor, image_size) -> torch.Tensor:
    """Positions (y, x) in [0, 1] → continuous pixel coordinates (y·H, x·W), pixel i spanning [i, i+1)."""
    H, W = _checks.image_size_of(image_size)
    return positions * positions.new_tensor([H, W])
