"""How much of the image each prior's windows see: the share of pixels inside at least one k×k window (issue 15, part 3).

    python benchmarks/prior_coverage.py [--images 200]

At the embedded scale (48×48 canvases, 8×8 windows, 4 / 9 / 18 / 36 tokens) and at the paper's (224², 16×16 windows,
25 / 49 / 100 / 196 tokens) the budgets are the same fractions of the grid, so every prior covers the same share of
the image at both scales: what a retrofit cannot see at the full budget is the same, and what it costs depends on
how redundant the images are. Stochastic priors: mean over ``--images`` draws (seeded). Prints a Markdown table.
"""
from __future__ import annotations

import argparse

import torch

PRIORS = ("uniform", "gaussian", "sobol", "isotropic", "center")
SCALES = {"embedded": (48, 8, (4, 9, 18, 36)), "paper": (224, 16, (25, 49, 100, 196))}


def coverage(prior: str, m: int, size: int, k: int, images: int, seed: int = 0) -> float:
    """Mean share of the ``size``² pixels whose centre lies inside one of the m windows of side k."""
    from spot.core.placement import ImageBatch, place

    batch = ImageBatch((size, size), images, patch=(k, k))
    centres = place(prior, m, batch, torch.Generator().manual_seed(seed)).expand(images, -1, -1) * size
    pixels = torch.arange(size, dtype=centres.dtype) + 0.5
    inside_y = (pixels[None, None, :] - centres[..., 0:1]).abs() < k / 2  # (B, m, H)
    inside_x = (pixels[None, None, :] - centres[..., 1:2]).abs() < k / 2  # (B, m, W)
    covered = torch.zeros(images, size, size, dtype=torch.bool)
    for j in range(m):
        covered |= inside_y[:, j, :, None] & inside_x[:, j, None, :]
    return float(covered.float().mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200)
    args = p.parse_args(argv)
    print("| scale | prior | " + " | ".join(f"budget {i + 1} of 4" for i in range(4)) + " |\n|---|---|---|---|---|---|")
    for scale, (size, k, budgets) in SCALES.items():
        for prior in PRIORS:
            cells = " | ".join(f"{m} tok.: {100 * coverage(prior, m, size, k, args.images):.0f} %" for m in budgets)
            print(f"| {scale} | {prior} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
