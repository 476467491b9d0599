"""The ``data.canvas:`` section: how the Fashion-MNIST canvas benchmark draws its canvases, typed and validated.

:class:`CanvasConfig` is what :func:`spot.data.fmnist.build_canvas_dataset` draws (see that module for why a
canvas); :data:`ARTICLE` the size of a Fashion-MNIST article. Importable without torch: the workflow validates the
section while it builds the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CanvasConfig", "ARTICLE"]

ARTICLE = 28  # a Fashion-MNIST article is 28×28 pixels


@dataclass(frozen=True)
class CanvasConfig:
    """How canvases are drawn (all in pixels); the defaults are the embedded preset's (see :mod:`spot.data.fmnist`)."""

    canvas_size: int = 48
    placement_std: float = 5.0  # std of the article centre's offset from the canvas centre, per axis
    max_offset: float = 10.0  # truncation of that offset; ≤ (canvas_size − 28)/2 keeps the article whole
    fragments: int = 0  # optional clutter: fragments of other articles per canvas (off by default, see the docs)
    fragment_size: int = 10
    fragment_intensity: float = 0.4
    val_size: int = 5000  # held out of the official train split

    def validate(self) -> "CanvasConfig":
        if self.canvas_size < ARTICLE:
            raise ValueError(f"canvas_size must be ≥ {ARTICLE} (the article size), got {self.canvas_size}")
        if not 0 <= self.max_offset <= (self.canvas_size - ARTICLE) / 2:
            raise ValueError(f"max_offset must be in [0, {(self.canvas_size - ARTICLE) / 2}] so the article stays on "
                             f"the canvas, got {self.max_offset}")
        if self.placement_std < 0 or self.fragments < 0 or not 0 <= self.fragment_intensity <= 1:
            raise ValueError("placement_std and fragments must be ≥ 0 and fragment_intensity in [0, 1]")
        if not 1 <= self.fragment_size <= ARTICLE:
            raise ValueError(f"fragment_size must be in [1, {ARTICLE}], got {self.fragment_size}")
        if not 0 <= self.val_size < 60000:
            raise ValueError(f"val_size must be in [0, 60000), got {self.val_size}")
        return self
