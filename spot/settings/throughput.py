"""The ``throughput:`` section (``spot throughput``, Figure 5), typed and validated.

:data:`METHODS` (what is timed, and the placement each times) and :data:`DTYPE_NAMES` (the precisions; the torch
dtypes are :data:`spot.experiments.throughput.DTYPES`, built from these names) are the vocabulary the section is checked
against. Importable without torch: the workflow validates the section while it builds the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["METHODS", "DTYPE_NAMES", "ThroughputSettings", "check_budgets"]

METHODS = {"spot": "isotropic", "vit": "grid", "patchdropout": "grid_random"}  # method → the placement it times
DTYPE_NAMES = ("float32", "bfloat16", "float16")  # the names of torch's dtypes (autocast; float16 on CUDA only)


@dataclass
class ThroughputSettings:
    """The ``throughput:`` section of the workflow config."""

    budgets: list = field(default_factory=lambda: [4, 9, 18, 36])
    batch_size: int | list = 256  # or a list: a sweep, one row per batch size
    warmup: int = 3
    repeats: int = 10
    dtype: str = "float32"  # float32 | bfloat16 | float16 (autocast; float16 on CUDA only)
    methods: list = field(default_factory=lambda: list(METHODS))
    seed: int = 0  # of the random input images and PatchDropout's subsets
    pruning: bool = False  # also time the `pruning:` section's methods, ToMe and SPoT at their cost points

    def validate(self) -> "ThroughputSettings":
        check_budgets(self.budgets)
        sizes = self.batch_size if isinstance(self.batch_size, list) else [self.batch_size]
        if not sizes or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
            raise ValueError(f"throughput.batch_size must be an int ≥ 1 or a non-empty list of them, got "
                             f"{self.batch_size!r}")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"throughput.repeats must be an int ≥ 1, got {self.repeats!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"throughput.warmup must be an int ≥ 0, got {self.warmup!r}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"throughput.dtype = {self.dtype!r}; accepted: {', '.join(DTYPE_NAMES)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"throughput.methods: unknown {unknown or 'empty list'}; accepted: {', '.join(METHODS)}")
        return self

    @property
    def batch_sizes(self) -> list[int]:
        return list(self.batch_size) if isinstance(self.batch_size, list) else [self.batch_size]


def check_budgets(budgets) -> list[int]:
    """``budgets`` as a list of ints ≥ 1 (tokens per image), or a ValueError naming the bad one."""
    if not isinstance(budgets, (list, tuple)) or not budgets:
        raise ValueError(f"budgets must be a non-empty list of token counts, got {budgets!r}")
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"every budget must be an int ≥ 1 (tokens per image), got {b!r} in {list(budgets)}")
    return [int(b) for b in budgets]
