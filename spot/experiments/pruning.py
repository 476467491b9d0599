"""``spot pruning``: accuracy and GFLOPs of pruned models, ToMe, and sampling at the same cost (SPOT-AD paper Tables 1,
2, 7, 8; the sampling-vs-pruning comparison).

``evaluate_pruning({name: checkpoint}, data_root, settings, …)`` takes one backbone's models — its grid ViT
(``parent``; required), SPoT model (``spot``) and grid control (``grid_control``) where it has them, and any number
of pruning fine-tunes
(``format: pruned_vit``; the name is the row's ``setting``: ``spot_ad``, ``evit``, ``spot_ad_no_mean`` …) — and
returns tidy rows (:data:`COLUMNS`):

* the dense parent (``method`` ``vit``) and every pruned model at every keep ratio of ``pruning.sweep`` (a model
  fine-tuned at ρ = 0.7 evaluated at other ρ: ``trained_keep_ratio`` says which); a pruned SPoT model (SPoT +
  SPOT-AD) at each of ``pruning.combined_budgets`` input tokens (Isotropic positions);
* ToMe on the parent (training-free) with the r matching each ρ (:func:`~spot.core.pruning.methods.matching_r`);
* sampling at equal cost: for each cost point of the ``pruning.equal_cost`` model, the token budget m* at which the
  SPoT model costs the closest GFLOPs; there the SPoT model with every prior of ``pruning.equal_cost_priors``
  (default: ``evaluation.priors``; stochastic ones per seed), PatchDropout on the parent and the grid control on
  random grid patches.

Metrics: ``acc1`` (%), ``gflops`` (per image, ``FlopCounterMode``, 2 per multiply–add), ``tokens_out`` (patch tokens
after the last stage). Images: the evaluation's (``evaluation.split``, its stratified ``limit`` subset, the same
per-image position streams, so SPoT rows at a budget the evaluation also has are the same numbers).

An ``acc1`` row also carries its uncertainty and per-image outcomes (:func:`spot.stats.outcome_columns`; empty on
the ``gflops`` and ``tokens_out`` rows): ``n_correct`` (correctly classified images; value = 100 · n_correct /
n_images), ``ci_low`` / ``ci_high`` (the 95 % Wilson interval of value, in percent) and ``outcomes`` (one bit per
image, correct or not, in the order of the evaluated subset — ascending split index — packed and base64; read back
with :func:`spot.stats.decode_outcomes`), so rows on the same images compare paired
(:func:`spot.stats.paired_difference`).
"""
from __future__ import annotations

import copy
import dataclasses
import time

import torch

from ..config import settings_from_dict
from .protocol import Outcome, experiment, experiment_settings, model_arguments
from ..measure import count_gflops
from ..results import input_checksums, parse_model_args
from ..settings.evaluation import EvaluationSettings
from ..settings.pruning import PruningSettings
from ..core.placement import ImageBatch, place
from ..data.evaluation import EvalData
from ..core.models import PatchDropoutViT
from ..stats import outcome_columns
from ..core.pruning.methods import matching_r
from ..core.pruning.model import prune
from ..core.placement import ImageBatch, ImageStreams, make_placement, place
from ..core.positions import grid_cell_index
from .saliency import saliency_maps
from ..core.models import PatchDropoutViT, SPoTViT
from ..train.recipes import load_recipe
from ..weights.checkpoints import open_checkpoint

__all__ = ["PruningSettings", "COLUMNS", "evaluate_pruning", "equal_cost_budget", "run"]

COLUMNS = ("experiment", "backbone", "variant", "method", "setting", "placement", "budget", "keep_ratio",
           "trained_keep_ratio", "r", "seed", "metric", "value", "n_images", "n_correct", "ci_low", "ci_high",
           "outcomes", "split")


# ----------------------------------------------------------------------------------------------------- measuring

def equal_cost_budget(spot_model, gflops: float, max_budget: int, image_size, in_chans: int, cache: dict) -> int:
    """The token budget m ≤ ``max_budget`` at which ``spot_model`` (Isotropic positions) costs the GFLOPs closest to
    ``gflops`` (ties: the smaller m). The cost grows with m, so a bisection counts ~log2(max_budget) budgets
    (``cache``: m → GFLOPs, shared between calls)."""

    device = next(spot_model.parameters()).device
    one = torch.zeros(1, in_chans, *image_size, device=device)

    def cost(m: int) -> float:
        if m not in cache:
            positions = place("isotropic", m, ImageBatch(tuple(image_size), 1, device=device))
            cache[m] = count_gflops(lambda x, p=positions: spot_model(x, p), one)
        return cache[m]

    lo, hi = 1, max_budget  # the first m whose cost reaches gflops lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(mid) < gflops:
            lo = mid + 1
        else:
            hi = mid
    return min({lo, max(1, lo - 1)}, key=lambda m: (abs(cost(m) - gflops), m))


@torch.inference_mode()
def _accuracy(net, data, batch_size: int, device, tokens=None) -> torch.Tensor:
    """Whether ``net``'s top-1 is right on each image of ``data``: bool (data.n,), in the data's order;
    ``tokens(images, indices)`` → the net's keyword arguments per batch."""
    correct = []
    for images, labels, indices in data.batches(batch_size):
        images = images.to(device)
        kwargs = tokens(images, indices) if tokens is not None else {}
        logits = net(images, **{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})
        correct.append(logits.argmax(-1).cpu() == labels)
    return torch.cat(correct)


def _gflops(net, data, device, **kwargs) -> float:

    images, _, _ = next(iter(data.batches(1)))
    return count_gflops(lambda x: net(x, **kwargs), images.to(device))


class _Models:
    """One backbone's checkpoints, opened once, classified by their records."""

    def __init__(self, models: dict):
        self.checkpoints = {name: open_checkpoint(path, classifier=True, name=name) for name, path in models.items()}
        self.pruned = {n: c for n, c in self.checkpoints.items() if c.format == "pruned_vit"}
        if "parent" not in self.checkpoints:
            raise ValueError("spot pruning needs --model parent=PATH (the backbone's grid ViT)")
        if self.checkpoints["parent"].format != "timm_vit":
            raise ValueError(f"--model parent must be a grid ViT (timm_vit), got {self.checkpoints['parent'].format}")


def evaluate_pruning(models: dict, data_root, settings: PruningSettings, evaluation, saliency_settings=None,
                     device="cpu", backbone: str = "model", log=print) -> list[dict]:
    """See the module docs. ``evaluation``: the :class:`spot.experiments.evaluate.EvaluationSettings` whose images, priors and
    seeds are used."""

    device = torch.device(device)
    settings.validate()
    opened = _Models(models)
    parent_ck, spot_ck = opened.checkpoints["parent"], opened.checkpoints.get("spot")
    vit = parent_ck.grid_vit().to(device).eval()
    spot = spot_ck.model.to(device).eval() if spot_ck is not None else None
    mean, std = parent_ck.normalisation
    data = EvalData.open(data_root, evaluation.split, mean=mean, std=std, limit=evaluation.limit,
                         subset_seed=evaluation.subset_seed, crop_mode=evaluation.crop_mode,
                         img_size=vit.patch_embed.img_size[0])
    if spot_ck is not None and spot_ck.normalisation != (mean, std):
        raise ValueError(f"the SPoT model was trained with another normalisation ({spot_ck.normalisation}) than its "
                         f"parent ({(mean, std)}): one image protocol cannot serve both")
    n0 = vit.patch_embed.num_patches
    rows = []

    def row(**values):
        rows.append({c: values.get(c) for c in COLUMNS} | {"experiment": "pruning", "backbone": backbone,
                                                            "n_images": data.n, "split": evaluation.split})

    def measure(net, base: dict, tokens=None, **gflops_kwargs):
        t0 = time.time()
        acc = outcome_columns(_accuracy(net, data, settings.batch_size, device, tokens).numpy())
        g = _gflops(net, data, device, **gflops_kwargs)
        row(**base, metric="acc1", **acc)
        row(**base, metric="gflops", value=g)
        counts = getattr(net, "token_counts", None)
        if counts:
            row(**base, metric="tokens_out", value=counts[-1] - net.state.prefix)
        log(f"[{base.get('setting') or base['method']}] ρ={base.get('keep_ratio')} m={base['budget']}: "
            f"acc1 {acc['value']:.2f} %, {g:.4f} GFLOPs ({time.time() - t0:.1f} s)")
        return g

    dense = dict(variant="parent", method="vit", setting="", placement="grid", budget=n0, keep_ratio=1.0)
    measure(vit, dense)
    cost_points = _fine_tuned_rows(opened, settings, n0, device, measure)
    if settings.tome:
        _tome_rows(vit, settings, n0, measure)
    if cost_points and spot is not None:  # a backbone without a SPoT model (DeiT in the paper preset): none
        cache: dict = {}
        budgets = sorted({equal_cost_budget(spot, g, n0, data.image_size, spot.in_chans, cache) for g in cost_points})
        log(f"sampling at the cost of {settings.equal_cost} (ρ in {settings.sweep}): budgets {budgets}")
        _equal_cost_rows(opened, spot, vit, budgets, data, evaluation, settings.equal_cost_priors or evaluation.priors,
                         saliency_settings, device, measure, PatchDropoutViT)
    return rows


def _fine_tuned_rows(opened, settings: PruningSettings, n0: int, device, measure) -> list[float]:
    """Every fine-tuned pruned model at every keep ratio of the sweep (a SPoT + pruning model at each of
    ``combined_budgets``); the GFLOPs of the ``equal_cost`` method's grid rows (the cost points sampling meets)."""
    cost_points = []
    for name, ck in opened.pruned.items():
        info = ck.record["prune"]
        model = ck.model.to(device).eval()
        on_spot = info["base_format"] == "spot_vit"
        budgets = settings.combined_budgets if on_spot else [n0]
        for rho in settings.sweep:
            model.method.keep_ratio = float(rho)
            for m in budgets:
                base = dict(variant="spot" if on_spot else "parent", method=info["method"], setting=name,
                            placement="isotropic" if on_spot else "grid", budget=m, keep_ratio=float(rho),
                            trained_keep_ratio=info["keep_ratio"])
                if on_spot:
                    def tokens(images, indices, m=m):
                        return {"prior": "isotropic", "num_tokens": m}

                    g = measure(model, base, tokens, prior="isotropic", num_tokens=m)
                else:
                    g = measure(model, base)
                if name == settings.equal_cost and not on_spot:
                    cost_points.append(g)
        model.to("cpu")
    return cost_points


def _tome_rows(vit, settings: PruningSettings, n0: int, measure) -> None:
    """ToMe on the parent (training-free) at the r matching each keep ratio of the sweep."""

    for rho in settings.sweep:
        r = matching_r(n0, len(vit.blocks), float(rho))
        tome = prune(copy.deepcopy(vit), "tome", keep_ratio=float(rho), r=r).eval()
        measure(tome, dict(variant="parent", method="tome", setting="tome", placement="grid", budget=n0,
                           keep_ratio=float(rho), r=r))


def _equal_cost_rows(opened, spot, vit, budgets, data, evaluation, priors, saliency_settings, device, measure,
                     patchdropout_cls) -> None:
    """SPoT with each of ``priors``, PatchDropout and the grid control at the equal-cost budgets."""

    patch = spot.patch_size

    def positions_of(placement, m, seed, images, indices):
        saliency = None
        if placement.needs_saliency:
            saliency = saliency_maps(data, indices, saliency_settings)
        batch = ImageBatch(tuple(images.shape[-2:]), len(indices), saliency=saliency, patch=patch,
                           indices=indices.tolist())
        streams = ImageStreams("spot-evaluate", seed, data.split) if placement.random else None
        return place(placement, m, batch, streams)

    runs = [("spot", spot, "spot", make_placement(p)) for p in priors]
    runs.append(("parent", patchdropout_cls(vit).eval(), "patchdropout", make_placement("grid_random")))
    if "grid_control" in opened.checkpoints:
        runs.append(("grid_control", opened.checkpoints["grid_control"].model.to(device).eval(), "spot",
                     make_placement("grid_random")))
    for variant, net, method, placement in runs:
        for m in budgets:
            for seed in (evaluation.seeds if placement.random else [None]):
                def tokens(images, indices, placement=placement, m=m, seed=seed, method=method):
                    pos = positions_of(placement, m, seed, images, indices)
                    if method == "patchdropout":
                        keep = grid_cell_index(pos, tuple(images.shape[-2:]), patch)
                        return {"keep": keep.expand(len(indices), -1)}
                    return {"positions": pos}

                one = tokens(*_first(data))
                measure(net, dict(variant=variant, method=method, setting="", placement=placement.label, budget=m,
                                  seed=seed), tokens, **one)


def _first(data):
    images, _, indices = next(iter(data.batches(1)))
    return images, indices


def pruning_throughput_runs(vit, settings: PruningSettings, recipes: dict, device) -> list[tuple[dict, object]]:
    """``(columns, forward)`` for :func:`spot.experiments.throughput.measure_throughput` (``extra_runs``): every model of
    ``settings.models`` (its recipe's method and settings) and ToMe on the grid ViT's architecture at every keep
    ratio of the sweep, the ``combined`` models on its SPoT model at ``combined_budgets``, and the SPoT model
    (Isotropic) at the equal-cost budgets. Predictors are untrained: weights do not change the timing."""

    vit = copy.deepcopy(vit).eval().to(device)
    spot = SPoTViT.from_timm(copy.deepcopy(vit)).eval().to(device)
    H, W = vit.patch_embed.img_size
    n0, depth = vit.patch_embed.num_patches, len(vit.blocks)
    one = torch.zeros(1, spot.in_chans, H, W, device=device)
    config = {"recipes": recipes}
    runs, costs = [], []

    def pruned(base, recipe_name, rho):
        p = load_recipe(config, recipe_name).prune
        return prune(base, p.method, float(rho), stages=p.stages, **(p.settings or {})).eval().to(device), p.method

    for name, recipe_name in settings.models.items():
        for rho in settings.sweep:
            net, method = pruned(vit, recipe_name, rho)
            runs.append((dict(variant="parent", method=method, setting=name, placement="grid", budget=n0,
                              keep_ratio=float(rho)), net))
            if name == settings.equal_cost:
                costs.append(count_gflops(net, one))
    if settings.tome:
        for rho in settings.sweep:
            r = matching_r(n0, depth, float(rho))
            runs.append((dict(variant="parent", method="tome", setting="tome", placement="grid", budget=n0,
                              keep_ratio=float(rho), r=r), prune(vit, "tome", float(rho), r=r).eval()))
    for name, recipe_name in settings.combined.items():
        for rho in settings.sweep:
            for m in settings.combined_budgets:
                net, method = pruned(spot, recipe_name, rho)
                positions = place("isotropic", m, ImageBatch((H, W), 1, device=device))
                runs.append((dict(variant="spot", method=method, setting=name, placement="isotropic", budget=m,
                                  keep_ratio=float(rho)), lambda x, net=net, p=positions: net(x, p)))
    cache: dict = {}
    dropout = PatchDropoutViT(vit).eval()
    generator = torch.Generator(device=device).manual_seed(0)
    for m in sorted({equal_cost_budget(spot, g, n0, (H, W), spot.in_chans, cache) for g in costs}):
        positions = place("isotropic", m, ImageBatch((H, W), 1, device=device))
        runs.append((dict(variant="spot", method="spot", setting="equal_cost", placement="isotropic", budget=m),
                     lambda x, p=positions: spot(x, p)))
        runs.append((dict(variant="parent", method="patchdropout", setting="equal_cost", placement="grid_random",
                          budget=m), lambda x, m=m: dropout(x, num_tokens=m, generator=generator)))
    return runs


# ------------------------------------------------------------------------------------------------- the command

_MODELS = ("a checkpoint and its variant; repeatable: parent=PATH (the grid ViT) is required; spot=PATH (its SPoT "
           "model) adds sampling at equal cost, grid_control=PATH the grid control; any other NAME=PATH is a pruning "
           "fine-tune (format pruned_vit), NAME its setting")


@experiment("pruning", kind="pruning", columns=COLUMNS, arguments=model_arguments("evaluation", models=_MODELS),
            help="token pruning (SPOT-AD and baselines): accuracy and GFLOPs over keep ratios, ToMe, and sampling at "
                 "equal cost, for one backbone's models",
            example="spot pruning --config config.yaml --backbone cls_in1k --model parent=models/cls_in1k.safetensors "
                    "--model spot_ad=models/cls_in1k_prune_spot_ad.safetensors --data results/embedded/data "
                    "--out pruning.csv")
def run(args, config: dict) -> Outcome:
    """``spot pruning``: the ``pruning:`` section on the evaluation's images (``evaluation:``, ``saliency:``)."""
    evaluation, saliency, device = experiment_settings(args, config, EvaluationSettings, "evaluation")
    settings = settings_from_dict(PruningSettings, config.get("pruning"), "pruning").validate()
    models = parse_model_args(args.model)
    rows = evaluate_pruning(models, args.data, settings, evaluation, saliency, device=device, backbone=args.backbone)
    return Outcome(rows, settings={"pruning": dataclasses.asdict(settings),
                                   "evaluation": dataclasses.asdict(evaluation), "backbone": args.backbone,
                                   "models": {k: str(v) for k, v in models.items()}, "data": str(args.data)},
                   inputs=input_checksums(checkpoints=models, data_root=args.data), seed=evaluation.seeds,
                   device=device, summary=f" for {len(models)} model(s)")
