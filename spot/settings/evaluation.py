"""The ``evaluation:`` section (``spot evaluate``; the oracle and pruning experiments share it), typed and validated.

:class:`EvaluationSettings` and its ``knn:`` (:class:`KnnSettings`): what :mod:`spot.experiments.evaluate` measures, and the
placements it reads from ``priors`` (built by the torch-free registry, :mod:`spot.core.placement`). Importable without
torch: the workflow validates the section while it builds the DAG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.placement import check_placement, make_placement
from ..data import CROP_MODES

__all__ = ["KnnSettings", "EvaluationSettings", "CROP_MODES"]



def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class KnnSettings:
    k: int = 20
    temperature: float = 0.07
    train_split: str = "train"
    train_limit: int | None = 20000  # a stratified subset of N images of train_split is the bank (None: all)
    chunk_size: int = 1024  # queries per similarity block (the full query × train matrix is never held)


@dataclass
class EvaluationSettings:
    """The ``evaluation:`` section of the workflow config (see ``config.yaml``)."""

    split: str = "test"
    limit: int | None = None  # a stratified subset of N images of the split (None: all); knn.train_limit likewise
    subset_seed: int = 0  # the seed of those subsets (spot.data.subsets.stratified_subset)
    crop_mode: str = "center"  # ImageNet resize before the centre crop: center (short side) | squash (both sides)
    autocast: str = "bfloat16"  # the encoder's precision on CUDA: bfloat16 (autocast) | float32 (CPU: float32)
    batch_size: int = 500
    # placement specs (a name, or {name: center, scale: 0.3}); the rows name them by their label
    priors: list = field(default_factory=lambda: ["uniform", "gaussian", "sobol", "isotropic", "center", "salient",
                                                  "background", "boundary"])
    budgets: list = field(default_factory=lambda: [4, 9, 18, 36])
    extra_budgets: list = field(default_factory=lambda: [6, 13, 22, 27, 31])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    knn: KnnSettings = field(default_factory=KnnSettings)
    patchdropout: bool = True
    # the grid controls' own placements: m distinct grid patches, at random or spread evenly
    grid_placements: list = field(default_factory=lambda: ["grid_random", "grid_even"])
    # which SPoT measurements to make beyond "every prior × budget × seed on the SPoT models" (each a list of priors,
    # read as a filter on ``priors``; true / null = all of ``priors``, false / [] = none): the same positions snapped
    # to grid-cell centres, the SPoT tokenizer on models trained on the grid (the ViT parents and the grid controls),
    # and the ``extra_budgets``
    snapped: bool | list = True
    grid_model_priors: list | None = None
    extra_budget_priors: list | None = None

    def validate(self) -> "EvaluationSettings":
        if not isinstance(self.split, str) or not self.split:
            self._bad("split", self.split, "a split name (test, val, train)")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            self._bad("limit", self.limit, "an int ≥ 1, or null for the whole split")
        if not _is_int(self.subset_seed) or self.subset_seed < 0:
            self._bad("subset_seed", self.subset_seed, "an int ≥ 0")
        if self.crop_mode not in CROP_MODES:
            self._bad("crop_mode", self.crop_mode, ", ".join(CROP_MODES))
        if self.autocast not in ("bfloat16", "float32"):
            self._bad("autocast", self.autocast, "bfloat16, float32")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            self._bad("batch_size", self.batch_size, "an int ≥ 1")
        if not isinstance(self.patchdropout, bool):
            self._bad("patchdropout", self.patchdropout, "true, false")
        self._validate_budgets_and_seeds()
        self._validate_knn()
        self._validate_placements()
        return self

    @staticmethod
    def _bad(key, value, accepted):
        raise ValueError(f"evaluation.{key} = {value!r} is not valid; accepted: {accepted}")

    def _validate_budgets_and_seeds(self) -> None:
        for key in ("budgets", "extra_budgets"):
            values = getattr(self, key)
            if not isinstance(values, list) or not all(_is_int(m) for m in values):
                self._bad(key, values, "a list of ints")
            for m in values:
                if m < 1:
                    raise ValueError(f"evaluation.{key}: budget {m} < 1; a budget is a number of tokens ≥ 1")
        if not self.budgets and not self.extra_budgets:
            self._bad("budgets", self.budgets, "at least one budget (in budgets or extra_budgets)")
        if not isinstance(self.seeds, list) or not all(_is_int(s) and s >= 0 for s in self.seeds) \
                or len(set(self.seeds)) != len(self.seeds):
            self._bad("seeds", self.seeds, "a list of distinct ints ≥ 0")
        if not self.seeds:
            self._bad("seeds", self.seeds, "at least one seed (stochastic priors and random grid subsets need one)")

    def _validate_knn(self) -> None:
        k = self.knn
        if not _is_int(k.k) or k.k < 1:
            self._bad("knn.k", k.k, "an int ≥ 1")
        if not k.temperature > 0:
            self._bad("knn.temperature", k.temperature, "> 0")
        if not isinstance(k.train_split, str) or not k.train_split:
            self._bad("knn.train_split", k.train_split, "a split name")
        if k.train_split == self.split:
            self._bad("knn.train_split", k.train_split, f"a split other than the evaluated one ({self.split!r}): "
                                                        "each query would find itself in the memory bank")
        if k.train_limit is not None and (not _is_int(k.train_limit) or k.train_limit < 1):
            self._bad("knn.train_limit", k.train_limit, "an int ≥ 1, or null for the whole split")
        if not _is_int(k.chunk_size) or k.chunk_size < 1:
            self._bad("knn.chunk_size", k.chunk_size, "an int ≥ 1")

    def _validate_placements(self) -> None:
        if not isinstance(self.priors, list):
            self._bad("priors", self.priors, "a list of placements (names, or {name: …, setting: …})")
        labels = [check_placement(p, "evaluation.priors").label for p in self.priors]
        if len(set(labels)) != len(labels):
            self._bad("priors", self.priors, "a list without repeats")
        for key in ("snapped", "grid_model_priors", "extra_budget_priors"):
            value = getattr(self, key)
            if value is None or isinstance(value, bool):
                continue
            if not isinstance(value, list):
                self._bad(key, value, "true / null (every prior), false / [] (none), or a list of placements")
            for spec in value:  # a typo is an error; a placement outside evaluation.priors is simply not evaluated
                check_placement(spec, f"evaluation.{key}")
        if not isinstance(self.grid_placements, list) or \
                not {check_placement(p, "evaluation.grid_placements").name for p in self.grid_placements} <= \
                {"grid_random", "grid_even"}:
            self._bad("grid_placements", self.grid_placements, "a list of grid_random, grid_even")

    def placements(self) -> list:
        """``priors`` as placements."""
        return [make_placement(p) for p in self.priors]

    def priors_for(self, key: str) -> list:
        """The placements of ``priors`` a sweep option (``snapped``, ``grid_model_priors``, ``extra_budget_priors``)
        selects."""
        value = getattr(self, key)
        if value is None or value is True:
            return self.placements()
        chosen = {make_placement(p).label for p in (value or [])}
        return [p for p in self.placements() if p.label in chosen]

    def all_budgets(self) -> list[tuple[int, str]]:
        """(budget, budget set) in order: ``budgets`` (``main``), then the ``extra_budgets`` not among them."""
        out, seen = [], set()
        for key, setting in (("budgets", "main"), ("extra_budgets", "extra")):
            for m in getattr(self, key):
                if m not in seen:
                    seen.add(m)
                    out.append((int(m), setting))
        return out
