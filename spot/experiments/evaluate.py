"""``spot evaluate``: top-1 and kNN accuracy of a backbone's models over placements × token budgets (Tables 2, 5, 8).

``evaluate_models({variant: checkpoint}, data_root, settings, backbone=…)`` returns a tidy table, one row per
measurement (:data:`COLUMNS`):

==================  =============================================================================================
column              meaning
==================  =============================================================================================
experiment          ``evaluation``
backbone            the backbone the models belong to (``--backbone``: cls_in1k …)
variant             the model (``--model VARIANT=PATH``): ``parent`` (the grid ViT), ``spot`` (its retrofit),
                    ``grid_control`` (the same retrofit on random grid patches) in the workflow
model_format        ``timm_vit``, ``spot_vit`` or ``official`` (:data:`spot.weights.checkpoints.FORMATS`)
tokens_mode         how the model was trained (its record's ``recipe.tokens.mode``): ``grid``, ``subpixel`` or
                    ``grid_subset`` (the grid control's random grid patches)
method              how the model takes its tokens: ``spot`` — the subpixel tokenizer at the positions;
                    ``patchdropout`` — grid ViTs only: the ViT itself keeping ``budget`` of its patch tokens
                    (Liu et al. 2023; at the full grid it is the plain ViT)
placement           where the tokens are (:mod:`spot.core.placement`, by label): a prior, ``grid_random`` (distinct
                    random grid patches: PatchDropout, the grid control), ``grid_even`` (evenly spread patches)
positions           ``placed`` — as the placement gives them; ``snapped`` — the very same positions moved to the
                    nearest patch-grid centre (two tokens may land on one cell: both are kept)
budget              number of tokens m
grid_tokens         the model's number of grid patches (budget / grid_tokens is the paper's "% of tokens")
budget_set          ``main`` for a budget of ``evaluation.budgets``, ``extra`` for one only in ``extra_budgets``
seed                the seed of a stochastic placement (one row per seed); empty for deterministic ones
metric              ``acc1`` (top-1 of the classifier head) or ``knn`` (weighted kNN on pooled features, DINO)
value               accuracy in percent
n_images            number of evaluated (query) images
n_correct           number of those classified correctly (value = 100 · n_correct / n_images)
ci_low, ci_high     the 95 % Wilson score interval of value, in percent (:func:`spot.stats.wilson`)
outcomes            which query images were correct: one bit per image in the order of the evaluated subset
                    (ascending split index, the sidecar's ``subsets`` record of the split), packed and base64
                    (:func:`spot.stats.outcome_columns`; read back with :func:`spot.stats.decode_outcomes`)
knn_train_images    size of the kNN memory bank (``knn`` rows; empty for ``acc1``)
split               the evaluated split
==================  =============================================================================================

Which measurements: every prior of ``evaluation.priors`` × budget (× seed) on the SPoT models; the priors of
``grid_model_priors`` on the grid-trained models (the parent, the grid control); ``snapped`` rows for the priors of
``evaluation.snapped``; PatchDropout on the parent; the grid control's own ``grid_placements``.

Reproducibility: every random draw is made per image from the stream ``spot-evaluate/seed/split/image index``
(:class:`spot.core.placement.ImageStreams`), so results do not depend on the batch size, and every stochastic placement
and budget of one seed shares an image's stream — paired comparisons, and the same positions for every model. The kNN
memory bank (``knn.train_split``, a stratified subset of ``knn.train_limit`` images,
:func:`~spot.data.subsets.stratified_subset`) is encoded with the same tokenization as the queries. Features are
computed once per measurement, the seeds of one placement × budget in one pass over the data (images are read and
decoded once for all of them); one encoder pass gives both the logits and the pooled feature. On CUDA the encoder
runs under bf16 autocast (``evaluation.autocast``; positions stay float64; features and kNN are float32).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .protocol import Outcome, experiment, experiment_settings, model_arguments
from ..core.placement import ImageBatch, ImageStreams, make_placement, place
from ..core.positions import grid_cell_index, grid_shape, snap_to_grid
from ..results import input_checksums, parse_model_args
from ..settings.evaluation import EvaluationSettings, KnnSettings
from ..stats import outcome_columns
from ..weights.checkpoints import open_checkpoint
from ..core.models import PatchDropoutViT
from .saliency import SaliencySettings
from ..data.evaluation import EvalData
from .saliency import SaliencyMemo
import pandas as pd

__all__ = ["KnnSettings", "EvaluationSettings", "METHODS", "COLUMNS", "knn_classify", "evaluate_models",
           "summarise", "run"]

METHODS = ("spot", "patchdropout")
COLUMNS = ("experiment", "backbone", "variant", "model_format", "tokens_mode", "method", "placement", "positions",
           "budget", "grid_tokens", "budget_set", "seed", "metric", "value", "n_images", "n_correct", "ci_low",
           "ci_high", "outcomes", "knn_train_images", "split")
PARENT, SPOT, GRID_CONTROL = "parent", "spot", "grid_control"  # the workflow's variants


# ------------------------------------------------------------------------------------------------------------ kNN

def knn_classify(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor, *,
                 k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                 chunk_size: int = 1024, bank_chunk_size: int = 65536) -> torch.Tensor:
    """Weighted k-nearest-neighbour classification as DINO's ``eval_knn.py`` (Caron et al. 2021).

    Features are L2-normalised; for each query the k most cosine-similar training features vote for their label
    with weight ``exp(similarity / temperature)``; the class with the largest summed weight is predicted. Queries
    are processed ``chunk_size`` at a time against ``bank_chunk_size`` training features at a time, each block's
    top k merged into the running top k, so the similarities held are a (chunk_size, bank_chunk_size + k) block
    whatever the size of the training split (ImageNet's 1.28 M: 0.27 GB instead of 5.2 GB at the defaults), and the
    bank is normalised block by block (never copied whole); a bank of at most ``bank_chunk_size`` features is one
    block. ``k`` is capped at the number of training features.
    Returns the predicted labels (Q,) (long, on the queries' device).
    """
    if train_features.dim() != 2 or query_features.dim() != 2 or train_features.shape[1] != query_features.shape[1]:
        raise ValueError(f"features must be (N, D) and (Q, D) with the same D, got {tuple(train_features.shape)} and "
                         f"{tuple(query_features.shape)}")
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(f"train_labels must be ({train_features.shape[0]},), got {tuple(train_labels.shape)}")
    if train_features.shape[0] < 1:
        raise ValueError("kNN needs at least one training feature")
    if k < 1 or not temperature > 0 or chunk_size < 1 or bank_chunk_size < 1:
        raise ValueError(f"need k ≥ 1, temperature > 0, chunk_size ≥ 1 and bank_chunk_size ≥ 1, got {k}, "
                         f"{temperature}, {chunk_size}, {bank_chunk_size}")
    device = query_features.device
    train = train_features.to(device=device, dtype=torch.float32)  # normalised block by block: no copy of the bank
    labels = train_labels.to(device=device, dtype=torch.long)
    num_classes = int(num_classes if num_classes is not None else int(labels.max()) + 1)
    if int(labels.max()) >= num_classes:
        raise ValueError(f"train_labels hold class {int(labels.max())} ≥ num_classes={num_classes}")
    k = min(int(k), train.shape[0])
    out = []
    for start in range(0, query_features.shape[0], chunk_size):
        q = F.normalize(query_features[start:start + chunk_size].to(torch.float32), dim=1)
        similarity, index = _top_k(q, train, k, bank_chunk_size)
        weights = (similarity / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=device, dtype=torch.float32)
        votes.scatter_add_(1, labels[index], weights)
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=device)


def _top_k(q: torch.Tensor, train: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest cosine similarities of the (normalised) queries ``q`` to the rows of ``train`` and their
    indices, ``block`` training features at a time (each normalised, its top k merged into the running one)."""
    best = best_index = None
    for first in range(0, train.shape[0], block):
        part = F.normalize(train[first:first + block], dim=1)
        sim, index = (q @ part.T).topk(min(k, part.shape[0]), dim=1, sorted=True)
        index = index + first
        if best is not None:
            sim, pick = torch.cat([best, sim], dim=1).topk(min(k, best.shape[1] + sim.shape[1]), dim=1, sorted=True)
            index = torch.gather(torch.cat([best_index, index], dim=1), 1, pick)
        best, best_index = sim, index
    return best, best_index


# ---------------------------------------------------------------------------------------------------------- models

@dataclass
class _Entry:
    variant: str
    checkpoint: object  # spot.weights.checkpoints.Checkpoint
    grid_tokens: int

    @property
    def model(self):
        return self.checkpoint.model

    @property
    def grid_trained(self) -> bool:
        """Trained on the patch grid: a ViT parent, or a grid control."""
        return self.checkpoint.tokens_mode in ("grid", "grid_subset")

    @property
    def grid_control(self) -> bool:
        return self.checkpoint.format == "spot_vit" and self.checkpoint.tokens_mode == "grid_subset"

    @property
    def patchdropout(self) -> bool:
        return self.checkpoint.format == "timm_vit"


def _load_entry(variant: str, path) -> _Entry:
    if not isinstance(variant, str) or not variant:
        raise ValueError(f"model names must be non-empty strings, got {variant!r}")
    checkpoint = open_checkpoint(path, classifier=True, name=variant)
    rows, cols = grid_shape(checkpoint.model.image_size, checkpoint.model.patch_size)
    return _Entry(variant, checkpoint, rows * cols)


def _check_budgets(entry: _Entry, settings: EvaluationSettings) -> None:
    grid_methods = []
    if entry.patchdropout and settings.patchdropout:
        grid_methods.append("PatchDropout")
    if entry.grid_control:
        grid_methods += [make_placement(p).label for p in settings.grid_placements]
    if not grid_methods:
        return
    for m, _ in settings.all_budgets():
        if m > entry.grid_tokens:
            raise ValueError(f"budget {m} > {entry.grid_tokens} grid patches of model {entry.variant!r}: "
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
        self.normalisation: dict = {}  # variant → [mean, std] its images were normalised with
        self.saliency = SaliencyMemo(saliency_settings)  # at most ~1 GiB of maps kept in memory

    def data(self, entry: "_Entry", split: str, limit):
        mean, std = entry.checkpoint.normalisation
        self.normalisation[entry.variant] = [list(mean), list(std)]
        key = (split, tuple(mean), tuple(std), limit, entry.model.image_size[0])
        if key not in self._data:
            self._data[key] = EvalData.open(self.root, split, mean=mean, std=std, limit=limit,
                                            subset_seed=self.settings.subset_seed, crop_mode=self.settings.crop_mode,
                                            img_size=entry.model.image_size[0])
        return self._data[key]

    def subsets(self) -> dict:
        """{split: how its images were chosen} of every split opened so far (for the provenance)."""
        return {d.split: d.subset for d in self._data.values()}

    def autocast(self):
        if self.device.type == "cuda" and self.settings.autocast == "bfloat16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass
class _Measurement:
    """One tokenization of one model: a placement at a budget (and seed), its rows (``positions``: placed, and the
    same positions snapped) through one method."""

    method: str  # spot | patchdropout
    placement: object  # the Placement the rows are named by
    budget: int
    budget_set: str
    seed: int | None
    positions: tuple = ("placed",)
    sampled: object = None  # the Placement actually drawn (the full grid for a random subset of all patches)
    # a deterministic placement's positions (placed, snapped) per image size and device, placed once for the whole
    # pass: the same tensors every batch, so the model keeps their window plan and embedding (LayoutMemo)
    _layouts: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def net(self) -> str:
        return self.method

    @property
    def needs_saliency(self) -> bool:
        return (self.sampled or self.placement).needs_saliency

    def tokens(self, images, indices, data, saliency, patch, net=None) -> dict:
        """{positions kind: model keyword arguments} for a batch (``net``: the model, for placements that run it)."""
        batch = ImageBatch(tuple(images.shape[-2:]), len(indices), saliency=saliency, patch=patch,
                           indices=indices.tolist(), images=images, model=net)
        placement = self.sampled or self.placement
        if self.method == "spot" and placement.deterministic:
            key = (batch.image_size, images.device)
            if key not in self._layouts:
                with torch.inference_mode(False):  # ordinary tensors (a version counter): the model may keep them
                    self._layouts[key] = self._spot_tokens(place(placement, self.budget, batch), batch, patch,
                                                           images.device)
            return self._layouts[key]
        streams = None if self.seed is None else ImageStreams("spot-evaluate", self.seed, data.split)
        positions = place(placement, self.budget, batch, streams)
        if self.method == "patchdropout":
            if placement.name == "grid":
                return {"placed": {}}  # every patch: the plain ViT
            keep = grid_cell_index(positions, batch.image_size, patch)
            return {"placed": {"keep": keep.expand(batch.batch_size, -1)}}
        return self._spot_tokens(positions, batch, patch, images.device)

    def _spot_tokens(self, positions, batch: ImageBatch, patch, device) -> dict:
        out = {"placed": {"positions": positions.to(device)}}
        if "snapped" in self.positions:
            out["snapped"] = {"positions": snap_to_grid(positions, batch.image_size, patch).to(device)}
        return out


def _encode(ctx: _Context, net, data, group: list[_Measurement], patch, want_logits: bool):
    """One pass over ``data`` for a group of measurements (the seeds of one placement × budget share the pass, so
    images are read once): {(measurement index, positions): (pooled features float32 (N, D), predictions (N,) or
    None)}, labels."""
    keys = [(i, kind) for i, meas in enumerate(group) for kind in meas.positions]
    feats = {key: [] for key in keys}
    preds = {key: [] for key in keys}
    labels = []
    needs_saliency = any(meas.needs_saliency for meas in group)
    for images, y, indices in data.batches(ctx.settings.batch_size):
        saliency = ctx.saliency(data, indices) if needs_saliency else None
        images = images.to(ctx.device, non_blocking=True)
        labels.append(y.to(ctx.device))
        for i, meas in enumerate(group):
            for kind, kwargs in meas.tokens(images, indices, data, saliency, patch, net).items():
                kwargs = {k: v.to(ctx.device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
                with ctx.autocast():
                    # one encoder pass: the pooled (pre-logits) feature for kNN, and the head's logits on it
                    f = net.forward_head(net.forward_features(images, **kwargs), pre_logits=True)
                    if want_logits:
                        preds[(i, kind)].append(net.head(f).argmax(-1))
                feats[(i, kind)].append(f.float())
    out = {key: (torch.cat(feats[key]), torch.cat(preds[key]) if want_logits else None) for key in keys}
    return out, torch.cat(labels)


def _groups(measurements: list[_Measurement]) -> list[list[_Measurement]]:
    """Consecutive measurements that differ only in their seed."""
    groups: list[list[_Measurement]] = []
    for meas in measurements:
        key = (meas.method, meas.positions, meas.placement.label, meas.budget)
        if groups and (groups[-1][0].method, groups[-1][0].positions, groups[-1][0].placement.label,
                       groups[-1][0].budget) == key:
            groups[-1].append(meas)
        else:
            groups.append([meas])
    return groups


def _seeds(placement, settings: EvaluationSettings) -> list:
    return list(settings.seeds) if placement.random else [None]


def _spot_measurements(entry: _Entry, settings: EvaluationSettings) -> list[_Measurement]:
    """The priors through the subpixel tokenizer (the grid-trained models: ``grid_model_priors`` only)."""
    out = []
    priors = settings.priors_for("grid_model_priors") if entry.grid_trained else settings.placements()
    snapped = {p.label for p in settings.priors_for("snapped")}
    extra = {p.label for p in settings.priors_for("extra_budget_priors")}
    for prior in priors:
        kinds = ("placed", "snapped") if prior.label in snapped else ("placed",)
        for m, budget_set in settings.all_budgets():
            if budget_set == "extra" and prior.label not in extra:
                continue
            out += [_Measurement("spot", prior, m, budget_set, seed, kinds) for seed in _seeds(prior, settings)]
    return out


def _grid_measurements(entry: _Entry, settings: EvaluationSettings) -> list[_Measurement]:
    """PatchDropout on a grid ViT, and a grid control's own placements (random / evenly spread grid patches); at
    the full grid a random subset of all patches is every patch (one deterministic row)."""
    runs = []
    if entry.patchdropout and settings.patchdropout:
        runs.append(("patchdropout", make_placement("grid_random")))
    if entry.grid_control:
        runs += [("spot", make_placement(p)) for p in settings.grid_placements]
    out = []
    for method, placement in runs:
        for m, budget_set in settings.all_budgets():
            full = m == entry.grid_tokens and placement.name == "grid_random"
            sampled = make_placement("grid") if full else placement
            out += [_Measurement(method, placement, m, budget_set, seed, sampled=sampled)
                    for seed in _seeds(sampled, settings)]
    return out


@torch.inference_mode()
def _evaluate_entry(ctx: _Context, entry: _Entry, backbone: str) -> list[dict]:
    s = ctx.settings
    query = ctx.data(entry, s.split, s.limit)
    bank = ctx.data(entry, s.knn.train_split, s.knn.train_limit)
    nets = {"spot": entry.model.to(ctx.device).eval()}
    measurements = _spot_measurements(entry, s) + _grid_measurements(entry, s)
    if any(meas.method == "patchdropout" for meas in measurements):
        nets["patchdropout"] = PatchDropoutViT(entry.checkpoint.grid_vit()).to(ctx.device).eval()
    patch = entry.model.patch_size
    for meas in measurements:  # a grid method at a budget beyond the grid fails here, before any encoding
        if meas.method == "patchdropout" and meas.budget > entry.grid_tokens:
            raise ValueError(f"PatchDropout keeps at most the {entry.grid_tokens} grid patches, not {meas.budget}")
    num_classes = entry.model.num_classes or None
    rows = []
    c = entry.checkpoint
    for group in _groups(measurements):
        t0 = time.time()
        net = nets[group[0].net]
        q, q_labels = _encode(ctx, net, query, group, patch, want_logits=True)
        t, t_labels = _encode(ctx, net, bank, group, patch, want_logits=False)
        classes = max(num_classes or 0, int(q_labels.max()) + 1, int(t_labels.max()) + 1)
        for i, meas in enumerate(group):
            summary = []
            for kind in meas.positions:
                features, preds = q[(i, kind)]
                acc1 = outcome_columns((preds == q_labels).cpu().numpy())
                knn_preds = knn_classify(t[(i, kind)][0], t_labels, features, k=s.knn.k,
                                         temperature=s.knn.temperature, num_classes=classes,
                                         chunk_size=s.knn.chunk_size)
                knn = outcome_columns((knn_preds == q_labels).cpu().numpy())
                base = dict(experiment="evaluation", backbone=backbone, variant=entry.variant, model_format=c.format,
                            tokens_mode=c.tokens_mode, method=meas.method, placement=meas.placement.label,
                            positions=kind, budget=meas.budget, grid_tokens=entry.grid_tokens,
                            budget_set=meas.budget_set, seed=meas.seed)
                # value, n_images and the uncertainty columns from the per-image outcomes (spot.stats)
                rows.append({**base, "metric": "acc1", **acc1, "knn_train_images": None, "split": s.split})
                rows.append({**base, "metric": "knn", **knn, "knn_train_images": bank.n, "split": s.split})
                summary.append(f"{kind}: acc1 {acc1['value']:.2f} knn {knn['value']:.2f}")
            seed = "" if meas.seed is None else f" seed {meas.seed}"
            ctx.log(f"[{entry.variant}] {meas.method} {meas.placement.label} m={meas.budget}{seed}: "
                    f"{'; '.join(summary)}")
        ctx.log(f"[{entry.variant}] ({time.time() - t0:.1f} s for {len(group)} run(s) of {group[0].placement.label} "
                f"m={group[0].budget})")
    for net in nets.values():
        net.to("cpu")
    return rows


def evaluate_models(models: dict, data_root, settings: EvaluationSettings | None = None, saliency_settings=None,
                    device=None, limit: int | None = None, log=print, details: dict | None = None,
                    backbone: str = "model") -> list[dict]:
    """Evaluate a backbone's models over the configured placements × budgets (× seeds) and grid baselines.

    Args:
        models: {variant: checkpoint path}; each checkpoint needs its JSON record (``spot train`` / ``spot
            checkpoints fetch`` / ``spot checkpoints official`` write one). ``timm_vit`` models get the SPoT rows
            (through :class:`~spot.core.models.SPoTViT`) and PatchDropout rows; ``spot_vit`` models the SPoT rows, and
            grid controls (``tokens.mode: grid_subset``) also their grid placements. MAE checkpoints are rejected.
        data_root: a dataset folder prepared by ``spot data``.
        settings: the ``evaluation:`` section (defaults: ``EvaluationSettings()``).
        saliency_settings: the ``saliency:`` section (a :class:`~spot.experiments.saliency.SaliencySettings`; needed by the
            salient / background priors).
        device: torch device (default: cuda if available, else cpu); on cuda the encoder runs under bf16 autocast
            (positions stay float64).
        limit: evaluate a stratified subset of ``limit`` images of the split (overrides ``settings.limit``).
        details: a dict, filled for the caller's provenance with ``subsets`` (``{split: subset record}``: which
            images were evaluated and which formed the kNN bank, :func:`~spot.data.subsets.subset_record`) and
            ``normalisation`` (``{variant: [mean, std]}``).
        backbone: the ``backbone`` column of the rows.

    Returns rows with the columns of the module docs (:data:`COLUMNS`). All models, formats and budgets are checked
    before any evaluation starts.
    """

    settings = settings or EvaluationSettings()
    settings = dataclasses.replace(settings, knn=dataclasses.replace(settings.knn))  # a copy: the caller's is kept
    if limit is not None:
        settings.limit = limit
    settings.validate()
    if not isinstance(models, dict) or not models:
        raise ValueError("give at least one model: {variant: checkpoint path}")
    saliency_settings = saliency_settings or SaliencySettings()
    if any(p.needs_saliency for p in settings.placements()):
        saliency_settings.validate()
    entries = [_load_entry(variant, path) for variant, path in models.items()]
    for entry in entries:
        _check_budgets(entry, settings)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ctx = _Context(data_root, settings, saliency_settings, device, log)
    rows = []
    for entry in entries:
        c = entry.checkpoint
        log(f"evaluating {backbone} {entry.variant} ({c.format}, tokens {c.tokens_mode}, {entry.grid_tokens} grid "
            f"patches)")
        rows += _evaluate_entry(ctx, entry, backbone)
    if details is not None:
        details.update(subsets=ctx.subsets(), normalisation=ctx.normalisation)
    return rows


def summarise(rows):
    """Mean, std (over seeds, ddof = 1; 0 for a single run) and n_seeds per measurement (every column but the seed
    and the value), as a pandas DataFrame."""

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    keys = [k for k in ("backbone", "variant", "model_format", "tokens_mode", "method", "placement", "positions",
                        "budget", "grid_tokens", "budget_set", "metric") if k in frame.columns]
    grouped = frame.groupby(keys, dropna=False, sort=False)["value"]
    out = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


# ------------------------------------------------------------------------------------------------- the command

@experiment("evaluate", kind="evaluation", columns=COLUMNS, arguments=model_arguments("evaluation"),
            help="Acc@1 and kNN per model × prior × token budget (Tables 2, 5, 8), with PatchDropout, grid-control "
                 "and snapped-prior rows",
            example="spot evaluate --config config.yaml --backbone cls_in1k --model vit=models/cls_in1k.safetensors "
                    "--model spot=models/cls_in1k_spot1.safetensors --data results/embedded/data "
                    "--out evaluation.csv")
def run(args, config: dict) -> Outcome:
    """``spot evaluate``: every model of ``--model`` on ``--data`` (the ``evaluation:`` and ``saliency:`` sections)."""
    models = {name: str(path) for name, path in parse_model_args(args.model).items()}
    settings, saliency, device = experiment_settings(args, config, EvaluationSettings, "evaluation")
    details: dict = {}
    rows = evaluate_models(models, args.data, settings, saliency, device=device, details=details,
                           backbone=args.backbone)
    return Outcome(rows, settings={"evaluation": dataclasses.asdict(settings),
                                   "saliency": dataclasses.asdict(saliency), "backbone": args.backbone,
                                   "models": models, "data": str(args.data)},
                   inputs=input_checksums(checkpoints=models, data_root=args.data), seed=settings.seeds,
                   device=device, extra=details, summary=f" for {len(models)} model(s)")
