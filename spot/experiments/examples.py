"""``spot examples``: the positions every placement gives on example images — what Figures 1–3 draw, measured by the
workflow like every other result instead of re-sampled while drawing.

One row per coordinate of a token (``metric``: ``y`` or ``x``, in [0, 1]; the columns of :data:`COLUMNS`) on each
example image of the evaluation's split, for the geometry of the backbone (the patch and image size of its
classifier's architecture, as the preset builds it; no weights are read):

* ``grid`` — every patch centre (Figure 1, left); ``grid_random`` — a random subset of ``oracle.sparse_budget`` of
  them (Figure 1, middle; seeded); ``center`` at that budget (Figure 1, right);
* ``object_centre`` — the object's centre (the canvas knows its article's; else the image's centre of mass), placed
  and ``snapped`` to the nearest patch centre (Figure 2);
* every prior of ``evaluation.priors`` at the second budget of ``evaluation.budgets`` (Figure 3; seeded; Salient and
  Background from the ``saliency:`` maps — where those cannot be computed here, e.g. CLIPSeg without its weights,
  their rows are left out and the provenance says why).
"""
from __future__ import annotations

import dataclasses
import torch

from ..config import CheckpointSpec, settings_from_dict
from .protocol import Outcome, experiment
from ..weights.backbones import create_backbone
from ..core.placement import ImageBatch, make_placement, place
from ..core.positions import grid_positions, snap_to_grid
from ..train.recipes import load_recipe
from ..results import input_checksums
from ..train.build import architecture
from .saliency import SaliencySettings, saliency_maps
from ..data.fmnist import ARTICLE
from ..data.evaluation import EvalData

__all__ = ["COLUMNS", "geometry", "object_centre", "example_positions", "run"]

COLUMNS = ("experiment", "backbone", "variant", "method", "placement", "positions", "budget", "figure", "split",
           "image", "token", "patch", "image_height", "image_width", "metric", "value")


def object_centre(data, index: int, image: torch.Tensor) -> torch.Tensor:
    """(1, 2) position of the object in image ``index`` of ``data``: the canvas's article centre where the dataset
    records it, else the centre of mass of |image|."""
    size = tuple(image.shape[-2:])
    if "top_left" in data.extras:
        top_left = torch.tensor(data.extras["top_left"][index], dtype=torch.float64)
        return ((top_left + ARTICLE / 2) / torch.tensor(size, dtype=torch.float64))[None]
    w = image.abs().sum(0) if image.dim() == 3 else image.abs()
    ys, xs = torch.meshgrid(torch.arange(size[0]) + 0.5, torch.arange(size[1]) + 0.5, indexing="ij")
    return torch.stack([(w * ys).sum() / w.sum() / size[0], (w * xs).sum() / w.sum() / size[1]]).double()[None]


def example_positions(image, centre, patch, sparse: int, budget: int, priors, saliency=None, seed: int = 0):
    """[(figure, placement, positions, budget, (m, 2) positions)] of one image: Figures 1–3's placements (module
    docs)."""
    size = tuple(image.shape[-2:])
    grid = grid_positions(size, patch)
    one = ImageBatch(size, 1, patch=patch, saliency=saliency)
    out = [(1, "grid", "placed", len(grid), grid),
           (1, "grid_random", "placed", sparse, place("grid_random", sparse, one, torch.Generator().manual_seed(seed))[0]),
           (1, "center", "placed", sparse, place("center", sparse, one)[0]),
           (2, "object_centre", "placed", 1, centre[0:1]),
           (2, "object_centre", "snapped", 1, snap_to_grid(centre[0:1], size, patch))]
    for prior in priors:
        if make_placement(prior).needs_saliency and saliency is None:
            continue
        positions = place(prior, budget, one, torch.Generator().manual_seed(seed))[0]
        out.append((3, make_placement(prior).label, "placed", budget, positions))
    return out


def geometry(config: dict, backbone: str) -> tuple[tuple, tuple]:
    """((patch, image size), (mean, std)) of ``backbone``'s classifier as the preset builds it: its ``train:``
    recipe's architecture and data normalisation, or the ``fetch:`` backbone's timm architecture and pretrained
    config."""
    if backbone not in (config.get("backbones") or {}):
        raise ValueError(f"--backbone {backbone!r} is not a backbone of the config; accepted: "
                         f"{', '.join(config.get('backbones') or {}) or 'none'}")
    spec = CheckpointSpec.parse(config["backbones"][backbone]["classifier"], f"backbones.{backbone}.classifier")
    if spec.source == "fetch":  # a hub backbone: its timm architecture and pretrained normalisation
        vit = create_backbone(spec.name)
        cfg = vit.pretrained_cfg or {}
        norm = (tuple(cfg.get("mean", (0.5,))), tuple(cfg.get("std", (0.5,))))
    else:  # trained here: the recipe's architecture, as training builds it, and the recipe's normalisation
        recipe = load_recipe(config, spec.name)
        name, kwargs = architecture(recipe)
        vit = create_backbone(name, **kwargs)
        norm = (tuple(recipe.data.mean), tuple(recipe.data.std))
    pe = vit.patch_embed
    return (tuple(pe.patch_size), tuple(pe.img_size)), norm


def _rows(backbone, split, index, patch, size, placements) -> list[dict]:
    rows = []
    for figure, placement, positions_kind, budget, positions in placements:
        for token, (y, x) in enumerate(positions.double().tolist()):
            for metric, value in (("y", y), ("x", x)):
                rows.append(dict(zip(COLUMNS, ("examples", backbone, "spot", "spot", placement, positions_kind, budget,
                                               figure, split, index, token, patch[0], size[0], size[1], metric,
                                               value))))
    return rows


def _saliency(data, index: int, settings: SaliencySettings, priors):
    """The saliency map of one image, or (None, why) where it cannot be computed here."""
    if not any(make_placement(p).needs_saliency for p in priors):
        return None, None
    try:
        return saliency_maps(data, torch.tensor([index]), settings)[0], None
    except (ValueError, FileNotFoundError, ImportError) as err:
        return None, f"{type(err).__name__}: {str(err).splitlines()[0]}"


def _arguments(p) -> None:
    p.add_argument("--backbone", required=True, help="a backbone of the config's `backbones:`: its classifier's "
                                                     "patch and image size are the examples' geometry")
    p.add_argument("--data", required=True, help="dataset folder (built by `spot data fmnist|imagenet`)")
    p.add_argument("--images", default="0", help="comma-separated indices of the example images in the split "
                                                 "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random placements (default: %(default)s)")


@experiment("examples", kind="examples", columns=COLUMNS, arguments=_arguments,
            help="the positions of every placement on example images (Figures 1–3)",
            example="spot examples --config config.yaml --backbone cls_in1k --data results/embedded/data "
                    "--out examples.csv")
def run(args, config: dict) -> Outcome:
    """``spot examples``: Figures 1–3's placements on ``--images`` of the evaluation's split (``evaluation:``,
    ``oracle.sparse_budget``, ``saliency:``)."""

    (patch, size), (mean, std) = geometry(config, args.backbone)
    split = config["evaluation"]["split"]
    priors, budgets = config["evaluation"]["priors"], config["evaluation"]["budgets"]
    sparse, budget = config["oracle"]["sparse_budget"], budgets[1] if len(budgets) > 1 else budgets[0]
    saliency_settings = settings_from_dict(SaliencySettings, config.get("saliency"), "saliency")
    indices = [int(i) for i in str(args.images).split(",") if i.strip()]
    data = EvalData.open(args.data, split, indices=indices, mean=mean, std=std, img_size=size[0])
    rows, missing = [], {}
    for index in indices:
        image = data.take([index])[0]
        saliency, why = _saliency(data, index, saliency_settings, priors)
        if why:
            missing[str(index)] = why
            print(f"spot examples: image {index}: no saliency map ({why}); Salient and Background left out")
        placements = example_positions(image, object_centre(data, index, image), patch, sparse, budget, priors,
                                       saliency, args.seed)
        rows += _rows(args.backbone, split, index, patch, tuple(image.shape[-2:]), placements)
    return Outcome(rows, settings={"evaluation": {"split": split, "priors": priors, "budgets": budgets},
                                   "oracle": {"sparse_budget": sparse},
                                   "saliency": dataclasses.asdict(saliency_settings), "backbone": args.backbone,
                                   "images": indices, "seed": args.seed},
                   inputs=input_checksums(data_root=args.data), seed=args.seed, device="cpu",
                   extra={"saliency_missing": missing}, summary=f" for {len(indices)} image(s)")

