"""The ``oracle:`` and ``transfer:`` sections (``spot oracle``, ``spot transfer``), typed and validated.

:class:`SearchSetting` is one oracle configuration (a row of Table 1); :data:`SEARCHES` names the searched
placements :mod:`spot.experiments.oracle.search` registers (it imports torch: the names are here so that a config naming one is
checked without it). Importable without torch: the workflow validates the sections while it builds the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.placement import check_placement

__all__ = ["SearchSetting", "OracleSettings", "TrajectorySettings", "ControlSettings", "TransferSettings",
           "SEARCHES", "BLANKS"]

# the placements of spot.experiments.oracle.search (SPoT-ON and its controls), by name: tests/experiments/oracle/ ties them together
SEARCHES = ("spot_on", "spot_on_ascent", "spot_on_random_label", "spot_on_random_target", "spot_on_label_free")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class SearchSetting:
    """One oracle configuration: AdamW learning rate and number of steps (a row of Table 1)."""

    lr: float = 1e-2
    steps: int = 10

    def validate(self, where: str = "oracle setting") -> "SearchSetting":
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"{where}: lr must be a number > 0, got {self.lr!r}")
        if not _is_int(self.steps) or self.steps < 1:
            raise ValueError(f"{where}: steps must be an int ≥ 1, got {self.steps!r}")
        self.lr = float(self.lr)
        return self

    @property
    def label(self) -> str:
        return f"lr={self.lr:g},steps={self.steps}"


# what replaces the content in the blank-image control: each image phase-scrambled (its own noise), or one constant
# canvas for every image (the normalised background, or the normalised mean colour)
BLANKS = ("scrambled", "background", "mean")


@dataclass
class TrajectorySettings:
    images: int = 8  # Figure 4: full trajectories of the first N images (0: none)


@dataclass
class ControlSettings:
    """``oracle.controls``: what else the search can do, measured beside SPoT-ON at every budget (the ``controls``
    experiment) — how much of its gain is the label written into the positions rather than better-placed evidence."""

    random_target: bool = True  # steerability: the search towards a random wrong label; the share that reaches it
    # SPoT-ON on images whose content is removed: scrambled | background | mean | None (off) — see BLANKS
    blank: str | None = "scrambled"
    label_free: bool = True  # the positions minimising the prediction's entropy (no label used)

    def validate(self) -> "ControlSettings":
        for name in ("random_target", "label_free"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"oracle.controls.{name} must be true or false, got {getattr(self, name)!r}")
        if self.blank is not None and self.blank not in BLANKS:
            raise ValueError(f"oracle.controls.blank must be one of {', '.join(BLANKS)} or null (off), "
                             f"got {self.blank!r}")
        return self

    @property
    def any(self) -> bool:
        return self.random_target or self.label_free or self.blank is not None


@dataclass
class OracleSettings:
    """The ``oracle:`` section of the workflow config (see ``config.yaml``)."""

    split: str = "test"
    limit: int | None = 1000  # a stratified subset of N images of the split (None: all)
    subset_seed: int = 0  # the seed of that subset (the evaluation's: the oracle's images are among its images)
    batch_size: int = 250
    sparse_budget: int = 4
    budgets: list = field(default_factory=lambda: [4, 9, 18, 36])
    settings: list = field(default_factory=lambda: [{"lr": 3e-3, "steps": 5}, {"lr": 1e-2, "steps": 10}])
    main_setting: int = 1
    prior_setting: int = 0  # Table 2's setting as §4.2 states it ("lr 3e-3 over 5 optimization steps"); Table 2
    # reports Oracle Δ for every setting, this one first
    # Table 2's initialisations: placement specs (a name, or {name: …, setting: …})
    priors: list = field(default_factory=lambda: ["uniform", "gaussian", "sobol", "isotropic", "center", "salient"])
    trajectories: TrajectorySettings = field(default_factory=TrajectorySettings)
    controls: ControlSettings = field(default_factory=ControlSettings)
    saliency_window: int = 8
    knn: bool = True  # Table 5's SPoT-ON kNN (ours): queries at the final positions against the evaluation's bank
    seed: int = 0

    def validate(self) -> "OracleSettings":
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            raise ValueError(f"oracle.limit must be an int ≥ 1 or null, got {self.limit!r}")
        if not _is_int(self.subset_seed) or self.subset_seed < 0:
            raise ValueError(f"oracle.subset_seed must be an int ≥ 0, got {self.subset_seed!r}")
        if not isinstance(self.knn, bool):
            raise ValueError(f"oracle.knn must be true or false, got {self.knn!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"oracle.batch_size must be an int ≥ 1, got {self.batch_size!r}")
        _check_budget(self.sparse_budget, "oracle.sparse_budget")
        if not isinstance(self.budgets, list) or not self.budgets:
            raise ValueError(f"oracle.budgets must be a non-empty list of token budgets, got {self.budgets!r}")
        for b in self.budgets:
            _check_budget(b, "oracle.budgets")
        self.search_settings()
        if not _is_int(self.main_setting) or not 0 <= self.main_setting < len(self.settings):
            raise ValueError(f"oracle.main_setting must index oracle.settings (0 … {len(self.settings) - 1}), "
                             f"got {self.main_setting!r}")
        if not _is_int(self.prior_setting) or not 0 <= self.prior_setting < len(self.settings):
            raise ValueError(f"oracle.prior_setting must index oracle.settings (0 … {len(self.settings) - 1}), "
                             f"got {self.prior_setting!r}")
        if not isinstance(self.priors, list) or not self.priors:
            raise ValueError(f"oracle.priors must be a non-empty list of prior names, got {self.priors!r}")
        for p in self.priors:
            _check_prior(p, "oracle.priors")
        if not _is_int(self.trajectories.images) or self.trajectories.images < 0:
            raise ValueError(f"oracle.trajectories.images must be an int ≥ 0, got {self.trajectories.images!r}")
        self.controls.validate()
        if not _is_int(self.saliency_window) or self.saliency_window < 1:
            raise ValueError(f"oracle.saliency_window must be an int ≥ 1, got {self.saliency_window!r}")
        if not _is_int(self.seed):
            raise ValueError(f"oracle.seed must be an int, got {self.seed!r}")
        return self

    def search_settings(self) -> list[SearchSetting]:
        from ..config import settings_from_dict

        if not isinstance(self.settings, list) or not self.settings:
            raise ValueError("oracle.settings must be a non-empty list of {lr, steps} mappings")
        return [settings_from_dict(SearchSetting, s, f"oracle.settings[{i}]").validate(f"oracle.settings[{i}]")
                for i, s in enumerate(self.settings)]

    @property
    def main(self) -> SearchSetting:
        return self.search_settings()[self.main_setting]


@dataclass
class TransferSettings:
    """The ``transfer:`` section: budget and initial prior of Table 4 (the oracle setting is ``oracle``'s main one),
    and the cross-model controls: every budget of ``budgets`` (Table 4's included), and with ``random_target`` the
    positions searched towards a random wrong label on one model evaluated on the others too."""

    budget: int = 4
    prior: object = "isotropic"  # a placement spec
    budgets: list | None = None  # the cross-model oracle's budgets (None: Table 4's budget only)
    random_target: bool = False

    def validate(self) -> "TransferSettings":
        _check_budget(self.budget, "transfer.budget")
        _check_prior(self.prior, "transfer.prior")
        if self.budgets is not None:
            if not isinstance(self.budgets, list) or not self.budgets:
                raise ValueError(f"transfer.budgets must be a non-empty list of token budgets or null, "
                                 f"got {self.budgets!r}")
            for b in self.budgets:
                _check_budget(b, "transfer.budgets")
        if not isinstance(self.random_target, bool):
            raise ValueError(f"transfer.random_target must be true or false, got {self.random_target!r}")
        return self

    @property
    def all_budgets(self) -> list[int]:
        """Table 4's budget first, then the other budgets of ``budgets``."""
        return list(dict.fromkeys([self.budget, *(self.budgets or [])]))


def _check_budget(value, where: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{where}: a token budget must be an int ≥ 1, got {value!r}")
    return value


def _check_prior(spec, where: str) -> str:
    check_placement(spec, where)
    return spec


