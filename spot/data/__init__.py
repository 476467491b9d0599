"""Data stage: raw ImageNet preparation, the embedded Fashion-MNIST canvas benchmark, and transforms."""
