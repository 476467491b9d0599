"""The ``learned_placement:`` section (``spot learned_placement``): the learned placement against every other at equal
cost, with its controls. Importable without torch: the workflow validates the section while it builds the DAG."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import _checks
from ..core.placement import check_placement
from .throughput import check_budgets

__all__ = ["LearnedPlacementSettings"]


@dataclass
class LearnedPlacementSettings:
    """The ``learned_placement:`` section of the workflow config."""

    recipe: str = "place_policy"  # the recipe the workflow trains each backbone's policy with (task: place)
    joint_recipe: str | None = "place_policy_joint"  # … and its jointly tuned one (null: none)
    # the joint one's control: the same tuning of the model with a policy that cannot move the tokens (null: none)
    joint_control_recipe: str | None = "place_policy_joint_control"
    split: str = "test"
    limit: int | None = None  # a stratified subset of the split (None: all of it)
    subset_seed: int = 0
    batch_size: int = 500
    budgets: list = field(default_factory=lambda: [4, 9, 18])  # the learned policy's budgets
    # the label-free priors it is compared with at equal cost (each at the two budgets around the policy's cost)
    priors: list = field(default_factory=lambda: ["uniform", "gaussian", "sobol", "isotropic", "center"])
    # priors that read the article's true mask: measured beside, never "the best label-free prior"
    true_mask: list = field(default_factory=lambda: ["salient"])
    relevance: list = field(default_factory=lambda: [{"name": "relevance"}])  # training-free relevance placements
    seeds: list = field(default_factory=lambda: [0])  # the stochastic priors' draws (spot-evaluate streams)
    shuffle_seed: int = 0  # the permutation that gives each image another image's learned positions
    probe_images: int = 10000  # train images of the glance-alone probe (a linear classifier on the policy's features)
    timing_batch: int = 256  # images per timed forward (learned vs Isotropic at each budget, interleaved rounds)
    warmup: int = 2
    repeats: int = 5

    def validate(self) -> "LearnedPlacementSettings":
        if not isinstance(self.recipe, str) or not self.recipe:
            raise ValueError(f"learned_placement.recipe must name a recipe (task: place), got {self.recipe!r}")
        for key in ("joint_recipe", "joint_control_recipe"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"learned_placement.{key} must name a recipe or be null, got {value!r}")
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"learned_placement.split must be train, val or test, got {self.split!r}")
        for key in ("batch_size", "probe_images", "timing_batch", "repeats"):
            _checks.integer(getattr(self, key), f"learned_placement.{key}")
        if self.limit is not None:
            _checks.integer(self.limit, "learned_placement.limit", meaning=" or null")
        _checks.integer(self.warmup, "learned_placement.warmup", minimum=0)
        try:
            check_budgets(self.budgets)
        except ValueError as err:
            raise ValueError(f"learned_placement.{err}") from None
        for key in ("priors", "true_mask", "relevance"):
            for spec in getattr(self, key):
                check_placement(spec, f"learned_placement.{key}")
        if not self.priors:
            raise ValueError("learned_placement.priors must name at least one label-free prior to compare with")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise ValueError(f"learned_placement.seeds must be a non-empty list of integers, got {self.seeds!r}")
        return self
