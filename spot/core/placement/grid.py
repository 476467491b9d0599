"""Placements on the patch grid, and placements made from other placements.

* ``grid`` — every patch-grid cell centre (the plain ViT's tokens; m must be the grid's size);
* ``grid_random`` — m distinct grid cells per image, uniformly at random (PatchDropout at inference, the grid
  control's training tokens);
* ``grid_even`` — m distinct grid cells spread evenly: the cells nearest the Isotropic layout;
* ``snapped`` — another placement's positions moved to the centre of their grid cell (Table 1's "grid" rows);
* ``jittered`` — a deterministic layout with every point moved uniformly within its own layout cell (retrofitting).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ... import _checks
from ..._lazy import lazy
from ..positions import grid_cell_index, grid_positions, grid_shape, snap_to_grid
from . import ImageBatch, Placement, make_placement, register

torch = lazy("torch")

__all__ = ["Grid", "GridRandom", "GridEven", "Snapped", "Jittered", "random_patch_subset", "even_grid_cells"]


def random_patch_subset(batch_size: int, num_patches: int, num_tokens: int, generator=None,
                        device=None):
    """Indices (B, m) of m distinct patches per image, uniformly at random, sorted; deterministic given a generator."""
    from .priors import generator_device

    _checks.num_tokens_value(num_tokens, num_patches, f" (the grid has {num_patches} patches)")
    gen_device = generator_device(generator)
    scores = torch.rand(batch_size, num_patches, generator=generator, device=gen_device)
    return scores.argsort(dim=1)[:, :num_tokens].sort(dim=1).values.to(device or gen_device)


def even_grid_cells(num_tokens: int, image_size, patch):
    """``num_tokens`` distinct grid cells (sorted row-major indices) evenly spread: the cells nearest the Isotropic
    layout for m. Each layout point takes the cell containing it; points whose cell was already taken (by an earlier
    point, in layout order) then take, in order, the nearest cell still free (pixel distance, lowest index on ties)."""
    from .priors import isotropic_layout

    (H, W) = tuple(image_size)
    rows, cols = grid_shape((H, W), patch)
    n = rows * cols
    if not 1 <= num_tokens <= n:
        raise ValueError(f"budget {num_tokens} is outside 1 … {n} grid patches")
    layout = isotropic_layout(num_tokens, (H, W))
    cells = grid_cell_index(layout, (H, W), patch)
    centres = grid_positions((H, W), patch) * torch.tensor([H, W], dtype=torch.float64)
    taken = torch.zeros(n, dtype=torch.bool)
    chosen = [-1] * num_tokens
    for j, c in enumerate(cells.tolist()):
        if not taken[c]:
            taken[c] = True
            chosen[j] = c
    for j in range(num_tokens):
        if chosen[j] < 0:
            d = ((centres - layout[j] * torch.tensor([H, W], dtype=torch.float64)) ** 2).sum(1)
            d[taken] = float("inf")
            c = int(d.argmin())
            taken[c] = True
            chosen[j] = c
    return torch.tensor(sorted(chosen), dtype=torch.long)


_LAYOUT_CELLS: dict = {}  # (layout, m, image size) → (layout, cells): jittered layouts are drawn every step


def _grid(batch: ImageBatch):
    return grid_positions(tuple(batch.image_size), batch.patch)


@register
@dataclass(frozen=True)
class Grid(Placement):
    """Every cell centre of the patch grid, row-major (m must be the grid's size): the plain ViT's tokens."""

    name: ClassVar[str] = "grid"
    deterministic: ClassVar[bool] = True
    needs_patch: ClassVar[bool] = True

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        grid = _grid(batch)
        if num_tokens != len(grid):
            raise ValueError(f"the grid placement gives all {len(grid)} patches, not {num_tokens}; use grid_random or "
                             f"grid_even for a subset")
        return grid.expand(batch.batch_size, -1, -1)


@register
@dataclass(frozen=True)
class GridRandom(Placement):
    """m distinct grid cells per image, uniformly at random (sorted row-major): PatchDropout's tokens."""

    name: ClassVar[str] = "grid_random"
    needs_patch: ClassVar[bool] = True

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        grid = _grid(batch)
        keep = random_patch_subset(batch.batch_size, len(grid), num_tokens, generator)
        return grid.to(keep.device)[keep]


@register
@dataclass(frozen=True)
class GridEven(Placement):
    """m distinct grid cells spread evenly (:func:`even_grid_cells`): the grid's best even coverage."""

    name: ClassVar[str] = "grid_even"
    deterministic: ClassVar[bool] = True
    needs_patch: ClassVar[bool] = True

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        grid = _grid(batch)
        cells = even_grid_cells(num_tokens, tuple(batch.image_size), batch.patch)
        return grid[cells][None].expand(batch.batch_size, -1, -1)


class _Wrapper(Placement):
    """A placement made from another (``of``: a name, mapping or Placement)."""

    def __post_init__(self):
        object.__setattr__(self, "of", make_placement(self.of))

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.of.deterministic

    @property
    def random(self) -> bool:  # type: ignore[override]
        return self.of.random

    @property
    def needs_saliency(self) -> bool:  # type: ignore[override]
        return self.of.needs_saliency


@register
@dataclass(frozen=True)
class Snapped(_Wrapper):
    """``of``'s positions moved to the centre of their patch-grid cell (two tokens may share a cell: both stay)."""

    name: ClassVar[str] = "snapped"
    needs_patch: ClassVar[bool] = True
    of: object = "isotropic"

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        return snap_to_grid(self.of.sample(num_tokens, batch, generator), tuple(batch.image_size), batch.patch)


@register
@dataclass(frozen=True)
class Jittered(_Wrapper):
    """A deterministic layout (``of``) with each point moved uniformly anywhere within ``amount`` × its own layout
    cell (rows of the layout × points in its row), clamped to the image — retrofitting's training positions."""

    name: ClassVar[str] = "jittered"
    of: object = "isotropic"
    amount: float = 1.0

    def validate(self):
        if not self.of.deterministic:
            raise ValueError(f"jittered needs a deterministic layout to move (isotropic, center, grid_even), got "
                             f"{self.of.label!r}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, (int, float)) or not 0 <= self.amount <= 2:
            raise ValueError(f"jittered: amount must be 0 … 2 (a fraction of the layout cell), got {self.amount!r}")
        return self

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.amount == 0

    @property
    def random(self) -> bool:  # type: ignore[override]
        return self.amount != 0

    def layout(self, num_tokens: int, image_size):
        """(the layout (m, 2), each point's cell size (m, 2): 1/rows and 1/points-in-its-row); computed once."""
        key = (self.of, num_tokens, tuple(image_size))
        if key not in _LAYOUT_CELLS:
            base = self.of.sample(num_tokens, ImageBatch(tuple(image_size), 1), None)[0]
            cell = torch.empty_like(base)
            ys, counts = torch.unique(base[:, 0], return_counts=True)
            for y, n in zip(ys, counts):
                cell[base[:, 0] == y] = torch.tensor([1.0 / len(ys), 1.0 / float(n)], dtype=base.dtype)
            _LAYOUT_CELLS[key] = (base, cell)
        return _LAYOUT_CELLS[key]

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        base, cell = self.layout(num_tokens, tuple(batch.image_size))
        if self.amount == 0:
            return base.expand(batch.batch_size, -1, -1)
        noise = torch.rand((batch.batch_size, num_tokens, 2), generator=generator, dtype=base.dtype) - 0.5
        return (base + noise * cell * self.amount).clamp(0.0, 1.0)
