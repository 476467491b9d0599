"""``spot evaluate``: top-1 and kNN accuracy of trained models over priors × token budgets (Tables 2, 5 and 8).

``evaluate_models({name: checkpoint}, data_root, settings)`` returns a tidy table, one row per measurement:

==================  =============================================================================================
column              meaning
==================  =============================================================================================
model               the name given to the checkpoint (``--model NAME=PATH``)
model_format        ``timm_vit`` (a grid ViT, evaluated through :class:`~spot.models.SPoTViT`) or ``spot_vit``
tokens_mode         how the model was trained (its record's ``recipe.tokens.mode``): ``grid``, ``subpixel`` or
                    ``grid_subset`` (the *grid control* of a retrofit); ``grid`` for fetched backbones
method              ``SPoT`` — tokens at the positions a spatial prior gives (subpixel windows);
                    ``SPoT (snapped)`` — the very same positions moved to the nearest patch-grid centre
                    (:func:`~spot.positions.snap_to_grid`; two tokens may then land on the same cell — they are kept,
                    so the model still sees ``budget`` tokens, some of them identical);
                    ``PatchDropout`` — grid ViTs only: the ViT itself on ``budget`` uniformly random grid patches
                    per image (Liu et al. 2023; at the full grid it is the plain ViT);
                    ``grid subset (random)`` / ``grid subset (even)`` — grid-control models only: ``budget``
                    distinct grid patches per image, uniformly at random / the cells nearest the Isotropic layout
prior               the prior's name for the SPoT methods; ``random`` for PatchDropout and grid subset (random);
                    ``even`` for grid subset (even)
budget              number of tokens m
grid_tokens         the model's number of grid patches at the evaluation image size (budget / grid_tokens is the
                    paper's "% of tokens")
setting             ``main`` for a budget of ``evaluation.budgets``, ``extra`` for one only in ``extra_budgets``
seed                the seed of a stochastic method (one row per seed); empty for deterministic ones (Isotropic,
                    Center, grid subset (even), and the random grid methods at the full grid)
metric              ``acc1`` (top-1 of the classifier head) or ``knn`` (weighted kNN on pooled features, DINO)
value               accuracy in percent
n_images            number of evaluated (query) images
knn_train_images    size of the kNN memory bank (``knn`` rows; empty for ``acc1``)
split               the evaluated split
==================  =============================================================================================

Reproducibility: every random draw (a stochastic prior's positions, a random grid subset) is made per image with a
generator seeded from ``(seed, split, image index)`` only, so results do not depend on the batch size, and the same
seed gives the same positions to every model (paired comparisons). The kNN memory bank (``knn.train_split``, a stratified
subset of ``knn.train_limit`` images, :func:`~spot.data.subsets.stratified_subset`) is encoded with the same tokenization (method, prior, budget, seed) as the queries. Features
are computed once per measurement, the seeds of one prior × budget in one pass over the data (so images are read and
decoded once for all of them); one encoder pass gives both the logits and the pooled feature. On CUDA the encoder runs
under bf16 autocast (positions stay float64; features and kNN are float32).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .positions import grid_cell_index, grid_positions, grid_shape, snap_to_grid
from .priors import isotropic_layout, make_prior, sample_positions

__all__ = ["KnnSettings", "EvaluationSettings", "METHODS", "COLUMNS", "prior_of", "knn_classify", "image_generator", "prior_positions",
           "even_grid_cells", "random_grid_cells", "token_positions", "evaluate_models", "summarise",
           "configure_parser", "run_from_args"]

SPOT, SNAPPED, PATCHDROPOUT = "SPoT", "SPoT (snapped)", "PatchDropout"
GRID_RANDOM, GRID_EVEN = "grid subset (random)", "grid subset (even)"
METHODS = (SPOT, SNAPPED, PATCHDROPOUT, GRID_RANDOM, GRID_EVEN)
GRID_SUBSETS = {"random": GRID_RANDOM, "even": GRID_EVEN}
COLUMNS = ("model", "model_format", "tokens_mode", "method", "prior", "budget", "grid_tokens", "setting", "seed",
           "metric", "value", "n_images", "knn_train_images", "split")


# ------------------------------------------------------------------------------------------------------- settings

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
    priors: list = field(default_factory=lambda: ["uniform", "gaussian", "sobol", "isotropic", "center", "salient",
                                                  "background", "boundary"])
    budgets: list = field(default_factory=lambda: [4, 9, 18, 36])
    extra_budgets: list = field(default_factory=lambda: [6, 13, 22, 27, 31])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    knn: KnnSettings = field(default_factory=KnnSettings)
    patchdropout: bool = True
    grid_subsets: list = field(default_factory=lambda: ["random", "even"])
    # which SPoT measurements to make beyond "every prior × budget × seed on the SPoT models" (each a list of priors,
    # read as a filter on ``priors``; true / null = all of ``priors``, false / [] = none): the same positions snapped
    # to grid-cell centres, the SPoT tokenizer on models trained on the grid (the ViT parents and the grid controls),
    # and the ``extra_budgets``
    snapped: bool | list = True
    grid_model_priors: list | None = None
    extra_budget_priors: list | None = None

    def validate(self) -> "EvaluationSettings":
        def bad(key, value, accepted):
            raise ValueError(f"evaluation.{key} = {value!r} is not valid; accepted: {accepted}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        if not isinstance(self.split, str) or not self.split:
            bad("split", self.split, "a split name (test, val, train)")
        if self.limit is not None and (not is_int(self.limit) or self.limit < 1):
            bad("limit", self.limit, "an int ≥ 1, or null for the whole split")
        if not is_int(self.subset_seed) or self.subset_seed < 0:
            bad("subset_seed", self.subset_seed, "an int ≥ 0")
        from .data.transforms import CROP_MODES

        if self.crop_mode not in CROP_MODES:
            bad("crop_mode", self.crop_mode, ", ".join(CROP_MODES))
        if self.autocast not in ("bfloat16", "float32"):
            bad("autocast", self.autocast, "bfloat16, float32")
        if not is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", self.batch_size, "an int ≥ 1")
        if not isinstance(self.priors, list):
            bad("priors", self.priors, "a list of prior names")
        for name in self.priors:
            prior_of(name)
        if len(set(self.priors)) != len(self.priors):
            bad("priors", self.priors, "a list without repeats")
        for key in ("budgets", "extra_budgets"):
            values = getattr(self, key)
            if not isinstance(values, list) or not all(is_int(m) for m in values):
                bad(key, values, "a list of ints")
            for m in values:
                if m < 1:
                    raise ValueError(f"evaluation.{key}: budget {m} < 1; a budget is a number of tokens ≥ 1")
        if not self.budgets and not self.extra_budgets:
            bad("budgets", self.budgets, "at least one budget (in budgets or extra_budgets)")
        if not isinstance(self.seeds, list) or not all(is_int(s) and s >= 0 for s in self.seeds) \
                or len(set(self.seeds)) != len(self.seeds):
            bad("seeds", self.seeds, "a list of distinct ints ≥ 0")
        if not self.seeds:
            bad("seeds", self.seeds, "at least one seed (stochastic priors and random grid subsets need one)")
        k = self.knn
        if not is_int(k.k) or k.k < 1:
            bad("knn.k", k.k, "an int ≥ 1")
        if not k.temperature > 0:
            bad("knn.temperature", k.temperature, "> 0")
        if not isinstance(k.train_split, str) or not k.train_split:
            bad("knn.train_split", k.train_split, "a split name")
        if k.train_split == self.split:
            bad("knn.train_split", k.train_split, f"a split other than the evaluated one ({self.split!r}): each query "
                                                  f"would find itself in the memory bank")
        if k.train_limit is not None and (not is_int(k.train_limit) or k.train_limit < 1):
            bad("knn.train_limit", k.train_limit, "an int ≥ 1, or null for the whole split")
        if not is_int(k.chunk_size) or k.chunk_size < 1:
            bad("knn.chunk_size", k.chunk_size, "an int ≥ 1")
        if not isinstance(self.patchdropout, bool):
            bad("patchdropout", self.patchdropout, "true, false")
        for key in ("snapped", "grid_model_priors", "extra_budget_priors"):
            value = getattr(self, key)
            if value is None or isinstance(value, bool):
                continue
            if not isinstance(value, list) or len(set(value)) != len(value):
                bad(key, value, "true / null (every prior), false / [] (none), or a list of distinct prior names")
            for name in value:
                prior_of(name)  # a typo is an error; a known prior outside evaluation.priors is simply not evaluated
        if not isinstance(self.grid_subsets, list) or not set(self.grid_subsets) <= set(GRID_SUBSETS) \
                or len(set(self.grid_subsets)) != len(self.grid_subsets):
            bad("grid_subsets", self.grid_subsets, f"a list of distinct values from {sorted(GRID_SUBSETS)}")
        return self

    def priors_for(self, key: str) -> list[str]:
        """The priors a sweep option (``snapped``, ``grid_model_priors``, ``extra_budget_priors``) selects."""
        value = getattr(self, key)
        if value is None or value is True:
            return list(self.priors)
        return [] if value is False else [p for p in self.priors if p in value]

    def all_budgets(self) -> list[tuple[int, str]]:
        """(budget, setting) in order: ``budgets`` (setting ``main``), then the ``extra_budgets`` not among them."""
        out, seen = [], set()
        for key, setting in (("budgets", "main"), ("extra_budgets", "extra")):
            for m in getattr(self, key):
                if m not in seen:
                    seen.add(m)
                    out.append((int(m), setting))
        return out


def prior_of(name):
    """The prior for a configured name (ours or the release's); a clear error listing the accepted ones."""
    from .priors import PRIORS, RELEASE_PRIOR_NAMES

    try:
        return make_prior(name)
    except ValueError:
        raise ValueError(f"evaluation.priors: unknown prior {name!r}; accepted: {', '.join(PRIORS)} (or the "
                         f"release's names {', '.join(RELEASE_PRIOR_NAMES)})") from None


# ------------------------------------------------------------------------------------------------------------ kNN

def knn_classify(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor, *,
                 k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                 chunk_size: int = 1024) -> torch.Tensor:
    """Weighted k-nearest-neighbour classification as DINO's ``eval_knn.py`` (Caron et al. 2021).

    Features are L2-normalised; for each query the k most cosine-similar training features vote for their label
    with weight ``exp(similarity / temperature)``; the class with the largest summed weight is predicted. Queries
    are processed ``chunk_size`` at a time, so only a (chunk, N_train) block of similarities is ever held. ``k`` is
    capped at the number of training features. Returns the predicted labels (Q,) (long, on the queries' device).
    """
    if train_features.dim() != 2 or query_features.dim() != 2 or train_features.shape[1] != query_features.shape[1]:
        raise ValueError(f"features must be (N, D) and (Q, D) with the same D, got {tuple(train_features.shape)} and "
                         f"{tuple(query_features.shape)}")
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(f"train_labels must be ({train_features.shape[0]},), got {tuple(train_labels.shape)}")
    if train_features.shape[0] < 1:
        raise ValueError("kNN needs at least one training feature")
    if k < 1 or not temperature > 0 or chunk_size < 1:
        raise ValueError(f"need k ≥ 1, temperature > 0 and chunk_size ≥ 1, got {k}, {temperature}, {chunk_size}")
    device = query_features.device
    train = F.normalize(train_features.to(device=device, dtype=torch.float32), dim=1)
    labels = train_labels.to(device=device, dtype=torch.long)
    num_classes = int(num_classes if num_classes is not None else int(labels.max()) + 1)
    if int(labels.max()) >= num_classes:
        raise ValueError(f"train_labels hold class {int(labels.max())} ≥ num_classes={num_classes}")
    k = min(int(k), train.shape[0])
    out = []
    for start in range(0, query_features.shape[0], chunk_size):
        q = F.normalize(query_features[start:start + chunk_size].to(torch.float32), dim=1)
        similarity, index = (q @ train.T).topk(k, dim=1, largest=True, sorted=True)
        weights = (similarity / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=device, dtype=torch.float32)
        votes.scatter_add_(1, labels[index], weights)
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=device)


# ------------------------------------------------------------------------------------------------------- positions

def image_generator(seed: int, stream: str, index: int) -> torch.Generator:
    """A CPU generator for one image: seeded from (seed, stream — the split, image index) alone."""
    digest = hashlib.blake2b(f"spot-evaluate/{seed}/{stream}/{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def prior_positions(prior, num_tokens: int, indices, image_size, *, seed: int | None, stream: str,
                    saliency: torch.Tensor | None = None) -> torch.Tensor:
    """Positions of a spatial prior for the images ``indices``: (1, m, 2) for a deterministic prior (shared by every
    image), else (B, m, 2) drawn per image from :func:`image_generator` (``saliency``: (B, H, W), one map each)."""
    p = make_prior(prior)
    if p.deterministic:
        return sample_positions(p, num_tokens, 1, image_size)
    if seed is None:
        raise ValueError(f"prior {p.name!r} is stochastic: give a seed")
    if p.needs_saliency and (saliency is None or saliency.shape[0] != len(indices)):
        raise ValueError(f"prior {p.name!r} needs one saliency map per image ({len(indices)})")
    out = [sample_positions(p, num_tokens, 1, image_size, generator=image_generator(seed, stream, int(i)),
                            saliency=saliency[j] if p.needs_saliency else None)
           for j, i in enumerate(indices)]
    return torch.cat(out)


def even_grid_cells(num_tokens: int, image_size, patch) -> torch.Tensor:
    """``num_tokens`` distinct grid cells (sorted row-major indices) evenly spread: the cells nearest the Isotropic
    layout for m. Each layout point takes the cell containing it; points whose cell was already taken (by an earlier
    point, in layout order) then take, in order, the nearest cell still free (pixel distance, lowest index on ties)."""
    (H, W) = tuple(image_size)
    rows, cols = grid_shape((H, W), patch)
    n = rows * cols
    if not 1 <= num_tokens <= n:
        raise ValueError(f"budget {num_tokens} is outside 1 … {n} grid patches")
    layout = isotropic_layout(num_tokens, (H, W))
    cells = grid_cell_index(layout, (H, W), patch)
    centres = grid_positions((H, W), patch) * torch.tensor([H, W], dtype=torch.float64)
    taken = torch.zeros(n, dtype=torch.bool)
    chosen = [-1] * num_tokens
    for j, c in enumerate(cells.tolist()):
        if not taken[c]:
            taken[c] = True
            chosen[j] = c
    for j in range(num_tokens):
        if chosen[j] < 0:
            d = ((centres - layout[j] * torch.tensor([H, W], dtype=torch.float64)) ** 2).sum(1)
            d[taken] = float("inf")
            c = int(d.argmin())
            taken[c] = True
            chosen[j] = c
    return torch.tensor(sorted(chosen), dtype=torch.long)


def random_grid_cells(num_tokens: int, num_patches: int, indices, *, seed: int, stream: str) -> torch.Tensor:
    """(B, m) distinct, sorted grid-cell indices per image, uniformly at random from :func:`image_generator`."""
    from .models import random_patch_subset

    return torch.cat([random_patch_subset(1, num_patches, num_tokens, image_generator(seed, stream, int(i)))
                      for i in indices])


def token_positions(method: str, prior: str | None, num_tokens: int, indices, image_size, patch, *,
                    seed: int | None, stream: str, saliency: torch.Tensor | None = None) -> torch.Tensor:
    """The positions ``method`` gives the images ``indices`` ((1 or B, m, 2), float64): what the evaluation feeds a
    :class:`~spot.models.SPoTViT`. PatchDropout uses :func:`random_grid_cells` on the ViT's own patches instead."""
    if method in (SPOT, SNAPPED):
        positions = prior_positions(prior, num_tokens, indices, image_size, seed=seed, stream=stream,
                                    saliency=saliency)
        return snap_to_grid(positions, image_size, patch) if method == SNAPPED else positions
    grid = grid_positions(image_size, patch)
    if method == GRID_EVEN:
        return grid[even_grid_cells(num_tokens, image_size, patch)][None]
    if method in (GRID_RANDOM, PATCHDROPOUT):
        if num_tokens == len(grid):
            return grid[None]
        return grid[random_grid_cells(num_tokens, len(grid), indices, seed=seed, stream=stream)]
    raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")


# ---------------------------------------------------------------------------------------------------------- models

@dataclass
class _Entry:
    name: str
    path: Path
    record: dict
    fmt: str
    tokens_mode: str
    model: object  # SPoTViT
    grid_tokens: int

    @property
    def grid_control(self) -> bool:
        return self.fmt == "spot_vit" and self.tokens_mode == "grid_subset"


def _load_entry(name: str, path) -> _Entry:
    from .factory import checkpoint_record, load_trained

    if not isinstance(name, str) or not name:
        raise ValueError(f"model names must be non-empty strings, got {name!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {name!r}: checkpoint {str(path)!r} not found; train it (`spot train`) or "
                                f"fetch it (`spot checkpoints fetch`)")
    record = checkpoint_record(path)
    if not record:
        raise ValueError(f"model {name!r}: {path} has no record ({path.with_suffix('.json')}); evaluate checkpoints "
                         f"written by `spot train` or `spot checkpoints fetch`")
    fmt = record.get("format", "timm_vit")
    if fmt == "mae":
        raise ValueError(f"model {name!r}: {path} is an MAE checkpoint (format 'mae': encoder + pixel decoder), not a "
                         f"classifier; fine-tune it first (e.g. recipe finetune_mae) and evaluate the result")
    if fmt not in ("timm_vit", "spot_vit", "official"):
        raise ValueError(f"model {name!r}: {path} has unknown format {fmt!r}; accepted: timm_vit, spot_vit, "
                         "official (the authors' released weights)")
    model = load_trained(path)
    mode = ((record.get("recipe") or {}).get("tokens") or {}).get("mode") or ("grid" if fmt == "timm_vit" else
                                                                              "subpixel")
    rows, cols = grid_shape(model.image_size, model.patch_size)
    return _Entry(name, path, record, fmt, mode, model, rows * cols)


def _check_budgets(entry: _Entry, settings: EvaluationSettings) -> None:
    grid_methods = []
    if entry.fmt == "timm_vit" and settings.patchdropout:
        grid_methods.append(PATCHDROPOUT)
    if entry.grid_control:
        grid_methods += [GRID_SUBSETS[s] for s in settings.grid_subsets]
    if not grid_methods:
        return
    for m, _ in settings.all_budgets():
        if m > entry.grid_tokens:
            raise ValueError(f"budget {m} > {entry.grid_tokens} grid patches of model {entry.name!r}: "
                             f"{' and '.join(grid_methods)} keep(s) a subset of the grid; drop the budget from "
                             f"evaluation.budgets/extra_budgets or turn those methods off")


# ------------------------------------------------------------------------------------------------------- encoding

class _Context:
    """Data, saliency maps and device shared by all measurements of a run."""

    def __init__(self, data_root, settings: EvaluationSettings, saliency_settings, device, log):
        self.root = Path(data_root)
        self.settings = settings
        self.saliency_settings = saliency_settings
        self.device = torch.device(device)
        self.log = log
        self._data: dict = {}
        self.normalisation: dict = {}  # model name → [mean, std] its images were normalised with
        self._maps: dict = {}
        self._map_bytes = 0
        self.map_budget = 1 << 30  # keep at most ~1 GiB of saliency maps in memory (the rest is recomputed)

    def data(self, entry: _Entry, split: str, limit):
        from .data.evaluation import EvalData, normalisation_of

        cfg = entry.model.pretrained_cfg or {}
        mean, std = normalisation_of(entry.record, default=(cfg.get("mean", (0.5,)), cfg.get("std", (0.5,))))
        self.normalisation[entry.name] = [list(mean), list(std)]
        key = (split, tuple(mean), tuple(std), limit, entry.model.image_size[0])
        if key not in self._data:
            self._data[key] = EvalData.open(self.root, split, mean=mean, std=std, limit=limit,
                                            subset_seed=self.settings.subset_seed, crop_mode=self.settings.crop_mode,
                                            img_size=entry.model.image_size[0])
        return self._data[key]

    def subsets(self) -> dict:
        """{split: how its images were chosen} of every split opened so far (for the provenance)."""
        return {d.split: d.subset for d in self._data.values()}

    def saliency(self, data, indices: torch.Tensor, image_size) -> torch.Tensor:
        """(B, H, W) maps of the images ``indices``, cached in memory up to ``map_budget`` bytes."""
        from .saliency import saliency_maps

        key = (str(data.root), data.split, tuple(image_size), int(indices[0]), int(indices[-1]), len(indices))
        if key in self._maps:
            return self._maps[key]
        maps = saliency_maps(data, indices, self.saliency_settings).detach().cpu().float()
        if self._map_bytes + maps.numel() * 4 <= self.map_budget:
            self._maps[key] = maps
            self._map_bytes += maps.numel() * 4
        return maps

    def autocast(self):
        if self.device.type == "cuda" and self.settings.autocast == "bfloat16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass
class _Measurement:
    """One tokenization (methods that share sampled tokens, e.g. SPoT and its snapped variant) of one model."""

    methods: tuple  # the row methods this measurement produces
    prior: str
    budget: int
    setting: str
    seed: int | None
    # (images, indices, data) → {method: model kwargs}; one forward pass per method
    tokens: Callable
    net: str = "spot"  # spot | patchdropout
    needs_saliency: bool = False


def _encode(ctx: _Context, net, data, group: list[_Measurement], want_logits: bool):
    """One pass over ``data`` for a group of measurements (the seeds of one prior × budget share the pass, so images
    are read once): {(measurement index, method): (pooled features float32 (N, D), predictions (N,) or None)}, labels.
    """
    keys = [(i, method) for i, meas in enumerate(group) for method in meas.methods]
    feats = {key: [] for key in keys}
    preds = {key: [] for key in keys}
    labels = []
    needs_saliency = any(meas.needs_saliency for meas in group)
    for images, y, indices in data.batches(ctx.settings.batch_size):
        saliency = ctx.saliency(data, indices, images.shape[-2:]) if needs_saliency else None
        images = images.to(ctx.device, non_blocking=True)
        labels.append(y.to(ctx.device))
        for i, meas in enumerate(group):
            for method, kwargs in meas.tokens(images, indices, data, saliency).items():
                kwargs = {k: v.to(ctx.device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
                with ctx.autocast():
                    # one encoder pass: the pooled (pre-logits) feature for kNN, and the head's logits on it
                    f = net.forward_head(net.forward_features(images, **kwargs), pre_logits=True)
                    if want_logits:
                        preds[(i, method)].append(net.head(f).argmax(-1))
                feats[(i, method)].append(f.float())
    out = {key: (torch.cat(feats[key]), torch.cat(preds[key]) if want_logits else None) for key in keys}
    return out, torch.cat(labels)


def _groups(measurements: list[_Measurement]) -> list[list[_Measurement]]:
    """Consecutive measurements that differ only in their seed."""
    groups: list[list[_Measurement]] = []
    for meas in measurements:
        key = (meas.net, meas.methods, meas.prior, meas.budget)
        if groups and (groups[-1][0].net, groups[-1][0].methods, groups[-1][0].prior, groups[-1][0].budget) == key:
            groups[-1].append(meas)
        else:
            groups.append([meas])
    return groups


def _spot_measurements(entry: _Entry, settings: EvaluationSettings) -> list[_Measurement]:
    out = []
    patch = entry.model.patch_size
    grid_trained = entry.tokens_mode in ("grid", "grid_subset")
    priors = settings.priors_for("grid_model_priors") if grid_trained else settings.priors
    snapped, extra = settings.priors_for("snapped"), settings.priors_for("extra_budget_priors")
    for name in priors:
        prior = prior_of(name)
        methods = (SPOT, SNAPPED) if name in snapped else (SPOT,)
        for m, setting in settings.all_budgets():
            if setting == "extra" and name not in extra:
                continue
            for seed in ([None] if prior.deterministic else settings.seeds):
                def tokens(images, indices, data, saliency, prior=prior, m=m, seed=seed, methods=methods):
                    size = tuple(images.shape[-2:])
                    pos = prior_positions(prior, m, indices, size, seed=seed, stream=data.split, saliency=saliency)
                    out = {SPOT: {"positions": pos}}
                    if SNAPPED in methods:
                        out[SNAPPED] = {"positions": snap_to_grid(pos, size, patch)}
                    return out

                out.append(_Measurement(methods, name, m, setting, seed, tokens, "spot", prior.needs_saliency))
    return out


def _grid_measurements(entry: _Entry, settings: EvaluationSettings) -> list[_Measurement]:
    out = []
    patch = entry.model.patch_size
    budgets = settings.all_budgets()

    def check_size(images):
        if tuple(images.shape[-2:]) != tuple(entry.model.image_size):
            raise ValueError(f"model {entry.name!r} expects {entry.model.image_size} images but the data has "
                             f"{tuple(images.shape[-2:])}; grid methods need the model's own image size")

    if entry.fmt == "timm_vit" and settings.patchdropout:
        for m, setting in budgets:
            for seed in ([None] if m == entry.grid_tokens else settings.seeds):
                def tokens(images, indices, data, saliency, m=m, seed=seed):
                    check_size(images)
                    if m == entry.grid_tokens:
                        return {PATCHDROPOUT: {}}  # every patch: the plain ViT
                    keep = random_grid_cells(m, entry.grid_tokens, indices, seed=seed, stream=data.split)
                    return {PATCHDROPOUT: {"keep": keep}}

                out.append(_Measurement((PATCHDROPOUT,), "random", m, setting, seed, tokens, "patchdropout"))
    if entry.grid_control:
        for kind in settings.grid_subsets:
            method = GRID_SUBSETS[kind]
            for m, setting in budgets:
                seeds = [None] if (kind == "even" or m == entry.grid_tokens) else settings.seeds
                for seed in seeds:
                    def tokens(images, indices, data, saliency, method=method, m=m, seed=seed):
                        check_size(images)
                        pos = token_positions(method, None, m, indices, tuple(images.shape[-2:]), patch, seed=seed,
                                              stream=data.split)
                        return {method: {"positions": pos}}

                    out.append(_Measurement((method,), kind, m, setting, seed, tokens, "spot"))
    return out


@torch.inference_mode()
def _evaluate_entry(ctx: _Context, entry: _Entry) -> list[dict]:
    from .factory import load_trained
    from .models import PatchDropoutViT

    s = ctx.settings
    query = ctx.data(entry, s.split, s.limit)
    bank = ctx.data(entry, s.knn.train_split, s.knn.train_limit)
    nets = {"spot": entry.model.to(ctx.device).eval()}
    measurements = _spot_measurements(entry, s) + _grid_measurements(entry, s)
    if any(meas.net == "patchdropout" for meas in measurements):
        nets["patchdropout"] = PatchDropoutViT(load_trained(entry.path, wrap=False)).to(ctx.device).eval()
    num_classes = entry.model.num_classes or None
    rows = []
    for group in _groups(measurements):
        t0 = time.time()
        net = nets[group[0].net]
        q, q_labels = _encode(ctx, net, query, group, want_logits=True)
        t, t_labels = _encode(ctx, net, bank, group, want_logits=False)
        classes = max(num_classes or 0, int(q_labels.max()) + 1, int(t_labels.max()) + 1)
        for i, meas in enumerate(group):
            summary = []
            for method in meas.methods:
                features, preds = q[(i, method)]
                acc1 = 100.0 * int((preds == q_labels).sum()) / len(q_labels)
                knn_preds = knn_classify(t[(i, method)][0], t_labels, features, k=s.knn.k,
                                         temperature=s.knn.temperature, num_classes=classes,
                                         chunk_size=s.knn.chunk_size)
                knn = 100.0 * int((knn_preds == q_labels).sum()) / len(q_labels)
                base = dict(model=entry.name, model_format=entry.fmt, tokens_mode=entry.tokens_mode, method=method,
                            prior=meas.prior, budget=meas.budget, grid_tokens=entry.grid_tokens,
                            setting=meas.setting, seed=meas.seed)
                rows.append({**base, "metric": "acc1", "value": acc1, "n_images": query.n, "knn_train_images": None,
                             "split": s.split})
                rows.append({**base, "metric": "knn", "value": knn, "n_images": query.n,
                             "knn_train_images": bank.n, "split": s.split})
                summary.append(f"{method}: acc1 {acc1:.2f} knn {knn:.2f}")
            seed = "" if meas.seed is None else f" seed {meas.seed}"
            ctx.log(f"[{entry.name}] {meas.prior} m={meas.budget}{seed}: {'; '.join(summary)}")
        ctx.log(f"[{entry.name}] ({time.time() - t0:.1f} s for {len(group)} run(s) of {group[0].prior} "
                f"m={group[0].budget})")
    for net in nets.values():
        net.to("cpu")
    return rows


def evaluate_models(models: dict, data_root, settings: EvaluationSettings | None = None, saliency_settings=None,
                    device=None, limit: int | None = None, log=print, details: dict | None = None) -> list[dict]:
    """Evaluate every model over the configured priors × budgets (× seeds) and grid baselines; tidy rows.

    Args:
        models: {name: checkpoint path}; each checkpoint needs its JSON record (``spot train`` / ``spot checkpoints
            fetch`` write one). ``timm_vit`` models get the SPoT rows (through :class:`~spot.models.SPoTViT`) and
            PatchDropout rows; ``spot_vit`` models the SPoT rows, and grid controls (``tokens.mode: grid_subset``)
            also the grid-subset rows. MAE checkpoints are rejected (no classifier).
        data_root: a dataset folder prepared by ``spot data``.
        settings: the ``evaluation:`` section (defaults: ``EvaluationSettings()``).
        saliency_settings: the ``saliency:`` section (a :class:`~spot.saliency.SaliencySettings`; needed by the
            salient / background priors).
        device: torch device (default: cuda if available, else cpu); on cuda the encoder runs under bf16 autocast
            (positions stay float64).
        limit: evaluate a stratified subset of ``limit`` images of the split (overrides ``settings.limit``).
        details: a dict, filled for the caller's provenance with ``subsets`` (``{split: subset record}``: which
            images were evaluated and which formed the kNN bank, :func:`~spot.data.subsets.subset_record`) and
            ``normalisation`` (``{model: [mean, std]}``).

    Returns rows with the columns of the module docs (``COLUMNS``). All models, formats and budgets are checked before
    any evaluation starts.
    """
    from .saliency import SaliencySettings

    settings = settings or EvaluationSettings()
    settings = dataclasses.replace(settings, knn=dataclasses.replace(settings.knn))  # a copy: the caller's is kept
    if limit is not None:
        settings.limit = limit
    settings.validate()
    if not isinstance(models, dict) or not models:
        raise ValueError("give at least one model: {name: checkpoint path}")
    saliency_settings = saliency_settings or SaliencySettings()
    if any(prior_of(p).needs_saliency for p in settings.priors):
        saliency_settings.validate()
    entries = [_load_entry(name, path) for name, path in models.items()]
    for entry in entries:
        _check_budgets(entry, settings)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ctx = _Context(data_root, settings, saliency_settings, device, log)
    rows = []
    for entry in entries:
        log(f"evaluating {entry.name} ({entry.fmt}, tokens {entry.tokens_mode}, {entry.grid_tokens} grid patches)")
        rows += _evaluate_entry(ctx, entry)
    if details is not None:
        details.update(subsets=ctx.subsets(), normalisation=ctx.normalisation)
    return rows


def summarise(rows):
    """Mean, std (over seeds, ddof = 1; 0 for a single run) and n_seeds per (model, method, prior, budget, setting,
    metric), as a pandas DataFrame."""
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    keys = [k for k in ("model", "model_format", "tokens_mode", "method", "prior", "budget", "grid_tokens",
                        "setting", "metric") if k in frame.columns]
    grouped = frame.groupby(keys, dropna=False, sort=False)["value"]
    out = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


# ------------------------------------------------------------------------------------------------------------ CLI

def configure_parser(parser) -> None:
    """Arguments of ``spot evaluate``."""
    from .results import add_experiment_arguments

    add_experiment_arguments(parser, "evaluation")


def run_from_args(args) -> int:
    """Run ``spot evaluate`` from parsed arguments (see :func:`configure_parser`); writes ``args.out``."""
    from .results import experiment_settings, input_checksums, parse_model_args, write_table

    started = time.time()
    if not str(args.out).endswith(".csv"):
        raise ValueError(f"--out must be a .csv file, got {args.out}")
    models = {name: str(path) for name, path in parse_model_args(args.model).items()}
    config, settings, saliency, device = experiment_settings(args, EvaluationSettings, "evaluation")
    details: dict = {}
    rows = evaluate_models(models, args.data, settings, saliency, device=device, details=details)
    provenance_config = {"evaluation": dataclasses.asdict(settings), "saliency": dataclasses.asdict(saliency),
                         "models": {k: str(v) for k, v in models.items()}, "data": str(args.data),
                         "config_files": list(args.config)}
    out = write_table(rows, args.out, config=provenance_config,
                      inputs=input_checksums(checkpoints=models, data_root=args.data), seed=settings.seeds,
                      device=device, started=started, extra=details)
    print(f"spot evaluate: {len(rows)} rows for {len(models)} model(s) in {time.time() - started:.0f} s → {out}")
    return 0
