"""The subpixel tokenizer: k×k bilinear windows at continuous positions.

Coordinate convention (used everywhere in ``spot``): a position is ``(y, x)`` in ``[0, 1]²`` where 0 and 1
are the outer edges of the image. Position ``p`` is the continuous pixel coordinate ``p·H`` (rows) and
``p·W`` (columns); pixel ``i`` spans ``[i, i + 1)`` and its centre is ``i + ½``.

A window of size ``k`` centred at a position samples the image at the pixel-centre offsets
``j + ½ − k/2`` (``j = 0 … k−1``) from the centre, so a window centred on a patch-grid cell reads exactly the
pixels of that cell, and patch tokenization is the special case ``positions = grid_positions(...)``.
Sampling is bilinear with zeros outside the image (a window crossing the border blends towards 0 over the
last half pixel, like ``grid_sample(padding_mode="zeros")``), and differentiable in the images and the
positions.

``geometry="release"`` selects the authors' release instead (needed to reproduce the released checkpoints exactly,
see :func:`extract_windows`); ``"spot"`` (the default) is the convention above.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks

__all__ = ["extract_windows", "plan_windows", "read_windows", "WindowPlan", "LayoutMemo", "WindowEmbedding",
           "GEOMETRIES"]

GEOMETRIES = ("spot", "release")


def _check_geometry(geometry) -> str:
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown window geometry {geometry!r}; accepted: {', '.join(GEOMETRIES)}")
    return geometry


def extract_windows(images: torch.Tensor, positions: torch.Tensor, window, geometry: str = "spot") -> torch.Tensor:
    """Extract a ``window``×``window`` bilinear patch at every position.

    ``geometry="spot"`` (default) is the pixel-centre window described below and in the module docs.
    ``geometry="release"`` reproduces the authors' release (:func:`_release_windows`): the samples sit at the
    continuous pixel coordinates ``(μ + linspace(−s, s, k))·size`` with ``s = k/(H + W)``, an integer coordinate
    being a pixel centre, bilinear between ``floor(c)`` and ``floor(c) + 1`` clamped to the image, and a sample with
    ``c < 0`` or ``c ≥ size − 1`` on either axis is exactly 0 (a hard cut).

    Args:
        images: (B, C, H, W) floating-point images (any H×W).
        positions: (B, m, 2) or (m, 2) positions (y, x) in [0, 1] (values outside are allowed: the window
            then reads zeros outside the image).
        window: k, or (kh, kw); at most the image size.

    Returns:
        (B, m, C, kh, kw) windows; equal to ``grid_sample(mode="bilinear", padding_mode="zeros",
        align_corners=False)`` at the pixel-centre offsets ``j + ½ − k/2``.

    How: the k samples of a window are one pixel apart, so they share one fractional offset ``(fy, fx)``; a window
    is the bilinear blend of four integer-shifted k×k crops. We gather one (k+1)×(k+1) integer crop per window (one
    batched ``gather``) and blend it, with the coordinate arithmetic in float64. The positions-only half (indices,
    zero mask, offsets: :func:`plan_windows`) is built once for a layout shared by the batch, and on CPU tensors the
    blend is skipped when every window starts on a whole pixel and the mask when every sample is inside (both would
    change no value); :class:`WindowEmbedding` also keeps the plan of a layout reused across forwards. Pass float64
    positions (the default of ``grid_positions`` and the priors) for exactness: a window centred on a grid cell then
    returns that cell's pixels exactly, whereas a float32 position is only good to ~1e-5 px at 224 px.
    """
    if _check_geometry(geometry) == "release":
        positions, kh, kw = _validated(images, positions, window)
        return _release_windows(images, positions.expand(images.shape[0], -1, -1), kh, kw)
    return read_windows(images, plan_windows(images, positions, window))


def _validated(images: torch.Tensor, positions: torch.Tensor, window) -> tuple[torch.Tensor, int, int]:
    """Checked images, window and positions: the positions as (B or 1, m, 2) on the images' device, and (kh, kw)."""
    _checks.images_tensor(images)
    B, C, H, W = images.shape
    kh, kw = _checks.pair(window, "window")
    if kh > H or kw > W:
        raise ValueError(f"window {(kh, kw)} is larger than the image {(H, W)}; use a window of at most {(H, W)}")
    return _checks.positions_tensor(positions, batch_size=B).to(images.device), kh, kw


def plan_windows(images: torch.Tensor, positions: torch.Tensor, window) -> WindowPlan:
    """The checked :class:`WindowPlan` of ``positions`` for ``images`` (``"spot"`` geometry): what
    :func:`extract_windows` reads, before reading it (:func:`read_windows`)."""
    positions, kh, kw = _validated(images, positions, window)
    if positions.requires_grad:
        positions = positions.expand(images.shape[0], -1, -1)  # d/d positions per image, summed by the expand
    return _window_plan(positions, tuple(images.shape[-2:]), (kh, kw), images.dtype)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of a layout read, for one image size: the half of :func:`extract_windows` that depends on
    the positions only (built once for a layout shared by the batch, and reusable while it does not change).

    ``index`` (P, m, nh, nw) flat pixel indices of each window's integer crop (P = 1: shared by the batch);
    ``inside`` (P, 1, m, nh, nw) 1 inside the image and 0 outside, None when every sample is inside;
    ``frac`` (P, m, 2) the windows' shared fractional offsets (carrying d/d positions), None when every window starts
    on a whole pixel and no gradient is asked (the crop is then the window itself, nh × nw = kh × kw)."""

    index: torch.Tensor
    inside: torch.Tensor | None
    frac: torch.Tensor | None
    window: tuple[int, int]


def _window_plan(positions: torch.Tensor, image_size: tuple[int, int], window: tuple[int, int],
                 dtype: torch.dtype) -> WindowPlan:
    """The :class:`WindowPlan` of validated (P, m, 2) positions (``"spot"`` geometry) for images of ``image_size``
    and ``dtype`` (the dtype of the blend weights), on the positions' device."""
    (H, W), (kh, kw), device = image_size, window, positions.device
    # pixel-index coordinate (pixel i has its centre at index i) of the window's first sample, per axis
    start = positions.to(torch.float64) * positions.new_tensor([H, W], dtype=torch.float64) - \
        positions.new_tensor([kh / 2.0, kw / 2.0], dtype=torch.float64)  # (P, m, 2)
    origin = torch.floor(start.detach())
    frac = (start - origin).to(dtype)  # shared by every sample of the window; carries d/d positions
    origin = origin.long()
    # Work that changes no value is skipped where checking costs no device sync (CPU tensors): the blend when every
    # window starts on a whole pixel (no gradient asked), the zero mask when every sample is inside the image.
    host = device.type == "cpu"
    whole = host and not frac.requires_grad and not bool(frac.any())
    nh, nw = (kh, kw) if whole else (kh + 1, kw + 1)  # the integer crop: k×k on whole pixels, else (k+1)×(k+1)
    rows = origin[..., 0, None] + torch.arange(nh, device=device)  # (P, m, nh)
    cols = origin[..., 1, None] + torch.arange(nw, device=device)  # (P, m, nw)
    in_rows, in_cols = (rows >= 0) & (rows < H), (cols >= 0) & (cols < W)
    index = (rows.clamp(0, H - 1) * W)[..., :, None] + cols.clamp(0, W - 1)[..., None, :]  # (P, m, nh, nw)
    inside = None
    if not (host and bool(in_rows.all()) and bool(in_cols.all())):
        inside = in_rows.to(dtype)[..., :, None] * in_cols.to(dtype)[..., None, :]
        inside = inside[:, None]  # (P, 1, m, nh, nw)
    return WindowPlan(index, inside, None if whole else frac, (kh, kw))


def read_windows(images: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    """The (B, m, C, kh, kw) windows of ``images`` (B, C, H, W) that ``plan`` describes: one gather of the integer
    crops, the zero mask, and the bilinear blend of each crop by its window's fractional offset."""
    B, C, H, W = images.shape
    (kh, kw), (P, m, nh, nw) = plan.window, plan.index.shape
    if P == 1:  # one index for every image and channel
        crop = images.reshape(B * C, H * W).index_select(1, plan.index.view(-1))
    else:
        crop = torch.gather(images.flatten(2), 2, plan.index.view(B, 1, -1).expand(B, C, -1))
    crop = crop.view(B, C, m, nh, nw)
    if plan.inside is not None:
        crop = crop * plan.inside  # zeros outside the image
    if plan.frac is None:  # whole pixels: the blends would multiply by 1 and add 0
        return crop.permute(0, 2, 1, 3, 4)
    fy = plan.frac[..., 0].view(P, 1, m, 1, 1)
    fx = plan.frac[..., 1].view(P, 1, m, 1, 1)
    crop = crop[..., :kh, :] * (1 - fy) + crop[..., 1:, :] * fy  # blend along y: (B, C, m, kh, kw+1)
    crop = crop[..., :kw] * (1 - fx) + crop[..., 1:] * fx  # blend along x: (B, C, m, kh, kw)
    return crop.permute(0, 2, 1, 3, 4)


class LayoutMemo:
    """One value computed from a positions tensor, kept while the very same tensor comes back unchanged.

    For a layout shared by the batch ((m, 2) or (1, m, 2)) and reused across forwards (the throughput job's, the
    evaluation's deterministic placements, a user's fixed layout): what depends on the positions only (a
    :class:`WindowPlan`, the positional embedding) is computed once; per-image positions are computed every call
    (and not held). An entry is reused only for the same tensor object at the same version counter (an in-place
    change invalidates it), the same ``key`` (what else the value depends on, e.g. the image size or the parameters'
    versions) and the same autograd and autocast modes; positions that require grad are never memoised, nor
    inference tensors (they have no version counter), nor under ``torch.compile``. The entry holds the tensor, so
    its identity cannot be taken by another."""

    def __init__(self):
        self._entry = None

    def get(self, positions: torch.Tensor, key: tuple, compute):
        shared = positions.dim() == 2 or (positions.dim() == 3 and positions.shape[0] == 1)
        if not shared or positions.requires_grad or positions.is_inference() or torch.compiler.is_compiling():
            return compute()
        device = positions.device.type
        key = (positions._version, torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
               torch.is_autocast_enabled(device), torch.get_autocast_dtype(device), *key)
        entry = self._entry
        if entry is not None and entry[0] is positions and entry[1] == key:
            return entry[2]
        value = compute()
        self._entry = (positions, key, value)
        return value


def _release_windows(images: torch.Tensor, positions: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """The release's window geometry (see :func:`extract_windows`), one batched 4-neighbour gather.

    Per axis the k sample coordinates are ``c = (μ + linspace(−s, s, k))·size``, ``s = k/(H + W)`` (the same ``s``
    for both axes, so the window spans ``2s·H`` rows and ``2s·W`` columns: 16 px with spacing 16/15 px for k = 16 at
    224²). Coordinates are computed in float64; the result is differentiable in images and positions.
    """
    B, C, H, W = images.shape
    m = positions.shape[1]
    # the release only has square windows (s = k/(H+W)); s_y = kh/(H+W), s_x = kw/(H+W) generalises it
    sy, sx = kh / (H + W), kw / (H + W)
    pos = positions.to(torch.float64)
    ly = torch.linspace(-sy, sy, kh, dtype=torch.float64, device=images.device)
    lx = torch.linspace(-sx, sx, kw, dtype=torch.float64, device=images.device)
    cy = (pos[..., 0, None] + ly) * H  # (B, m, kh) continuous pixel coordinates, integer = pixel centre
    cx = (pos[..., 1, None] + lx) * W  # (B, m, kw)
    y0, x0 = torch.floor(cy.detach()), torch.floor(cx.detach())
    fy, fx = (cy - y0).to(images.dtype), (cx - x0).to(images.dtype)  # carry d/d positions
    in_y, in_x = (cy >= 0) & (cy < H - 1), (cx >= 0) & (cx < W - 1)  # the hard cut
    y0, x0 = y0.long(), x0.long()
    ys = torch.stack((y0, y0 + 1)).clamp(0, H - 1)  # (2, B, m, kh)
    xs = torch.stack((x0, x0 + 1)).clamp(0, W - 1)  # (2, B, m, kw)
    # the four neighbours of every sample: (2, 2, B, m, kh, kw) flat pixel indices, gathered at once
    index = ys[:, None, :, :, :, None] * W + xs[None, :, :, :, None, :]
    index = index.permute(2, 0, 1, 3, 4, 5).reshape(B, 1, -1).expand(B, C, -1)
    vals = torch.gather(images.flatten(2), 2, index).view(B, C, 2, 2, m, kh, kw)
    wy = torch.stack((1 - fy, fy))[:, :, :, :, None]  # (2, B, m, kh, 1)
    wx = torch.stack((1 - fx, fx))[:, :, :, None, :]  # (2, B, m, 1, kw)
    weight = wy[:, None] * wx[None, :]  # (2, 2, B, m, kh, kw)
    weight = weight * (in_y[..., :, None] & in_x[..., None, :]).to(images.dtype)
    out = (vals * weight.permute(2, 0, 1, 3, 4, 5)[:, None]).sum(dim=(2, 3))  # (B, C, m, kh, kw)
    return out.permute(0, 2, 1, 3, 4)


class WindowEmbedding(nn.Module):
    """Windows at positions → token embeddings: ``extract_windows`` then the (patch) projection.

    ``proj`` is a ``Conv2d(C, D, kernel=k)`` as in a ViT's patch embedding; it is applied to each window as
    one linear map of the flattened (C, k, k) window, which on grid positions is exactly the strided patch
    convolution. ``norm`` is the patch embedding's optional norm (``Identity`` for most ViTs). ``geometry`` is the
    window geometry of :func:`extract_windows` (``"spot"``, or ``"release"`` for the authors' checkpoints).
    """

    def __init__(self, proj: nn.Conv2d, norm: nn.Module | None = None, geometry: str = "spot"):
        super().__init__()
        self.geometry = _check_geometry(geometry)
        if not isinstance(proj, nn.Conv2d):
            raise ValueError(f"proj must be an nn.Conv2d patch projection, got {type(proj).__name__}")
        self.proj = proj
        self.norm = norm if norm is not None else nn.Identity()
        self._plans = LayoutMemo()  # the plan of a layout shared by the batch and reused across forwards

    @property
    def window(self) -> tuple[int, int]:
        return tuple(self.proj.kernel_size)

    @property
    def in_chans(self) -> int:
        return self.proj.in_channels

    def forward(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        _checks.images_tensor(images, self.in_chans)
        if self.geometry == "spot" and isinstance(positions, torch.Tensor):
            key = (tuple(images.shape[-2:]), images.dtype, images.device)
            plan = self._plans.get(positions, key, lambda: plan_windows(images, positions, self.window))
            windows = read_windows(images, plan)
        else:
            windows = extract_windows(images, positions, self.window, self.geometry)  # (B, m, C, kh, kw)
        tokens = F.linear(windows.flatten(2), self.proj.weight.flatten(1), self.proj.bias)
        return self.norm(tokens)

    def extra_repr(self) -> str:
        return f"geometry={self.geometry!r}"
