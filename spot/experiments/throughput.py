"""Inference throughput and FLOPs per token budget (Figure 5: accuracy vs throughput).

``measure_throughput(model, budgets, …)`` times, on random images of the model's input size, each method at each
budget (the ``method`` and ``placement`` columns, the evaluation's vocabulary):

* ``spot`` (placement ``isotropic``) — :class:`~spot.core.models.SPoTViT` on the Isotropic prior's positions for m tokens
  (the paper's default layout; computed once per budget, on the device): the cost includes the subpixel tokenizer
  (bilinear windows + kernelized positional embedding);
* ``patchdropout`` (``grid_random``) — :class:`~spot.core.models.PatchDropoutViT` keeping m random grid patches (the subset
  is drawn in every timed call, as at inference);
* ``vit`` (``grid``) — the plain timm ViT on its full patch grid (one measurement, budget = the grid's N tokens).

Rows are tidy, one per measurement and metric: ``images_per_s`` (median over repeats) with ``images_per_s_min`` /
``_max``, ``ms_per_batch`` (median, min, max) and ``gflops_per_image``.

Timing protocol: ``torch.inference_mode()``, ``warmup`` untimed batches of every measurement, then ``repeats``
interleaved rounds: each round times one batch of every measurement (methods, budgets, the pruning rows; with
:func:`measure_models` — what ``spot throughput`` runs — of every model given), in an order rotated from round to
round, so that a machine's drifting load falls on all of them alike and their ratios (a speed-up over the dense
model) compare like with like. Each batch runs between two ``torch.cuda.synchronize()`` calls on CUDA and is
measured with ``time.perf_counter``; images/s and ms per batch are the median over the rounds (min / max beside).
``dtype`` ``bfloat16``/``float16`` run under ``torch.autocast`` (fp16 on CUDA only); positions stay float64 (the
tokenizer does its coordinate arithmetic in float64). GFLOPs per image come from
``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one image at that budget (matrix products,
convolutions and attention; element-wise work such as the bilinear window sampling, softmax and norms is not counted).
Throughput does not depend on image content, so the images are random (seeded) and weights may be untrained.

CLI (``spot throughput``): ``--config config.yaml [--backbone NAME] (--model VARIANT=PATH … | --architecture NAME …)
--out results/throughput.csv [--device D] [--budgets 25,49]`` writes the rows with :func:`spot.results.write_table`.
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict

import torch
from timm.models.vision_transformer import VisionTransformer

from ..config import settings_from_dict
from .protocol import Outcome, experiment
from ..measure import DTYPES, _autocast, count_gflops, interleaved_rounds, interleaved_times
from ..core.models import PatchDropoutViT, SPoTViT
from ..core.placement import ImageBatch, place
from .pruning import PruningSettings, pruning_throughput_runs
from ..results import input_checksums
from ..settings.throughput import METHODS, ThroughputSettings, check_budgets
from ..provenance import device_description
from .. import _checks
from ..weights.checkpoints import open_checkpoint
from ..weights.backbones import create_backbone
from ..results import parse_model_args
from pathlib import Path

__all__ = ["METHODS", "DTYPES", "ThroughputSettings", "measure_throughput", "measure_models", "interleaved_times",
           "interleaved_rounds", "count_gflops", "run"]

METRICS = ("images_per_s", "images_per_s_min", "images_per_s_max", "ms_per_batch", "ms_per_batch_min",
           "ms_per_batch_max", "gflops_per_image")
COLUMNS = ("experiment", "backbone", "variant", "method", "placement", "budget", "fraction", "sequence_length",
           "batch_size", "dtype", "device", "image_size", "warmup", "repeats")  # then a run's own columns


def _device_text(device: torch.device) -> str:
    d = device_description(device)
    extra = f", {d['threads']} threads" if "threads" in d else ""
    isa = f", {d['isa']}" if "isa" in d else ""
    return f"{d['type']}: {d.get('cpu', d['name'])}{isa}{extra}"


def measure_throughput(model, budgets, batch_size: int = 64, image_size=None, in_chans: int | None = None,
                       device=None, dtype: str = "float32", warmup: int = 3, repeats: int = 10, *,
                       methods=tuple(METHODS), vit: VisionTransformer | None = None, seed: int = 0,
                       backbone: str = "model", variant: str = "model", extra_runs=()) -> list[dict]:
    """Throughput rows (per method and budget, one per metric; ``vit`` once, at the full grid) of a ViT architecture.

    Args:
        model: a timm ``VisionTransformer`` (all three methods are built on it) or a :class:`SPoTViT` (then the
            ``vit`` and ``patchdropout`` rows need ``vit=``, a timm ViT of the same architecture).
        budgets: token counts m ≥ 1 (SPoT accepts any m, PatchDropout at most the grid's N).
        image_size: (H, W) or an int; default: the model's input size. ``in_chans``: default the model's.
        device: default CUDA when available. ``dtype``: float32, bfloat16 or float16 (autocast).
        methods: a subset of ``METHODS``. ``seed``: of the random images and PatchDropout's subsets.
        backbone, variant: the ``backbone`` and ``variant`` columns of the rows.
        extra_runs: more ``(columns, forward)`` to time on the same images — ``columns`` names at least ``method``
            and ``budget`` (and may set ``variant``, ``placement`` and any column of its own, e.g. the pruning
            rows' ``keep_ratio``; :func:`spot.experiments.pruning.pruning_throughput_runs`).

    Returns rows with: experiment, backbone, variant, method, placement, budget, fraction (of the grid),
    sequence_length (+ prefix tokens), batch_size, dtype, device, image_size, warmup, repeats, metric (:data:`METRICS`)
    and value. :func:`measure_models` times several models in the same rounds.
    """
    return measure_models([dict(model=model, vit=vit, methods=methods, variant=variant, extra_runs=extra_runs,
                                image_size=image_size, in_chans=in_chans)],
                          budgets, batch_size, device=device, dtype=dtype, warmup=warmup, repeats=repeats, seed=seed,
                          backbone=backbone)


def measure_models(models: list[dict], budgets, batch_size: int = 64, device=None, dtype: str = "float32",
                   warmup: int = 3, repeats: int = 10, *, seed: int = 0, backbone: str = "model") -> list[dict]:
    """:func:`measure_throughput` of several models — each a dict of its keyword arguments ``model``, ``vit``,
    ``methods``, ``variant``, ``extra_runs``, ``image_size``, ``in_chans`` — with every measurement of every model
    timed in one set of interleaved rounds (one set per input shape), so that the rows of different models (a SPoT
    model against its grid classifier, a pruned model against the dense one) compare like with like."""
    budgets = check_budgets(budgets)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _autocast(device, dtype)  # fails early for float16 on the CPU
    setup = dict(batch_size=batch_size, dtype=dtype, device=_device_text(device), warmup=warmup, repeats=repeats)
    groups = {}  # input shape → [(measurement, forward)]
    for entry in models:
        for shape, measurement, forward in _model_runs(entry, budgets, batch_size, device, dtype, warmup, repeats,
                                                       seed):
            columns = dict(measurement, backbone=backbone, **setup)
            ordered = {k: columns.pop(k) for k in COLUMNS if k in columns}
            groups.setdefault(shape, []).append((ordered | columns, forward))
    rows = []
    for shape, runs in groups.items():
        images = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)
        times = interleaved_times([forward for _, forward in runs], images, device, dtype, warmup, repeats)
        for (measurement, forward), seconds in zip(runs, times):
            values = _metrics(seconds, forward, images)
            rows += [dict(measurement, metric=metric, value=values[metric]) for metric in METRICS]
    return rows


def _model_runs(entry: dict, budgets: list, batch_size: int, device, dtype, warmup, repeats, seed) -> list:
    """[(input shape, measurement columns, forward)] of one model of :func:`measure_models`."""
    methods = list(entry.get("methods", METHODS))
    extra_runs = list(entry.get("extra_runs") or ())
    ThroughputSettings(budgets=budgets, batch_size=batch_size, warmup=warmup, repeats=repeats, dtype=dtype,
                       methods=methods or ["vit"], seed=seed).validate()
    spot, vit = _models(entry["model"], entry.get("vit"), methods, bool(extra_runs))

    image_size = entry.get("image_size")
    H, W = _checks.image_size_of(image_size if image_size is not None else spot.image_size)
    grid = (H // spot.patch_size[0]) * (W // spot.patch_size[1])
    _check_grid(vit, grid, (H, W), methods, budgets)
    spot = spot.eval().to(device)
    if vit is not None:
        vit.eval().to(device)
    shape = (batch_size, entry.get("in_chans") or spot.in_chans, H, W)
    out = []
    for columns, forward in _method_runs(spot, vit, methods, budgets, (H, W), grid, device, seed) + extra_runs:
        method, m = columns["method"], columns["budget"]
        measurement = dict(experiment="throughput", variant=entry.get("variant", "model"), method=method,
                           placement=METHODS.get(method), budget=m, fraction=m / grid,
                           sequence_length=m + spot.num_prefix_tokens, image_size=f"{H}x{W}")
        measurement.update({k: v for k, v in columns.items() if k not in ("method", "budget")})
        out.append((shape, measurement, forward))
    return out


def _models(model, vit, methods: list, extra_runs: bool):
    """(the SPoT model, the plain timm ViT or None) that ``methods`` time, from ``model`` and ``vit=``."""
    if isinstance(model, VisionTransformer):
        return SPoTViT.from_timm(model), model
    if not isinstance(model, SPoTViT):
        raise ValueError(f"model must be a timm VisionTransformer or a SPoTViT, got {type(model).__name__}")
    needs_vit = [m for m in methods if m != "spot"] or (["pruning"] if extra_runs else [])
    if needs_vit and vit is None:
        raise ValueError(f"methods {needs_vit} need the plain ViT: pass vit= (a timm VisionTransformer of the same "
                         f"architecture; untrained weights time the same) or methods=['spot']")
    return model, vit


def _check_grid(vit, grid: int, size: tuple, methods: list, budgets: list) -> None:
    if vit is not None:
        vit_grid = tuple(vit.patch_embed.grid_size)
        if vit_grid[0] * vit_grid[1] != grid:
            raise ValueError(f"the ViT's patch grid {vit_grid} does not match image_size {size}; build the ViT at "
                             f"that size (img_size=)")
    if "patchdropout" in methods and max(budgets) > grid:
        raise ValueError(f"PatchDropout keeps at most the grid's {grid} patches; budgets {budgets} exceed it (drop "
                         f"patchdropout from methods or use budgets ≤ {grid})")


def _method_runs(spot, vit, methods: list, budgets: list, size: tuple, grid: int, device, seed: int) -> list:
    """``(columns, forward)`` of :data:`METHODS` at every budget (the plain ViT once, at the full grid)."""
    dropout = PatchDropoutViT(vit).eval().to(device) if vit is not None else None
    gen = torch.Generator(device=device).manual_seed(seed)
    runs = []
    for m in budgets:
        if "spot" in methods:  # the deterministic layout, placed once on the device
            positions = place("isotropic", m, ImageBatch(size, 1, device=device))
            runs.append(({"method": "spot", "budget": m}, lambda x, p=positions: spot(x, p)))
        if "patchdropout" in methods:
            runs.append(({"method": "patchdropout", "budget": m},
                         lambda x, m=m: dropout(x, num_tokens=m, generator=gen)))
    if "vit" in methods:
        runs.append(({"method": "vit", "budget": grid}, vit))
    return runs


def _metrics(times: list[float], forward, images) -> dict:
    """:data:`METRICS` of one measurement: images/s and ms per batch (median, min, max over its timed calls) and
    GFLOPs per image."""
    rates = [len(images) / t for t in times]
    return dict(images_per_s=statistics.median(rates), images_per_s_min=min(rates), images_per_s_max=max(rates),
                ms_per_batch=1e3 * statistics.median(times), ms_per_batch_min=1e3 * min(times),
                ms_per_batch_max=1e3 * max(times), gflops_per_image=count_gflops(forward, images[:1]))


# ------------------------------------------------------------------------------------------------------------ CLI

def _arguments(p: argparse.ArgumentParser) -> None:
    """The ``spot throughput`` options beyond the shared ones (:func:`spot.experiments.protocol.shared_arguments`)."""
    p.add_argument("--backbone", default="model", help="the backbone the models belong to (the rows' `backbone`)")
    p.add_argument("--model", action="append", default=[], metavar="VARIANT=PATH",
                   help="a trained checkpoint (spot train / spot checkpoints fetch) and its variant (parent, spot, "
                        "…); repeatable")
    p.add_argument("--architecture", action="append", default=[], metavar="NAME",
                   help="an untrained backbone by name (a key of spot.BACKBONES or a timm ViT name, e.g. "
                        "vit_base_patch16_224 for the paper's scale; weights do not change the timing); repeatable")
    p.add_argument("--img-size", type=int, default=None, help="input size for --architecture (default: its own)")
    p.add_argument("--budgets", default=None, help="comma-separated token budgets, e.g. 25,49 (default: the config's)")
    p.add_argument("--batch-size", default=None,
                   help="a batch size, or comma-separated sizes for a sweep (default: the config's)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="default: the config's")
    p.add_argument("--warmup", type=int, default=None, help="default: the config's")
    p.add_argument("--repeats", type=int, default=None, help="default: the config's")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of: {', '.join(METHODS)}")


def _pruning_runs(config, models, device) -> tuple[str | None, list]:
    """(the variant whose grid ViT is pruned, its ``extra_runs``): token pruning on the first grid classifier among the
    models (else the first SPoT model's grid ViT; ``pruning:`` section; weights do not change the timing), timed in
    the same interleaved rounds as that classifier's dense forward — the ``parent`` ``vit`` row that the pruning
    tables divide by — so that each speed-up compares like with like."""
    candidates = sorted((not grid, i, name, v) for i, (name, _, v, _, grid) in enumerate(models) if v is not None)
    variant, vit = (candidates[0][2], candidates[0][3]) if candidates else (None, None)
    if vit is None:  # e.g. only the authors' released SPoT model: nothing to prune here, said so
        print("throughput.pruning: no grid ViT among the models (--model parent=PATH or --architecture NAME): "
              "no pruning rows")
        return None, []
    pruning = settings_from_dict(PruningSettings, config["pruning"], "pruning").validate()
    return variant, pruning_throughput_runs(vit, pruning, config.get("recipes") or {}, device)


def _parse_ints(text: str, option: str = "--budgets") -> list[int]:
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated integers, e.g. 25,49; got {text!r}") from None


def _models_from_args(args):
    """[(variant, model, vit or None, checkpoint path or None, grid)] for every --model and --architecture; ``grid``:
    the vit is the model's own trained classifier (a timm_vit checkpoint or an --architecture), not a stand-in of a
    SPoT model's architecture."""


    out = []
    for variant, path in (parse_model_args(args.model) if args.model else {}).items():
        checkpoint = open_checkpoint(path, classifier=True, name=variant)
        record = checkpoint.record
        if checkpoint.format == "spot_vit":  # retrofitted: the grid baselines run on a plain ViT of its architecture
            vit = create_backbone(record.get("backbone") or record.get("name"), **record.get("timm_kwargs", {}))
        elif checkpoint.format == "official":  # the authors' released SPoT model: SPoT rows only
            vit = None
        else:
            vit = checkpoint.grid_vit()
        out.append((variant, checkpoint.model, vit, Path(path), checkpoint.format == "timm_vit"))
    for name in args.architecture:
        kwargs = {"img_size": args.img_size} if args.img_size else {}
        vit = create_backbone(name, **kwargs)
        out.append((name, vit, vit, None, True))
    if not out:
        raise ValueError("give at least one --model VARIANT=PATH or --architecture NAME")
    return out


@experiment("throughput", kind="throughput", columns=COLUMNS + ("metric", "value"), arguments=_arguments,
            help="images/s and GFLOPs per model × token budget (Figure 5)",
            example="spot throughput --config config.yaml --backbone cls_in1k --model spot=models/cls_in1k_spot1"
                    ".safetensors --out throughput.csv")
def run(args, config: dict) -> Outcome:
    """``spot throughput``: every model of ``--model`` and ``--architecture`` (the ``throughput:`` section, the
    options overriding it), each method and budget in one set of interleaved rounds per batch size."""
    values = dict(config.get("throughput") or {})
    batch = _parse_ints(str(args.batch_size), "--batch-size") if args.batch_size else None
    overrides = {"budgets": _parse_ints(args.budgets) if args.budgets else None,
                 "batch_size": (batch[0] if len(batch) == 1 else batch) if batch else None,
                 "dtype": args.dtype, "warmup": args.warmup, "repeats": args.repeats,
                 "methods": [m.strip() for m in args.methods.split(",")] if args.methods else None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = settings_from_dict(ThroughputSettings, values, "throughput").validate()
    models = _models_from_args(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pruned, pruning_runs = (_pruning_runs(config, models, device) if settings.pruning and config.get("pruning")
                            else (None, []))
    entries = [dict(model=model, vit=vit, variant=variant,
                    methods=settings.methods if vit is not None else [m for m in settings.methods if m == "spot"],
                    extra_runs=pruning_runs if variant == pruned else ())
               for variant, model, vit, _, _ in models]
    rows = []
    for batch_size in settings.batch_sizes:  # every model in one set of interleaved rounds per batch size
        measured = measure_models(entries, settings.budgets, batch_size, device=device, dtype=settings.dtype,
                                  warmup=settings.warmup, repeats=settings.repeats, seed=settings.seed,
                                  backbone=args.backbone)
        rows += measured
        for r in measured:
            if r["metric"] in ("images_per_s", "gflops_per_image"):
                print(f"{args.backbone}/{r['variant']:>12s} {r['method']:>12s} {r.get('setting') or '':>16s} "
                      f"m={r['budget']:<4d} ρ={r.get('keep_ratio', '')} batch {batch_size:<5d} {r['metric']} "
                      f"{r['value']:.3f}")
    checkpoints = {label: path for label, _, _, path, _ in models if path is not None}
    return Outcome(rows, settings={"throughput": asdict(settings), "backbone": args.backbone},
                   inputs=input_checksums(checkpoints), seed=settings.seed, device=device)
