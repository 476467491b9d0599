"""Data stage: raw ImageNet preparation, the embedded Fashion-MNIST canvas benchmark, and transforms."""

__all__ = ["CROP_MODES"]

CROP_MODES = ("center", "squash")  # evaluation resize: keep the aspect ratio (short side) or squash to a square
