"""The token positions of a training batch: the recipe's budget schedule over placements (:mod:`spot.core.placement`)."""
from __future__ import annotations

import torch

from ..core.placement import ImageBatch, make_placement, place
from ..core.positions import grid_positions

__all__ = ["TokenSampler"]


class TokenSampler:
    """The token positions of a training batch, following ``recipe.tokens`` (:class:`spot.train.recipes.TokenSampling`).

    ``__call__(batch_size, generator)`` → ``(positions, num_tokens)``; positions are (B, m, 2) float64, or ``None``
    for the full grid of a plain ViT. Per batch, in this order of draws from the training generator: with probability
    ``full_share`` the exact full patch grid (rehearsal); else one budget m (uniform in [min_tokens, max_tokens], or
    one of ``choices``) and the positions of the mode's placement — ``subpixel``: the ``prior`` layout moved within
    its cells by ``jitter`` (placement ``jittered``; the prior itself when jitter is 0), ``grid_subset``: m distinct
    random grid patches (placement ``grid_random``: the grid control). With ``mixture_share`` > 0 (subpixel), after
    the budget that share of batches (a uniform draw) takes its positions from one of ``mixture`` (a uniform draw)
    instead; with 0 nothing more is drawn, so the other schedules' draws are unchanged.
    """

    def __init__(self, tokens, image_size, patch_size):
        self.cfg = tokens
        self.image_size = tuple(image_size)
        self.patch_size = tuple(patch_size)
        self.grid = grid_positions(self.image_size, self.patch_size)
        self.num_patches = len(self.grid)
        hi = tokens.max_tokens or self.num_patches
        lo = tokens.min_tokens
        if tokens.mode != "grid":
            cap = self.num_patches if tokens.mode == "grid_subset" else None  # grid subsets cannot exceed the grid
            budgets = [int(m) for m in tokens.choices] if tokens.budget == "choices" else [lo, hi]
            if lo > hi or any(m < 1 or (cap is not None and m > cap) for m in budgets):
                raise ValueError(f"token budgets {budgets if tokens.budget == 'choices' else [lo, hi]} are invalid "
                                 f"for a grid of {self.num_patches} patches: need 1 ≤ min_tokens ≤ max_tokens"
                                 + (f" ≤ {cap} for grid_subset" if cap else ""))
        self.lo, self.hi = lo, hi
        self.placement = self._placement(tokens)
        self.mixture = [make_placement(p) for p in (tokens.mixture or [])] if tokens.mixture_share > 0 else []

    @staticmethod
    def _placement(tokens):
        if tokens.mode == "grid_subset":
            return make_placement("grid_random")
        if tokens.mode == "subpixel" and tokens.jitter > 0:
            return make_placement({"name": "jittered", "of": tokens.prior, "amount": tokens.jitter})
        return make_placement(tokens.prior)

    def draw_budget(self, generator) -> int:
        if self.cfg.mode == "grid":
            return self.num_patches
        if self.cfg.budget == "choices":
            i = int(torch.randint(len(self.cfg.choices), (1,), generator=generator))
            return int(self.cfg.choices[i])
        return int(torch.randint(self.lo, self.hi + 1, (1,), generator=generator))

    def __call__(self, batch_size: int, generator) -> tuple[torch.Tensor | None, int]:
        mode = self.cfg.mode
        if mode != "grid" and self.cfg.full_share > 0 and \
                float(torch.rand((), generator=generator, dtype=torch.float64)) < self.cfg.full_share:
            return self.grid.expand(batch_size, -1, -1).clone(), self.num_patches  # rehearsal: the exact full grid
        m = self.draw_budget(generator)
        if mode == "grid":
            return None, m
        batch = ImageBatch(self.image_size, batch_size, patch=self.patch_size)
        placement = self.placement
        if self.mixture and float(torch.rand((), generator=generator, dtype=torch.float64)) < self.cfg.mixture_share:
            placement = self.mixture[int(torch.randint(len(self.mixture), (1,), generator=generator))]
        return place(placement, m, batch, generator).expand(batch_size, -1, -1), m
