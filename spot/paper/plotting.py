"""Drawing token positions and windows over an image (Figures 1–4)."""
from __future__ import annotations

import numpy as np
import torch

from .. import _checks
from ..core.positions import grid_shape, to_pixels

__all__ = ["plot_positions"]


def _as_hwc(image) -> np.ndarray:
    img = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=float)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)  # (C, H, W) → (H, W, C)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W), (H, W, C) or (C, H, W), got shape {img.shape}")
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def plot_positions(image, positions=None, window=None, *, ax=None, grid_patch=None, trajectory=None,
                   color="tab:green", alpha: float = 0.9, linewidth: float = 1.2, cmap: str = "plasma",
                   marker_size: float = 8.0, title: str | None = None):
    """Draw an image with token positions, their windows, the patch grid and/or oracle trajectories.

    Args:
        image: (H, W), (H, W, C) or (C, H, W) array/tensor; shown rescaled to [0, 1].
        positions: (m, 2) positions (y, x) in [0, 1]; drawn as points, and as k×k squares when ``window`` is set.
        window: window size k (or (kh, kw)) in pixels.
        ax: a matplotlib Axes (default: a new figure).
        grid_patch: draw the patch-grid lines of this patch size.
        trajectory: (T, m, 2) positions over T optimisation steps; each token's path is drawn coloured from the
            start (dark) to the end (bright) with ``cmap``, and the final positions get the windows.
    Returns:
        The Axes. Pixel i spans [i, i + 1) on the axes, so position p sits at p·H, p·W.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    img = _as_hwc(image)
    H, W = img.shape[:2]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4 * H / W))
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=(0, W, H, 0), interpolation="nearest")
    if grid_patch is not None:
        gh, gw = grid_shape((H, W), grid_patch)
        ph, pw = _checks.pair(grid_patch, "grid_patch")
        ax.hlines(np.arange(1, gh) * ph, 0, W, colors="white", linewidths=0.5, alpha=0.6)
        ax.vlines(np.arange(1, gw) * pw, 0, H, colors="white", linewidths=0.5, alpha=0.6)
    if trajectory is not None:
        traj = torch.as_tensor(trajectory, dtype=torch.float64)
        if traj.dim() != 3 or traj.shape[-1] != 2:
            raise ValueError(f"trajectory must have shape (T, m, 2), got {tuple(traj.shape)}")
        pix = to_pixels(traj, (H, W)).numpy()  # (T, m, 2) as (y, x)
        T = pix.shape[0]
        colours = plt.get_cmap(cmap)(np.linspace(0, 1, max(T - 1, 1)))
        for j in range(pix.shape[1]):
            segs = np.stack([pix[:-1, j, ::-1], pix[1:, j, ::-1]], axis=1)  # (T-1, 2, (x, y))
            ax.add_collection(LineCollection(segs, colors=colours, linewidths=linewidth))
        ax.scatter(pix[-1, :, 1], pix[-1, :, 0], s=marker_size, c=[colours[-1]], zorder=3)
        positions = traj[-1] if positions is None else positions
    if positions is not None:
        pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 2)
        pix = to_pixels(pos, (H, W)).numpy()
        if trajectory is None:
            ax.scatter(pix[:, 1], pix[:, 0], s=marker_size, c=color, zorder=3)
        if window is not None:
            kh, kw = _checks.pair(window, "window")
            for y, x in pix:
                ax.add_patch(Rectangle((x - kw / 2, y - kh / 2), kw, kh, fill=False, edgecolor=color,
                                       linewidth=linewidth, alpha=alpha))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
