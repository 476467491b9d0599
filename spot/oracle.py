"""SPoT-ON: oracle-guided neighbourhood search over token positions (§3.2, Eq. 3), and the experiments built on it.

``oracle_search(model, images, labels, init_positions, lr, steps)`` freezes the encoder and moves the positions of
every image by gradient descent on the classification loss of the true labels (Eq. 3); the runners turn it into the
paper's tables, one tidy row per measurement:

* Table 1 — :func:`oracle_experiments` ``tables={"1"}``: at ``oracle.sparse_budget`` from the Isotropic prior, SPoT
  (no oracle) and, for every oracle setting, the accuracy at the final *subpixel* positions and at the same positions
  *snapped* to the patch grid (nearest cell centre), next to how far the tokens moved (``displacement_px``, mean
  Euclidean move per token in pixels) and how many of them changed grid cell (``cells_changed``, %).
* Table 2 — ``"2"``: every prior of ``oracle.priors``: SPoT acc1, and SPoT-ON acc1 and ``oracle_delta`` for every
  oracle setting (§4.2 states 3e-3 × 5 steps, ``prior_setting``; the paper's numbers imply 1e-2 × 10).
* Table 3 — ``"3"``: relative saliency gain (Eq. 4–5) of the oracle from the Isotropic prior at each budget: Eq. 5
  per trajectory (one per token) averaged (``rsg``; trajectories starting at saliency 0 are skipped and their share
  is ``rsg_zero_init``), its median (``rsg_median``) and the ratio of the mean scores (``rsg_ratio_of_means``).
* Table 5 — ``"5"``: SPoT-ON acc1 from the Isotropic prior at each budget (with the SPoT acc1 it started from) and,
  given a :class:`KnnBank`, their kNN accuracy (our procedure: the features at the positions against the
  evaluation's bank encoded at the Isotropic positions).
* Table 6 — ``"6"``: gradient ascent, label obfuscation, Background and Boundary priors, each with its drop vs
  Isotropic SPoT.
* Figure 4 — the full trajectories of the first ``oracle.trajectories.images`` images (Isotropic, sparse budget,
  main setting), written beside the CSV as ``OUT.trajectories.npz``.
* Table 4 — :func:`transfer`: positions optimised with one model, evaluated on every other model.

Row schema (``spot oracle``): ``model, experiment, method, prior, budget, setting, positions, metric, value,
n_images, seed`` — ``experiment`` is ``table1|table2|table3|table5|table6``; ``method`` is ``spot`` (the prior's
positions, no oracle), ``spot_on`` (Eq. 3), ``ascent`` (Eq. 3 maximised) or ``label_obfuscation`` (Eq. 3 for random
labels, evaluated on the true ones); ``setting`` is ``none`` or ``lr=0.01,steps=10``; ``positions`` is ``subpixel`` or
``snapped``; accuracies (``acc1``, ``knn``), deltas, drops, RSG and ``cells_changed`` are in percent (points),
saliency scores in [0, 1],
displacements in pixels; ``seed`` is set on rows whose numbers depend on a random draw (stochastic priors, random
labels), empty otherwise. ``spot transfer`` rows: ``experiment, source, target, prior, budget, setting, metric,
value, n_images, seed``.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import results as _results
from .positions import grid_cell_index, snap_to_grid, to_pixels
from .priors import make_prior, sample_positions
from .tokenizer import extract_windows

__all__ = ["SearchSetting", "TrajectorySettings", "OracleSettings", "TransferSettings", "oracle_search",
           "relative_saliency_gain", "saliency_scores", "oracle_experiments", "transfer", "write_trajectories",
           "load_classifier", "configure_parser", "run_from_args", "configure_transfer_parser",
           "run_transfer_from_args", "TABLES"]

TABLES = ("1", "2", "3", "5", "6")


# ------------------------------------------------------------------------------------------------------------ settings

@dataclass
class SearchSetting:
    """One oracle configuration: AdamW learning rate and number of steps (a row of Table 1)."""

    lr: float = 1e-2
    steps: int = 10

    def validate(self, where: str = "oracle setting") -> "SearchSetting":
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"{where}: lr must be a number > 0, got {self.lr!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"{where}: steps must be an int ≥ 1, got {self.steps!r}")
        self.lr = float(self.lr)
        return self

    @property
    def label(self) -> str:
        return f"lr={self.lr:g},steps={self.steps}"


@dataclass
class TrajectorySettings:
    images: int = 8  # Figure 4: full trajectories of the first N images (0: none)


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
    priors: list = field(default_factory=lambda: ["uniform", "gaussian", "sobol", "isotropic", "center", "salient"])
    trajectories: TrajectorySettings = field(default_factory=TrajectorySettings)
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
        if not _is_int(self.saliency_window) or self.saliency_window < 1:
            raise ValueError(f"oracle.saliency_window must be an int ≥ 1, got {self.saliency_window!r}")
        if not _is_int(self.seed):
            raise ValueError(f"oracle.seed must be an int, got {self.seed!r}")
        return self

    def search_settings(self) -> list[SearchSetting]:
        from .recipes import settings_from_dict

        if not isinstance(self.settings, list) or not self.settings:
            raise ValueError("oracle.settings must be a non-empty list of {lr, steps} mappings")
        return [settings_from_dict(SearchSetting, s, f"oracle.settings[{i}]").validate(f"oracle.settings[{i}]")
                for i, s in enumerate(self.settings)]

    @property
    def main(self) -> SearchSetting:
        return self.search_settings()[self.main_setting]


@dataclass
class TransferSettings:
    """The ``transfer:`` section: budget and initial prior of Table 4 (the oracle setting is ``oracle``'s main one)."""

    budget: int = 4
    prior: str = "isotropic"

    def validate(self) -> "TransferSettings":
        _check_budget(self.budget, "transfer.budget")
        _check_prior(self.prior, "transfer.prior")
        return self


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_budget(value, where: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{where}: a token budget must be an int ≥ 1, got {value!r}")
    return value


def _check_prior(name, where: str) -> str:
    try:
        make_prior(name)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return name


# ------------------------------------------------------------------------------------------------------ the oracle

def oracle_search(model, images: torch.Tensor, labels: torch.Tensor, init_positions: torch.Tensor, lr: float,
                  steps: int, *, ascent: bool = False, record_trajectory: bool = False):
    """SPoT-ON (Eq. 3): optimise the token positions of every image for its label, the encoder frozen.

    The model's parameters get ``requires_grad_(False)`` and the model is put in eval mode for the search (both are
    restored afterwards; no gradient is ever accumulated on a parameter). The only leaf is a float64 copy of the
    positions, one set per image — (B, m, 2), an (m, 2) or (1, m, 2) init is shared as the start of every image.

    Each step: ``loss = cross_entropy(model(images, positions), labels, reduction="sum")``, one
    ``torch.optim.AdamW([positions], lr=lr, weight_decay=0)`` step — gradient descent, or ascent (the loss maximised)
    with ``ascent=True`` — then the positions are clamped to [0, 1].

    * ``weight_decay=0``: AdamW's default of 0.01 would decay the positions towards (0, 0), the top-left corner,
      which has no meaning for a coordinate.
    * sum over the batch: the model treats images independently (eval mode, per-sample LayerNorm), so the gradient of
      the sum w.r.t. image i's positions is exactly the gradient of image i's own loss; a mean would scale it by 1/B.
      Adam normalises per coordinate, so the step is (up to its ε = 1e-8) the same either way, but with the sum it is
      *exactly* the single-image search: the result does not depend on the batch size or on the other images.

    Returns the final positions (B, m, 2) float64 (no grad), and with ``record_trajectory`` also the trajectory
    (steps + 1, B, m, 2) float64, whose entry 0 is the init and entry ``steps`` the final positions.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"oracle lr must be a number > 0, got {lr!r}")
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"oracle steps must be an int ≥ 1, got {steps!r}")
    if not isinstance(init_positions, torch.Tensor) or init_positions.shape[-1:] != (2,) or \
            init_positions.dim() not in (2, 3):
        raise ValueError("init_positions must be a tensor of shape (B, m, 2) or (m, 2) holding (y, x) in [0, 1]")
    B = images.shape[0]
    init = init_positions.detach().to(device=images.device, dtype=torch.float64)
    if init.dim() == 2:
        init = init[None]
    if init.shape[0] not in (1, B):
        raise ValueError(f"init_positions have batch size {init.shape[0]} but images have {B}")
    positions = init.expand(B, -1, -1).clone().requires_grad_(True)
    labels = labels.to(images.device)
    params = list(model.parameters())
    grad_flags = [p.requires_grad for p in params]
    was_training = model.training
    trajectory = [positions.detach().clone()] if record_trajectory else None
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        opt = torch.optim.AdamW([positions], lr=float(lr), weight_decay=0.0)
        sign = -1.0 if ascent else 1.0
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images, positions).float(), labels, reduction="sum")
            (sign * loss).backward()
            opt.step()
            with torch.no_grad():
                positions.clamp_(0.0, 1.0)
            if record_trajectory:
                trajectory.append(positions.detach().clone())
    finally:
        for p, flag in zip(params, grad_flags):
            p.requires_grad_(flag)
        model.train(was_training)
    final = positions.detach()
    if record_trajectory:
        return final, torch.stack(trajectory)
    return final


@torch.no_grad()
def _correct(model, images, labels, positions) -> torch.Tensor:
    """(B,) bool: whether the model classifies each image correctly with these positions (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        return model(images, positions).argmax(-1) == labels
    finally:
        model.train(was_training)


def saliency_scores(maps: torch.Tensor, positions: torch.Tensor, window: int) -> torch.Tensor:
    """Eq. 4: the mean saliency in a ``window``×``window`` pixel window centred on each token → (B, m).

    ``maps`` (B, H, W) or (H, W); the window is read with :func:`~spot.tokenizer.extract_windows` on the map as a
    one-channel image (bilinear, zeros outside the image — the tokenizer's own windows).
    """
    if maps.dim() == 2:
        maps = maps[None]
    maps = maps.to(device=positions.device, dtype=torch.float32)
    windows = extract_windows(maps[:, None], positions.detach(), window)  # (B, m, 1, k, k)
    return windows.mean(dim=(-3, -2, -1))


def relative_saliency_gain(score_init, score_final):
    """Eq. 5 in percent: ``100·(score_final − score_init)/score_init`` — floats (NaN when the initial score is 0),
    or tensors of per-trajectory scores (elementwise; NaN where the initial score is 0)."""
    if isinstance(score_init, torch.Tensor):
        score_init, score_final = score_init.double(), torch.as_tensor(score_final).double()
        gain = 100.0 * (score_final - score_init) / score_init
        return torch.where(score_init == 0, torch.full_like(gain, float("nan")), gain)
    return float("nan") if score_init == 0 else 100.0 * (score_final - score_init) / score_init


# ------------------------------------------------------------------------------------------------------ the runners

class _Tally:
    """Running sums of per-image values (per-token values: (B, m)), keyed by the row they will become, with the
    number of images they came from; ``keep_values`` keys also keep every value (for a median)."""

    def __init__(self, keep_values=()):
        self.sums: dict = {}
        self.images: dict = {}
        self.keep_values = set(keep_values)
        self.values: dict = {}

    def add(self, key, values: torch.Tensor, n_images: int | None = None) -> None:
        s, n = self.sums.get(key, (0.0, 0))
        self.sums[key] = (s + float(values.detach().double().sum()), n + int(values.numel()))
        self.images[key] = self.images.get(key, 0) + (values.shape[0] if n_images is None else n_images)
        if key[-1] in self.keep_values:
            self.values.setdefault(key, []).append(values.detach().double().reshape(-1).cpu())

    def mean(self, key) -> float:
        s, n = self.sums[key]
        return s / n if n else float("nan")

    def median(self, key) -> float:
        values = torch.cat(self.values[key]).numpy() if self.values.get(key) else np.zeros(0)
        return float(np.median(values)) if len(values) else float("nan")

    def count(self, key) -> int:
        return self.sums[key][1]

    def n_images(self, key) -> int:
        return self.images[key]


class _Batch:
    """One batch of images and everything the tables share about it: initial positions per (prior, budget), oracle
    results per (prior, budget, setting, mode), saliency maps — each computed once."""

    def __init__(self, run: "_Run", images, labels, indices):
        self.run, self.images, self.labels, self.indices = run, images, labels, indices
        self.B = images.shape[0]
        self.size = tuple(images.shape[-2:])
        self._init, self._final, self._maps, self._random = {}, {}, None, None

    def maps(self) -> torch.Tensor:
        if self._maps is None:
            from .saliency import saliency_maps

            self._maps = saliency_maps(self.run.data, self.indices.cpu(), self.run.saliency).float()
        return self._maps

    def init(self, prior: str, budget: int) -> torch.Tensor:
        key = (prior, budget)
        if key not in self._init:
            p = make_prior(prior)
            gen = None if p.deterministic else self.run.generator(("prior", prior, budget))
            sal = self.maps() if p.needs_saliency else None
            self._init[key] = sample_positions(p, budget, self.B, self.size, generator=gen, saliency=sal,
                                               device=self.images.device)
        return self._init[key]

    def random_labels(self) -> torch.Tensor:
        if self._random is None:
            gen = self.run.generator(("labels",))
            self._random = torch.randint(0, self.run.num_classes, (self.B,), generator=gen).to(self.labels.device)
        return self._random

    def final(self, prior: str, budget: int, setting: int, mode: str = "descent") -> torch.Tensor:
        key = (prior, budget, setting, mode)
        if key not in self._final:
            s = self.run.search[setting]
            labels = self.random_labels() if mode == "random_labels" else self.labels
            record = key == self.run.trajectory_key and bool(self.run.in_trajectories(self.indices).any())
            out = oracle_search(self.run.model, self.images, labels, self.init(prior, budget), s.lr, s.steps,
                                ascent=mode == "ascent", record_trajectory=record)
            if record:
                out, traj = out
                self.run.keep_trajectory(self, traj, out)
            self._final[key] = out
        return self._final[key]

    def correct(self, positions) -> torch.Tensor:
        return _correct(self.run.model, self.images, self.labels, positions)


class _Run:
    def __init__(self, model, data, settings: OracleSettings, saliency, device):
        self.model, self.data, self.settings, self.saliency, self.device = model, data, settings, saliency, device
        self.search = settings.search_settings()
        self.num_classes = int(model.num_classes)
        self._gens: dict = {}
        self.trajectory_key = ("isotropic", settings.sparse_budget, settings.main_setting, "descent")
        # Figure 4: the first N images of the evaluation set (split indices)
        self.trajectory_indices = data.index[:settings.trajectories.images]
        self.trajectory_parts: list = []

    def in_trajectories(self, indices: torch.Tensor) -> torch.Tensor:
        """(B,) bool: which of these split indices are among Figure 4's images."""
        return torch.isin(indices.cpu(), self.trajectory_indices)

    def generator(self, key) -> torch.Generator:
        """One CPU generator per random stream, seeded with ``oracle.seed``: a stream's draws do not depend on which
        other tables run, and every model sees the same draws."""
        if key not in self._gens:
            self._gens[key] = torch.Generator().manual_seed(self.settings.seed)
        return self._gens[key]

    def keep_trajectory(self, batch: _Batch, traj: torch.Tensor, final: torch.Tensor) -> None:
        keep = self.in_trajectories(batch.indices).to(batch.images.device)
        self.trajectory_parts.append(dict(
            positions=traj[:, keep].float().cpu(), labels=batch.labels[keep].cpu(), indices=batch.indices[keep.cpu()],
            initial_correct=batch.correct(traj[0])[keep].cpu(), final_correct=batch.correct(final)[keep].cpu()))

    def trajectories(self) -> dict | None:
        if not self.trajectory_parts:
            return None
        parts = self.trajectory_parts
        s = self.search[self.settings.main_setting]
        return dict(positions=torch.cat([p["positions"] for p in parts], dim=1).numpy(),
                    labels=torch.cat([p["labels"] for p in parts]).numpy(),
                    indices=torch.cat([p["indices"] for p in parts]).numpy(),
                    initial_correct=torch.cat([p["initial_correct"] for p in parts]).numpy(),
                    final_correct=torch.cat([p["final_correct"] for p in parts]).numpy(),
                    prior="isotropic", budget=self.settings.sparse_budget, lr=s.lr, steps=s.steps)


def _parse_tables(tables) -> tuple[str, ...]:
    if isinstance(tables, str):
        tables = [t.strip() for t in tables.split(",") if t.strip()]
    tables = tuple(str(t) for t in tables)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown or not tables:
        raise ValueError(f"unknown table(s) {unknown or tables!r}; accepted: {', '.join(TABLES)} (e.g. --tables 1,2,3)")
    return tables


def _device_of(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@dataclass
class KnnBank:
    """Table 5's SPoT-ON kNN reference (our procedure; the paper reports these numbers without saying how): the
    evaluation's memory bank (``evaluation.knn``: its split and stratified subset) encoded at the Isotropic prior's
    positions for each budget — the very bank ``spot evaluate`` uses for SPoT Isotropic — against which the pooled
    features at the oracle's final positions are classified (DINO's weighted kNN)."""

    data: object  # EvalData of evaluation.knn.train_split, normalised as the model
    settings: object  # spot.evaluate.KnnSettings
    batch_size: int = 250
    _features: dict = field(default_factory=dict)

    @torch.no_grad()
    def features(self, model, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(bank features (N, D) float32, labels (N,)) at the Isotropic positions of ``budget`` tokens."""
        if budget not in self._features:
            device = _device_of(model)
            feats, labels = [], []
            for images, y, _ in self.data.batches(self.batch_size):
                positions = sample_positions("isotropic", budget, 1, tuple(images.shape[-2:]), device=device)
                feats.append(_pooled(model, images.to(device), positions).float())
                labels.append(y.to(device))
            self._features[budget] = (torch.cat(feats), torch.cat(labels))
        return self._features[budget]

    def accuracy(self, model, budget: int, queries: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(Q,) bool: whether the kNN vote of each query feature gives its label."""
        from .evaluate import knn_classify

        bank, bank_labels = self.features(model, budget)
        classes = max(int(model.num_classes or 0), int(bank_labels.max()) + 1, int(labels.max()) + 1)
        k = self.settings
        preds = knn_classify(bank, bank_labels, queries, k=k.k, temperature=k.temperature, num_classes=classes,
                             chunk_size=k.chunk_size)
        return preds == labels.to(preds.device)


@torch.no_grad()
def _pooled(model, images, positions) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return model.pooled_features(images, positions)
    finally:
        model.train(was_training)


def oracle_experiments(model, data, settings: OracleSettings, *, name: str = "model", tables=TABLES,
                       saliency=None, knn_bank: KnnBank | None = None, log=None) -> tuple[list[dict], dict | None]:
    """Run the oracle tables for one model on one ``EvalData`` → (rows, Figure 4 trajectories or None).

    ``model`` is a classifying :class:`~spot.models.SPoTViT` (already on its device; the images go there), ``tables``
    a subset of :data:`TABLES` (the Figure 4 trajectories are recorded whenever ``oracle.trajectories.images`` > 0).
    ``saliency`` is a :class:`~spot.saliency.SaliencySettings` (default: the article masks), needed by the salient
    and background priors and Table 3. ``knn_bank`` (a :class:`KnnBank`) adds Table 5's kNN rows. See the module
    docs for the row schema.

    Trajectories: a dict of numpy arrays ``positions`` float32 (steps + 1, n, m, 2), ``labels`` (n,), ``indices``
    (n,), ``initial_correct`` / ``final_correct`` (n,) bool, and the ``prior``, ``budget``, ``lr``, ``steps``.
    """
    from .saliency import SaliencySettings

    settings.validate()
    tables = _parse_tables(tables)
    saliency = saliency if saliency is not None else SaliencySettings()
    device = _device_of(model)
    run = _Run(model, data, settings, saliency, device)
    S, main = settings.sparse_budget, settings.main_setting
    main_label = run.search[main].label
    iso = "isotropic"
    if "3" in tables and settings.saliency_window > min(data.image_size):
        raise ValueError(f"oracle.saliency_window = {settings.saliency_window} is larger than the images "
                         f"{data.image_size}")
    tally = _Tally(keep_values=("rsg",))
    queries: dict = {}  # Table 5's kNN: (budget, method) → pooled features of every image, and the labels
    t0 = time.time()
    for images, labels, indices in data.batches(settings.batch_size):
        batch = _Batch(run, images.to(device), labels.to(device), indices)
        H, W = batch.size
        spot_iso = batch.correct(batch.init(iso, S))
        if "1" in tables:
            tally.add(("table1", "spot", iso, S, "none", "subpixel", "acc1"), spot_iso)
            snapped0 = snap_to_grid(batch.init(iso, S), (H, W), model.patch_size)
            tally.add(("table1", "spot", iso, S, "none", "snapped", "acc1"), batch.correct(snapped0))
            cells0 = grid_cell_index(batch.init(iso, S), (H, W), model.patch_size)
            for i, s in enumerate(run.search):
                final = batch.final(iso, S, i)
                init = batch.init(iso, S)
                tally.add(("table1", "spot_on", iso, S, s.label, "subpixel", "acc1"), batch.correct(final))
                tally.add(("table1", "spot_on", iso, S, s.label, "snapped", "acc1"),
                          batch.correct(snap_to_grid(final, (H, W), model.patch_size)))
                move = (to_pixels(final, (H, W)) - to_pixels(init.expand_as(final), (H, W))).norm(dim=-1)
                tally.add(("table1", "spot_on", iso, S, s.label, "subpixel", "displacement_px"), move)
                changed = grid_cell_index(final, (H, W), model.patch_size) != cells0
                tally.add(("table1", "spot_on", iso, S, s.label, "subpixel", "cells_changed"), 100.0 * changed)
        if "2" in tables:  # Oracle Δ for every setting (§4.2 states 3e-3 × 5; the paper's numbers imply 1e-2 × 10)
            for prior in settings.priors:
                tally.add(("table2", "spot", prior, S, "none", "subpixel", "acc1"), batch.correct(batch.init(prior, S)))
                for i, s in enumerate(run.search):
                    tally.add(("table2", "spot_on", prior, S, s.label, "subpixel", "acc1"),
                              batch.correct(batch.final(prior, S, i)))
        if "3" in tables or "5" in tables:
            for b in settings.budgets:
                final = batch.final(iso, b, main)
                if "5" in tables:
                    for method, setting, positions in (("spot", "none", batch.init(iso, b)),
                                                       ("spot_on", main_label, final)):
                        features = _pooled(model, batch.images, positions)
                        tally.add(("table5", method, iso, b, setting, "subpixel", "acc1"),
                                  model.head(features).argmax(-1) == batch.labels)
                        if knn_bank is not None:
                            queries.setdefault((b, method, setting), []).append(features.float())
                    if knn_bank is not None:
                        queries.setdefault("labels", {}).setdefault(b, []).append(batch.labels)
                if "3" in tables:
                    maps, k = batch.maps(), settings.saliency_window
                    init = batch.init(iso, b).expand_as(final)
                    key = ("table3", "spot_on", iso, b, main_label, "subpixel")
                    before, after = saliency_scores(maps, init, k), saliency_scores(maps, final, k)
                    tally.add(key + ("saliency_init",), before)
                    tally.add(key + ("saliency_final",), after)
                    # Eq. 5 per trajectory (one per token); an initial score of 0 has no relative gain: skipped,
                    # and counted (the share of such trajectories, in %)
                    gain = relative_saliency_gain(before, after)
                    skipped = torch.isnan(gain)
                    tally.add(key + ("rsg",), gain[~skipped], n_images=batch.B)
                    tally.add(key + ("rsg_zero_init",), 100.0 * skipped.double())
        if "6" in tables:
            tally.add(("table6", "spot", iso, S, "none", "subpixel", "acc1"), spot_iso)
            for prior in ("background", "boundary"):
                tally.add(("table6", "spot", prior, S, "none", "subpixel", "acc1"), batch.correct(batch.init(prior, S)))
            tally.add(("table6", "ascent", iso, S, main_label, "subpixel", "acc1"),
                      batch.correct(batch.final(iso, S, main, "ascent")))
            tally.add(("table6", "label_obfuscation", iso, S, main_label, "subpixel", "acc1"),
                      batch.correct(batch.final(iso, S, main, "random_labels")))
        if bool(run.in_trajectories(indices).any()):
            batch.final(*run.trajectory_key)
    if knn_bank is not None and "5" in tables:
        labels_of = {b: torch.cat(v) for b, v in queries.pop("labels").items()}
        for (b, method, setting), feats in queries.items():
            tally.add(("table5", method, iso, b, setting, "subpixel", "knn"),
                      knn_bank.accuracy(model, b, torch.cat(feats), labels_of[b]))
    if log is not None:
        log(f"oracle {name}: {data.n} images, tables {','.join(tables)} in {time.time() - t0:.1f} s")
    return _oracle_rows(tally, name, settings), run.trajectories()


def _stochastic(prior: str) -> bool:
    return not make_prior(prior).deterministic


_PERCENT = ("acc1", "knn")  # tallied as 0/1 per image, reported in %


def _oracle_rows(tally: _Tally, name: str, settings: OracleSettings) -> list[dict]:
    rows = []

    def value_of(key) -> float:
        return tally.mean(key) * (100.0 if key[-1] in _PERCENT else 1.0)

    def row(key, metric=None, value=None):
        experiment, method, prior, budget, setting, positions, base_metric = key
        random = _stochastic(prior) or method == "label_obfuscation"
        rows.append(dict(model=name, experiment=experiment, method=method, prior=prior, budget=budget,
                         setting=setting, positions=positions, metric=metric or base_metric,
                         value=value_of(key) if value is None else value, n_images=tally.n_images(key),
                         seed=settings.seed if random else None))

    for key in list(tally.sums):
        experiment, method, prior, budget, setting, positions, metric = key
        row(key)
        if experiment == "table2" and method == "spot_on":
            base = value_of(("table2", "spot", prior, budget, "none", positions, "acc1"))
            row(key, metric="oracle_delta", value=value_of(key) - base)
        if experiment == "table3" and metric == "rsg":
            row(key, metric="rsg_median", value=tally.median(key))
            init = tally.mean(key[:-1] + ("saliency_init",))
            row(key, metric="rsg_ratio_of_means",
                value=relative_saliency_gain(init, tally.mean(key[:-1] + ("saliency_final",))))
        if experiment == "table6" and not (method == "spot" and prior == "isotropic"):
            base = value_of(("table6", "spot", "isotropic", budget, "none", positions, "acc1"))
            row(key, metric="drop_vs_isotropic", value=base - value_of(key))
    order = ["table1", "table2", "table3", "table5", "table6"]
    return sorted(rows, key=lambda r: order.index(r["experiment"]))  # stable: each table keeps its own order


# ------------------------------------------------------------------------------------------------------ transfer

def _lockstep(datas: dict, batch_size: int):
    """Iterate several ``EvalData`` (one per model; shared objects are read once) in step: yields
    ``({name: images}, labels, indices)``; the datasets must hold the same images in the same order."""
    unique = {}
    for name, d in datas.items():
        unique.setdefault(id(d), d)
    ns = {d.n for d in unique.values()}
    if len(ns) != 1:
        raise ValueError(f"the models' evaluation data differ in size ({sorted(ns)} images): give them the same "
                         "data folder, split and limit")
    iters = {k: iter(d.batches(batch_size)) for k, d in unique.items()}
    while True:
        got = {}
        for k, it in iters.items():
            try:
                got[k] = next(it)
            except StopIteration:
                return
        first = next(iter(got.values()))
        for images, labels, indices in got.values():
            if not torch.equal(labels, first[1]) or not torch.equal(indices, first[2]) or \
                    images.shape[-2:] != first[0].shape[-2:]:
                raise ValueError("the models' evaluation data hold different images (labels, order or size differ); "
                                 "all models of a transfer must be evaluated on the same images")
        yield {name: got[id(d)][0] for name, d in datas.items()}, first[1], first[2]


def transfer(models: dict, data, settings: TransferSettings, oracle: OracleSettings, *, saliency=None,
             log=None) -> list[dict]:
    """Table 4: for every source model A, SPoT-ON positions S_A from ``transfer.prior`` at ``transfer.budget`` (the
    main oracle setting), evaluated on every other model B.

    ``models``: name → classifying SPoTViT (on its device); ``data``: one ``EvalData``, or name → ``EvalData`` (each
    model's own normalisation of the same images). Every model starts from the same S_0 (drawn once per batch with
    ``oracle.seed`` for a stochastic prior).

    Rows per ordered pair A → B: ``original_acc1`` (B at S_0), ``transfer_acc1`` (B at S_A) and ``transfer_delta`` =
    transfer − original, in points: an *improvement* is positive. (The paper's Eq. 6 writes
    Δ = E[g_A(I, S_0) = y] − E[g_A(I, S_B) = y], whose sign is the opposite of the ↑ gains it reports; we use the
    reported convention.) Per model A also ``oracle_acc1`` (source = target = A: A at its own S_A).
    """
    from .saliency import SaliencySettings

    if not isinstance(models, dict) or len(models) < 2:
        raise ValueError(f"transfer needs at least 2 models (source and target), got {len(models or {})}")
    settings.validate()
    oracle.validate()
    saliency = saliency if saliency is not None else SaliencySettings()
    datas = data if isinstance(data, dict) else {name: data for name in models}
    missing = sorted(set(models) - set(datas))
    if missing:
        raise ValueError(f"no evaluation data for model(s) {missing}")
    s = oracle.main
    prior = make_prior(settings.prior)
    gen = None if prior.deterministic else torch.Generator().manual_seed(oracle.seed)
    names = list(models)
    tally = _Tally()
    t0 = time.time()
    for images, labels, indices in _lockstep({n: datas[n] for n in names}, oracle.batch_size):
        B, size = labels.shape[0], tuple(next(iter(images.values())).shape[-2:])
        sal = None
        if prior.needs_saliency:
            from .saliency import saliency_maps

            sal = saliency_maps(datas[names[0]], indices, saliency).float()
        init = sample_positions(prior, settings.budget, B, size, generator=gen, saliency=sal)
        dev = {n: _device_of(m) for n, m in models.items()}
        x = {n: images[n].to(dev[n]) for n in names}
        y = {n: labels.to(dev[n]) for n in names}
        for b in names:
            tally.add(("original", b), _correct(models[b], x[b], y[b], init.to(dev[b])))
        for a in names:
            s_a = oracle_search(models[a], x[a], y[a], init.to(dev[a]), s.lr, s.steps)
            tally.add(("oracle", a), _correct(models[a], x[a], y[a], s_a))
            for b in names:
                if b != a:
                    tally.add(("transfer", a, b), _correct(models[b], x[b], y[b], s_a.to(dev[b])))
    if log is not None:
        log(f"transfer: {len(names)} models, {tally.count(('original', names[0]))} images in {time.time() - t0:.1f} s")
    seed = oracle.seed if not prior.deterministic else None
    base = dict(experiment="table4", prior=settings.prior, budget=settings.budget, setting=s.label)
    rows = []
    for a in names:
        n = tally.count(("oracle", a))
        rows.append(dict(base, source=a, target=a, metric="oracle_acc1", value=100.0 * tally.mean(("oracle", a)),
                         n_images=n, seed=seed))
        for b in names:
            if b == a:
                continue
            original = 100.0 * tally.mean(("original", b))
            moved = 100.0 * tally.mean(("transfer", a, b))
            for metric, value in (("original_acc1", original), ("transfer_acc1", moved),
                                  ("transfer_delta", moved - original)):
                rows.append(dict(base, source=a, target=b, metric=metric, value=value, n_images=n, seed=seed))
    order = ["experiment", "source", "target", "prior", "budget", "setting", "metric", "value", "n_images", "seed"]
    return [{k: r[k] for k in order} for r in rows]


# ------------------------------------------------------------------------------------------------------ files

def write_trajectories(path, per_model: dict) -> Path | None:
    """Write Figure 4's trajectories of every model to one ``.npz`` (atomically).

    Arrays: ``models`` (M,) names; ``positions`` float32 (M, steps + 1, n, m, 2) (y, x) in [0, 1], entry 0 the
    Isotropic init; ``labels``, ``indices`` (n,) (the images' positions in the evaluation split); ``initial_correct``
    and ``final_correct`` (M, n) bool; ``prior``, ``budget``, ``lr``, ``steps``. None (nothing written) without
    trajectories.
    """
    per_model = {k: v for k, v in per_model.items() if v is not None}
    if not per_model:
        return None
    names = list(per_model)
    first = per_model[names[0]]
    for n in names[1:]:
        t = per_model[n]
        if not np.array_equal(t["indices"], first["indices"]) or t["positions"].shape != first["positions"].shape:
            raise ValueError(f"trajectories of {n!r} and {names[0]!r} cover different images or shapes")
    arrays = dict(models=np.array(names), labels=first["labels"], indices=first["indices"],
                  positions=np.stack([per_model[n]["positions"] for n in names]).astype(np.float32),
                  initial_correct=np.stack([per_model[n]["initial_correct"] for n in names]),
                  final_correct=np.stack([per_model[n]["final_correct"] for n in names]),
                  prior=np.array(first["prior"]), budget=np.array(first["budget"]), lr=np.array(first["lr"]),
                  steps=np.array(first["steps"]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_classifier(path, device=None):
    """A classifying SPoTViT from a checkpoint (``spot train`` / ``spot checkpoints fetch``) → (model, (mean, std)).

    An MAE checkpoint (pixel reconstruction, no classification head) is a ValueError. The normalisation is the
    record's (``normalisation_of``); where the record has none (ImageNet models), the model's ``pretrained_cfg``
    mean/std when it has one value per input channel, else (0.5, 0.5).
    """
    from .data.evaluation import normalisation_of
    from .factory import checkpoint_record, load_trained
    from .models import SPoTViT

    path = Path(path)
    record = checkpoint_record(path) if path.is_file() else {}
    if record.get("format") == "mae":
        raise ValueError(f"{path} is an MAE checkpoint (pixel reconstruction, no classifier): the oracle needs a "
                         "classifier — fine-tune it first (e.g. the finetune_mae recipe) and pass that checkpoint")
    model = load_trained(path)
    if not isinstance(model, SPoTViT) or not getattr(model, "num_classes", 0):
        raise ValueError(f"{path} is not a classifier ({type(model).__name__} without classes): the oracle needs "
                         "logits to optimise the loss of the labels")
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    default = ((0.5,), (0.5,))
    if len(cfg.get("mean") or ()) == model.in_chans and len(cfg.get("std") or ()) == model.in_chans:
        default = (tuple(cfg["mean"]), tuple(cfg["std"]))
    return model.to(device or "cpu").eval(), normalisation_of(record, default=default)


def configure_parser(p) -> None:
    """``spot oracle``: Tables 1, 2, 3, 5 (SPoT-ON rows), 6 and Figure 4's trajectories."""
    _results.add_experiment_arguments(p, "oracle")
    p.add_argument("--tables", default=",".join(TABLES),
                   help="comma-separated subset of %(default)s (Figure 4's trajectories are always written when "
                        "oracle.trajectories.images > 0)")


def configure_transfer_parser(p) -> None:
    """``spot transfer``: Table 4 (≥ 2 models)."""
    _results.add_experiment_arguments(p, "oracle")


def _setup(args):
    """(config, oracle settings, saliency settings, evaluation settings, device): the oracle shares the evaluation's
    image protocol (``crop_mode``) and kNN bank."""
    from .evaluate import EvaluationSettings
    from .recipes import settings_from_dict

    config, oracle, saliency, device = _results.experiment_settings(args, OracleSettings, "oracle")
    evaluation = settings_from_dict(EvaluationSettings, config.get("evaluation"), "evaluation").validate()
    return config, oracle, saliency, evaluation, device


def _open_models(paths: dict, oracle: OracleSettings, data_root, device, crop_mode: str = "center"):
    from .data.evaluation import EvalData

    models, norms, datas, opened = {}, {}, {}, {}
    for name, path in paths.items():
        model, (mean, std) = load_classifier(path, device)
        models[name], norms[name] = model, (list(mean), list(std))
        img = model.image_size[0] if model.image_size else 224
        key = (tuple(mean), tuple(std), img)
        if key not in opened:  # models sharing a normalisation share one EvalData
            opened[key] = EvalData.open(data_root, oracle.split, mean=mean, std=std, limit=oracle.limit,
                                        subset_seed=oracle.subset_seed, img_size=img, crop_mode=crop_mode)
        datas[name] = opened[key]
    return models, norms, datas


def _knn_banks(evaluation, models: dict, datas: dict, data_root, oracle: OracleSettings) -> dict:
    """{model name: KnnBank} — the evaluation's kNN bank (``evaluation.knn``, ``evaluation.subset_seed``) opened with
    each model's normalisation (models sharing one share the images, not the encoded features)."""
    from .data.evaluation import EvalData

    knn = evaluation.knn
    opened, banks = {}, {}
    for name, data in datas.items():
        img = models[name].image_size[0] if models[name].image_size else 224
        key = (data.mean, data.std, img)
        if key not in opened:
            opened[key] = EvalData.open(data_root, knn.train_split, mean=data.mean, std=data.std,
                                        limit=knn.train_limit, subset_seed=evaluation.subset_seed, img_size=img,
                                        crop_mode=evaluation.crop_mode)
        banks[name] = KnnBank(opened[key], knn, batch_size=oracle.batch_size)
    return banks


def _provenance_config(config: dict, oracle, saliency, paths, args, **extra) -> dict:
    return {"oracle": dataclasses.asdict(oracle), "saliency": dataclasses.asdict(saliency),
            "preset": config.get("preset"), "config_files": list(args.config),
            "models": {n: str(p) for n, p in paths.items()}, "data": str(args.data), "limit": oracle.limit, **extra}


def run_from_args(args) -> int:
    """``spot oracle --config … --model NAME=PATH … --data DIR --out OUT.csv [--limit N] [--tables …]``."""
    from .results import input_checksums, write_table

    started = time.time()
    config, oracle, saliency, evaluation, device = _setup(args)
    tables = _parse_tables(args.tables)
    paths = _results.parse_model_args(args.model)
    models, norms, datas = _open_models(paths, oracle, args.data, device, evaluation.crop_mode)
    banks = _knn_banks(evaluation, models, datas, args.data, oracle) if oracle.knn and "5" in tables else {}
    rows, trajectories = [], {}
    for name, model in models.items():
        r, t = oracle_experiments(model, datas[name], oracle, name=name, tables=tables, saliency=saliency,
                                  knn_bank=banks.get(name), log=print)
        rows.extend(r)
        trajectories[name] = t
    subsets = {f"{name}:{d.split}": d.subset for name, d in datas.items()}
    subsets.update({f"{name}:knn_bank:{b.data.split}": b.data.subset for name, b in banks.items()})
    out = Path(args.out)
    traj_path = write_trajectories(out.with_suffix(".trajectories.npz"), trajectories)
    write_table(rows, out, config=_provenance_config(config, oracle, saliency, paths, args, tables=list(tables)),
                inputs=input_checksums(paths, args.data), seed=oracle.seed, device=device, started=started,
                extra={"normalisation": norms, "trajectories": traj_path.name if traj_path else None,
                       "subsets": subsets})
    print(f"wrote {out} ({len(rows)} rows){f' and {traj_path}' if traj_path else ''}")
    return 0


def run_transfer_from_args(args) -> int:
    """``spot transfer --config … --model A=… --model B=… [--model C=…] --data DIR --out OUT.csv [--limit N]``."""
    from .recipes import settings_from_dict
    from .results import input_checksums, write_table

    started = time.time()
    config, oracle, saliency, evaluation, device = _setup(args)
    settings = settings_from_dict(TransferSettings, config.get("transfer"), "transfer").validate()
    paths = _results.parse_model_args(args.model)
    if len(paths) < 2:
        raise ValueError(f"spot transfer needs at least 2 models (--model A=… --model B=…), got {len(paths)}")
    models, norms, datas = _open_models(paths, oracle, args.data, device, evaluation.crop_mode)
    rows = transfer(models, datas, settings, oracle, saliency=saliency, log=print)
    out = Path(args.out)
    write_table(rows, out, config=_provenance_config(config, oracle, saliency, paths, args,
                                                     transfer=dataclasses.asdict(settings)),
                inputs=input_checksums(paths, args.data), seed=oracle.seed, device=device, started=started,
                extra={"normalisation": norms, "subsets": {f"{n}:{d.split}": d.subset for n, d in datas.items()}})
    print(f"wrote {out} ({len(rows)} rows)")
    return 0
