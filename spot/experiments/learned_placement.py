"""``spot learned_placement``: the learned placement against every other placement at equal cost, with its controls.

Per backbone, on one split (``learned_placement.split``; the policy's recipe and settings are chosen on the
validation split, by the training's own ``val_acc1@m``), every row one placement at one budget, with its per-image
outcomes (paired intervals downstream) and its **total cost**: the placement's own GFLOPs (the policy's glance; the
relevance placement's coarse pass) plus the SPoT forward at m tokens, both counted by torch's ``FlopCounterMode``.

* ``learned`` — the policy trained for this backbone's SPoT model (``--model policy=PATH``; the model frozen), at
  each budget; ``joint`` variant rows — a jointly tuned model with its policy (``--model joint=PATH``), if given,
  and ``joint_control`` rows — the same tuning with a policy that cannot move the tokens (``--model
  joint_control=PATH``: what the model gains from the tuning alone);
* ``learned_shuffled`` — each image read at *another* image's learned positions (a fixed permutation of the split):
  does per-image placement matter, or only the average layout?
* ``<tag>_blank`` for every policy row (``learned_blank``, ``learned_joint_blank`` …) — the model reading a blank
  image (zeros) at the positions the policy gave the real one: what the model reads from the positions alone (the
  oracle's blank-image control; chance is 1 / classes);
* ``learned@<backbone>`` — the policy trained for another backbone (``--model policy@<backbone>=PATH``) placing the
  tokens of this SPoT model: does it transfer?
* the relevance placements (``learned_placement.relevance``; training-free) at each budget;
* every label-free prior (and, marked ``reads_true_mask``, the priors that read the article's mask) at the budgets
  whose forward costs bracket each learned cost — the tables interpolate between them per image, so a prior is
  compared at exactly the learned placement's total GFLOPs;
* ``grid_random`` rows of the PatchDropout baseline (``--model parent=PATH``, the grid ViT: variant ``parent``,
  method ``patchdropout``) and of the grid control (``--model grid_control=PATH``) at the bracketing budgets, each
  costed at its own forward;
* ``glance_probe`` (budget 0) — a linear classifier on the policy's own glance features (fit on
  ``probe_images`` train images): if the glance alone classified well, the positions would not be what helps;
  ``positions_probe`` (method ``probe``, per policy and budget) — a linear classifier on the positions alone: does the
  policy write the class into where it puts the tokens?
* ``images_per_s`` rows — the learned forward (glance + placement + SPoT) and the Isotropic SPoT forward at each
  budget, timed side by side in interleaved rounds.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from ..core.placement import ImageBatch, ImageStreams, make_placement, place
from ..core.models import PatchDropoutViT
from ..core.policy import PlacedSPoT, load_policy
from ..core.positions import grid_cell_index, grid_shape
from ..data.evaluation import EvalData
from ..measure import count_gflops, interleaved_times
from ..provenance import atomic_output
from ..results import input_checksums, parse_model_args
from ..settings.learned import LearnedPlacementSettings
from ..stats import encode_outcomes
from ..weights.checkpoints import open_checkpoint
from .protocol import Outcome, experiment, experiment_settings, model_arguments
from .saliency import SaliencyMemo

__all__ = ["COLUMNS", "forward_costs", "bracket", "run"]

OPTIONAL_MODELS = ("joint", "joint_control", "parent", "grid_control")  # beside spot, policy, policy@<backbone>
COLUMNS = ("experiment", "backbone", "variant", "method", "placement", "budget", "metric", "value", "n_images", "seed",
           "gflops", "placement_gflops", "reads_true_mask", "outcomes")


MAX_COSTED = 4096  # the largest budget forward_costs counts before it gives up (a forward whose cost does not grow)


def forward_costs(forward, image_shape, max_budget: int, above: float | None = None) -> dict[int, float]:
    """GFLOPs per image of ``forward(images, positions)`` (Isotropic positions) at every budget 1 … ``max_budget``,
    and on until one costs more than ``above`` GFLOPs (when given: the budgets that bracket every learned total)."""
    x = torch.zeros(1, *image_shape)
    costs, m = {}, 0
    while m < max_budget or (above is not None and costs[m] <= above):
        if m >= MAX_COSTED:
            raise ValueError(f"no budget up to {MAX_COSTED} tokens costs more than {above:.4g} GFLOPs: the policy's "
                             "glance costs more than the forward can (a smaller policy, or larger budgets)")
        m += 1
        positions = place("isotropic", m, ImageBatch(tuple(image_shape[-2:]), 1))
        costs[m] = count_gflops(lambda images, p=positions: forward(images, p), x)
    return costs


def bracket(costs: dict[int, float], total: float) -> tuple[int, int]:
    """The budgets (m1, m2 = m1 + 1) whose forward costs bracket ``total``: cost(m1) ≤ total < cost(m2)."""
    below = [m for m, c in costs.items() if c <= total + 1e-12]
    m1 = max(below) if below else 1
    return m1, m1 + 1


class _Scorer:
    """One pass per placement over the split's images: per-image correctness of ``model`` at given positions."""

    def __init__(self, data: EvalData, settings: LearnedPlacementSettings, saliency, device, patch):
        self.data, self.settings, self.device = data, settings, device
        self.patch = patch  # the grid's patch size (grid placements)
        self.maps = SaliencyMemo(saliency)

    def outcomes(self, model, positions_of, with_maps: bool = False) -> np.ndarray:
        """``positions_of(images, rows, maps)`` → positions (``rows``: the batch's rows in the split's order;
        ``maps``: the images' saliency maps when ``with_maps``, else None); the per-image 0/1 outcomes, in the
        split's order."""
        out = []
        with torch.inference_mode():
            for images, y, indices in self.data.batches(self.settings.batch_size):
                images = images.to(self.device)
                maps = self.maps(self.data, indices) if with_maps else None
                rows = torch.searchsorted(self.data.index, indices)
                positions = positions_of(images, rows, maps).to(self.device)
                out.append((model(images, positions.expand(len(images), -1, -1)).argmax(-1).cpu() == y).numpy())
        return np.concatenate(out).astype(np.uint8)

    def positions(self, positions_of) -> torch.Tensor:
        """``positions_of(images)`` of every image of the split, in its order (on the CPU)."""
        with torch.inference_mode():
            return torch.cat([positions_of(images.to(self.device)).cpu()
                              for images, _, _ in self.data.batches(self.settings.batch_size)])


def _row(backbone, variant, placement, budget, outcomes, gflops, placement_gflops=0.0, seed=None, true_mask=False,
         method="spot") -> dict:
    return dict(experiment="learned_placement", backbone=backbone, variant=variant, method=method,
                placement=placement, budget=budget, metric="acc1", value=100.0 * float(np.mean(outcomes)),
                n_images=len(outcomes), seed=seed, gflops=gflops, placement_gflops=placement_gflops,
                reads_true_mask=true_mask, outcomes=encode_outcomes(outcomes))


def _policy_rows(scorer, backbone, variant, model, policy, costs, settings, tag="learned") -> tuple[list, dict]:
    """The policy's rows at every budget (and, for this backbone's own policy, the shuffled control); returns the
    rows and {budget: total GFLOPs} of the learned placement."""
    x1 = next(scorer.data.batches(1))[0].to(scorer.device)
    rows, totals = [], {}
    perm = torch.from_numpy(np.random.default_rng(settings.shuffle_seed).permutation(scorer.data.n))
    for m in settings.budgets:
        glance = count_gflops(lambda images, m=m: policy.positions(images, m), x1)
        totals[m] = glance + costs[m]
        every = scorer.positions(lambda images: policy.positions(images, m))  # once per budget, in the split's order
        learned = scorer.outcomes(model, lambda images, rows_, maps, every=every: every[rows_])
        rows.append(_row(backbone, variant, tag, m, learned, totals[m], glance))
        if tag == "learned":
            shuffled = scorer.outcomes(model, lambda images, rows_, maps, every=every: every[perm[rows_]])
            rows.append(_row(backbone, variant, "learned_shuffled", m, shuffled, totals[m], glance))
        blank = scorer.outcomes(lambda images, positions: model(torch.zeros_like(images), positions),
                                lambda images, rows_, maps, every=every: every[rows_])
        rows.append(_row(backbone, variant, f"{tag}_blank", m, blank, totals[m], glance))
    return rows, totals


def _prior_rows(scorer, backbone, forward, costs, totals, specs, variant="spot", method="spot") -> list:
    """Each placement of ``specs`` ([(spec, reads_true_mask)]) through ``forward(images, positions)`` (costing
    ``costs``) at the budgets around each learned total cost (and at the learned budgets themselves)."""
    budgets = sorted({b for m, total in totals.items() for b in (m, *bracket(costs, total))})
    rows = []
    for spec, true_mask in specs:
        placement = make_placement(spec)
        for seed in (scorer.settings.seeds if placement.random else [None]):
            streams = None if seed is None else ImageStreams("spot-evaluate", seed, scorer.data.split)
            for m in budgets:
                def positions_of(images, rows_, maps, m=m, placement=placement, streams=streams):
                    batch = ImageBatch(tuple(images.shape[-2:]), len(images), saliency=maps, patch=scorer.patch,
                                       indices=scorer.data.index[rows_].tolist())
                    return place(placement, m, batch, streams)
                outcomes = scorer.outcomes(forward, positions_of, with_maps=placement.needs_saliency)
                rows.append(_row(backbone, variant, placement.label, m, outcomes, costs[m], seed=seed,
                                 true_mask=true_mask, method=method))
    return rows


def _grid_rows(scorer, backbone, models, image_shape, totals, device) -> list:
    """PatchDropout (the grid ViT ``parent`` on a random subset of its patches) and the grid control (a SPoT model
    trained on grid-patch subsets, ``grid_control``) at the budgets around each learned total cost."""
    rows = []
    if "parent" in models:
        net = PatchDropoutViT(open_checkpoint(models["parent"], name="parent").grid_vit()).to(device).eval()

        def dropout(images, positions, net=net):
            keep = grid_cell_index(positions, tuple(images.shape[-2:]), scorer.patch)
            return net(images, keep=keep.expand(len(images), -1).to(images.device))

        costs = forward_costs(dropout, image_shape, max(totals), above=max(totals.values()))
        rows += _prior_rows(scorer, backbone, dropout, costs, totals, [("grid_random", False)], "parent",
                            "patchdropout")
    if "grid_control" in models:
        control = open_checkpoint(models["grid_control"], classifier=True, name="grid_control").model.to(device)
        costs = forward_costs(control.eval(), image_shape, max(totals), above=max(totals.values()))
        rows += _prior_rows(scorer, backbone, control, costs, totals, [("grid_random", False)], "grid_control")
    return rows


def _relevance_rows(scorer, backbone, model, costs, settings) -> list:
    x1 = next(scorer.data.batches(1))[0].to(scorer.device)
    rows = []
    for spec in settings.relevance:
        placement = make_placement(spec)
        for m in settings.budgets:
            def positions_of(images, idx, maps, m=m, placement=placement):
                return place(placement, m, ImageBatch(tuple(images.shape[-2:]), len(images), images=images,
                                                      model=model))
            own = count_gflops(lambda images: positions_of(images, None, None), x1)
            rows.append(_row(backbone, "spot", placement.label, m, scorer.outcomes(model, positions_of),
                             own + costs[m], own))
    return rows


def _probe(train: EvalData, test: EvalData, features_of, settings, device) -> np.ndarray:
    """Per-image 0/1 outcomes on ``test`` of a logistic regression (standardised features) fit on ``train``'s
    ``features_of(images)``: what a linear read-out of those features alone classifies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(data):
        out, labels = [], []
        with torch.inference_mode():
            for images, y, _ in data.batches(settings.batch_size):
                out.append(features_of(images.to(device)).flatten(1).float().cpu())
                labels.append(y)
        return torch.cat(out).numpy(), torch.cat(labels).numpy()

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*features(train))
    tx, ty = features(test)
    return (probe.predict(tx) == ty).astype(np.uint8)


def _probe_rows(data_root, spot_checkpoint, policies: dict, test: EvalData, backbone, settings, device) -> list:
    """The controls of what the policy's inputs and outputs carry, each a linear classifier fit on
    ``probe_images`` train images and scored on the split: ``glance_probe`` — the policy's own convolution features
    of the glance (the glance alone); ``positions_probe`` at each budget — the positions of each policy of
    ``policies`` ({variant: policy}) alone. A positions probe near the model's accuracy says the policy writes the
    class into where it puts the tokens (a side channel the model can read through the positional embedding)."""
    mean, std = spot_checkpoint.normalisation
    train = EvalData.open(data_root, "train", mean=mean, std=std, limit=settings.probe_images,
                          subset_seed=settings.subset_seed, img_size=spot_checkpoint.model.image_size[0])
    policy = policies["spot"]
    x1 = next(test.batches(1))[0].to(device)
    glance = count_gflops(lambda images: policy.features(policy.glance(images)), x1)
    outcomes = _probe(train, test, lambda images: policy.features(policy.glance(images)), settings, device)
    rows = [_row(backbone, "spot", "glance_probe", 0, outcomes, glance, glance, method="probe")]
    for variant, p in policies.items():
        for m in settings.budgets:
            outcomes = _probe(train, test, lambda images, p=p, m=m: p.positions(images, m), settings, device)
            rows.append(_row(backbone, variant, "positions_probe", m, outcomes, math.nan, math.nan, method="probe"))
    return rows


def _full_grid_row(model, image_shape, backbone) -> dict:
    """The SPoT forward's GFLOPs at the full grid's token count (what the glance's share is read against)."""
    grid = math.prod(grid_shape(model.image_size, model.patch_size))
    positions = place("isotropic", grid, ImageBatch(tuple(image_shape[-2:]), 1))
    gflops = count_gflops(lambda x: model(x, positions), torch.zeros(1, *image_shape))
    return dict(experiment="learned_placement", backbone=backbone, variant="spot", method="spot",
                placement="isotropic", budget=grid, metric="forward_gflops", value=gflops, n_images=1, seed=None,
                gflops=gflops, placement_gflops=0.0, reads_true_mask=False, outcomes="")


def write_positions(path, data: EvalData, policy, budgets, patch, device) -> Path:
    """The policy's positions at every budget on the first image of every class of ``data`` (in its order), to one
    ``.npz`` (atomically): ``indices``, ``labels`` (n,), ``patch`` (the tokens' window, pixels) and ``m<budget>``
    float32 (n, m, 2) (y, x) in [0, 1]."""
    labels = data.labels.numpy()
    first = np.array(sorted(int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)))
    indices = data.index[first]
    images = data.take(indices).to(device)
    arrays = {"indices": indices.numpy(), "labels": labels[first], "patch": np.array(patch)}
    with torch.inference_mode():
        for m in budgets:
            arrays[f"m{m}"] = policy.positions(images, m).cpu().numpy().astype(np.float32)
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def _timing_rows(model, policy, image_shape, backbone, settings, device) -> list:
    """images/s of the learned forward and the Isotropic SPoT forward at each budget, timed side by side."""
    images = torch.randn(settings.timing_batch, *image_shape, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for m in settings.budgets:
        iso = place("isotropic", m, ImageBatch(tuple(image_shape[-2:]), 1)).to(device)
        forwards = [lambda x, m=m: model(x, policy.positions(x, m)), lambda x, iso=iso: model(x, iso)]
        times = interleaved_times(forwards, images, device, "float32", settings.warmup, settings.repeats)
        for label, t in zip(("learned", "isotropic"), times):
            rows.append(dict(experiment="learned_placement", backbone=backbone, variant="spot", method="spot",
                             placement=label, budget=m, metric="images_per_s",
                             value=settings.timing_batch / float(np.median(t)), n_images=settings.timing_batch,
                             seed=None, gflops=math.nan, placement_gflops=math.nan, reads_true_mask=False,
                             outcomes=""))
    return rows


def _models(args) -> dict:
    models = parse_model_args(args.model)
    if "spot" not in models or "policy" not in models:
        raise ValueError("spot learned_placement needs --model spot=PATH (the SPoT model) and --model policy=PATH (its "
                         "policy, trained by a task: place recipe); optional: joint=PATH, joint_control=PATH, "
                         "parent=PATH, grid_control=PATH, policy@<backbone>=PATH")
    unknown = [n for n in models if n not in OPTIONAL_MODELS + ("spot", "policy") and not n.startswith("policy@")]
    if unknown:
        raise ValueError(f"--model {unknown[0]!r}: accepted names are spot, policy, {', '.join(OPTIONAL_MODELS)} "
                         "and policy@<backbone>")
    return models


def measure(models: dict, data_root, settings, saliency, device, backbone: str, log=print,
            positions_to=None) -> tuple[list[dict], Path | None]:
    """Every row of the module docs for one backbone, and the policy's example positions (written to
    ``positions_to`` when given: :func:`write_positions`)."""
    spot_checkpoint = open_checkpoint(models["spot"], classifier=True, name="spot")
    model = spot_checkpoint.model.to(device).eval()
    mean, std = spot_checkpoint.normalisation
    data = EvalData.open(data_root, settings.split, mean=mean, std=std, limit=settings.limit,
                         subset_seed=settings.subset_seed, img_size=model.image_size[0])
    scorer = _Scorer(data, settings, saliency, device, model.patch_size)
    image_shape = tuple(next(data.batches(1))[0].shape[1:])
    policy = load_policy(models["policy"]).to(device)
    costs = forward_costs(model, image_shape, max(settings.budgets))
    rows, totals = _policy_rows(scorer, backbone, "spot", model, policy, costs, settings)
    log(f"{backbone}: learned placement at {', '.join(map(str, settings.budgets))} tokens measured")
    highest = max(totals.values())  # the priors are costed on until a budget brackets every learned total
    for name, path in models.items():
        if name.startswith("policy@"):
            more, their = _policy_rows(scorer, backbone, "spot", model, load_policy(path).to(device), costs, settings,
                                       tag=f"learned@{name.split('@', 1)[1]}")
            rows, highest = rows + more, max(highest, *their.values())
    costs = forward_costs(model, image_shape, max(settings.budgets), above=highest)
    policies = {"spot": policy}
    for name in ("joint", "joint_control"):
        if name in models:
            joint = open_checkpoint(models[name], name=name).model.to(device).eval()
            if not isinstance(joint, PlacedSPoT):
                raise ValueError(f"--model {name}={models[name]}: not a policy checkpoint (format placed_spot)")
            rows += _policy_rows(scorer, backbone, name, joint.model, joint.policy, costs, settings,
                                 tag=f"learned_{name}")[0]
            policies[name] = joint.policy
    specs = [(p, False) for p in settings.priors] + [(p, True) for p in settings.true_mask]
    rows += _prior_rows(scorer, backbone, model, costs, totals, specs)
    rows += _grid_rows(scorer, backbone, models, image_shape, totals, device)  # at the frozen policy's costs
    rows += _relevance_rows(scorer, backbone, model, costs, settings)
    rows += _probe_rows(data_root, spot_checkpoint, policies, data, backbone, settings, device)
    rows.append(_full_grid_row(model, image_shape, backbone))
    rows += _timing_rows(model, policy, image_shape, backbone, settings, device)
    written = write_positions(positions_to, data, policy, settings.budgets, model.patch_size,
                                                 device) if positions_to else None
    return rows, written


@experiment("learned_placement", kind="learned_placement", columns=COLUMNS,
            arguments=model_arguments("learned_placement", models="spot=PATH (the SPoT model), policy=PATH (its "
                                      "learned policy), joint=PATH (a jointly tuned one, optional), "
                                      "parent=PATH (the grid ViT: PatchDropout rows, optional), grid_control=PATH "
                                      "(optional), policy@<backbone>=PATH (another backbone's policy: transfer); "
                                      "repeatable"),
            help="the learned placement against every prior, the relevance placement and its controls at equal "
                 "total GFLOPs (per-image outcomes; the glance-alone probe; images/s)",
            example="spot learned_placement --config config.yaml --backbone cls_in1k "
                    "--model spot=models/cls_in1k_spot1.safetensors --model policy=models/cls_in1k_policy.safetensors "
                    "--data results/embedded/data --out learned_placement/cls_in1k.csv")
def run(args, config: dict) -> Outcome:
    """``spot learned_placement``: the ``learned_placement:`` and ``saliency:`` sections on ``--model``'s models."""
    models = {name: str(path) for name, path in _models(args).items()}
    settings, saliency, device = experiment_settings(args, config, LearnedPlacementSettings, "learned_placement")
    rows, positions = measure(models, args.data, settings, saliency, device, args.backbone,
                              positions_to=Path(args.out).with_suffix(".positions.npz"))
    return Outcome(rows, settings={"learned_placement": dataclasses.asdict(settings),
                                   "saliency": dataclasses.asdict(saliency), "backbone": args.backbone,
                                   "models": models, "data": str(args.data)},
                   inputs=input_checksums(checkpoints=models, data_root=args.data), seed=settings.seeds,
                   device=device, extra={"positions": positions.name},
                   summary=f" for {len(models)} model(s) (and {positions})")
