"""The ``pruning:`` section (``spot pruning``; ``spot throughput`` with ``pruning: true``), typed and validated.

``equal_cost_priors`` names placements: those of the torch-free registry (:mod:`spot.core.placement`) and the oracle's
searches (:data:`spot.settings.oracle.SEARCHES`, registered by :mod:`spot.experiments.oracle`, which imports torch). Importable
without torch: the workflow validates the section while it builds the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .oracle import SEARCHES

__all__ = ["PruningSettings"]


@dataclass
class PruningSettings:
    """The ``pruning:`` section of the workflow config."""

    # null: the classifiers of the workflow's `backbones:`; or name → classifier spec of backbones pruned only
    backbones: dict | None = None
    # setting name → recipe: each fine-tuned from every backbone's classifier (the recipe's prune.method is the method)
    models: dict = field(default_factory=dict)
    # setting name → recipe fine-tuned from every backbone's SPoT model (SPoT + SPOT-AD); {} for none
    combined: dict = field(default_factory=dict)
    sweep: list = field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])  # keep ratios every model is evaluated at
    tome: bool = True  # ToMe on the parent at the r matching each keep ratio of the sweep
    equal_cost: str | None = "spot_ad"  # the setting whose cost points sampling is evaluated at (None: none)
    combined_budgets: list = field(default_factory=lambda: [18, 36])
    # the SPoT priors evaluated at the equal-cost budgets; None: every prior of `evaluation.priors`
    equal_cost_priors: list | None = None
    batch_size: int = 500

    def validate(self) -> "PruningSettings":
        def bad(key, value, accepted):
            raise ValueError(f"pruning.{key} = {value!r} is not valid; accepted: {accepted}")

        for key in ("models", "combined"):
            if not isinstance(getattr(self, key), dict):
                bad(key, getattr(self, key), "a mapping setting name → recipe name")
            # a setting mapped to null is switched off (how an overlay removes one)
            setattr(self, key, {k: v for k, v in getattr(self, key).items() if v})
        if not isinstance(self.sweep, list) or not self.sweep or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in self.sweep):
            bad("sweep", self.sweep, "a non-empty list of keep ratios in (0, 1]")
        if self.equal_cost is not None and self.equal_cost not in self.models:
            bad("equal_cost", self.equal_cost, f"one of pruning.models ({', '.join(self.models) or 'none'}) or null")
        if not isinstance(self.combined_budgets, list) or not all(
                isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in self.combined_budgets):
            bad("combined_budgets", self.combined_budgets, "a list of token counts ≥ 1")
        if self.equal_cost_priors is not None:
            from ..core.placement import PLACEMENTS

            names = set(PLACEMENTS) | set(SEARCHES)  # the searches register with spot.experiments.oracle, which needs torch
            if not isinstance(self.equal_cost_priors, list) or not self.equal_cost_priors or any(
                    p not in names for p in self.equal_cost_priors):
                bad("equal_cost_priors", self.equal_cost_priors,
                    f"null or a non-empty list of placement names ({', '.join(sorted(names))})")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            bad("batch_size", self.batch_size, "an int ≥ 1")
        return self
