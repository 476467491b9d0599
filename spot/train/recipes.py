"""Training recipes: typed, validated settings read from ``config.yaml`` (no constant of a recipe lives in code).

A recipe is a mapping under ``recipes:`` in the workflow config; ``spot train --config config.yaml --recipe NAME``
runs it. Every key is a field below (an unknown or misspelt key is an error naming the accepted ones); a recipe may
``extends: OTHER`` to start from another recipe and override some keys (nested mappings are merged).

The tasks:

* ``classify`` — supervised training of a classifier. With ``tokens.mode: grid`` it is ordinary ViT training (the
  embedded preset's backbones); with ``subpixel`` it is SPoT retrofitting (Table 7a/b, and the MAE fine-tune of
  §5.2 with ``model.global_pool: avg``); with ``grid_subset`` it is the *grid control* of a retrofit: the same
  recipe and budget schedule on random subsets of grid patches.
* ``mae`` — masked auto-encoding (Table 7c): on the grid (standard MAE pre-training) or with subpixel windows
  (MAE retrofitting); ``mae.mask_ratio`` of each image's tokens are hidden from the encoder.
* ``prune`` — token-pruning fine-tuning (the SPOT-AD paper): the parent classifier (a grid ViT, or a SPoT model with
  ``tokens.mode: subpixel``) wrapped by :func:`spot.prune` with ``prune.method`` at ``prune.keep_ratio``,
  trained with Eq. 15 (cross-entropy + λ1·rate + λ2·KL to the frozen parent + λ3·token cosine or squared error);
  the method's own parameters (the predictors) at ``prune.predictor_lr_scale`` × the recipe's learning rate, the
  wrapped classifier at ``prune.backbone_lr_scale`` × it, held for ``backbone_frozen_share`` of the steps, with
  ``prune.freeze`` parameters never trained and ``eval_mode`` for a fine-tune without dropout or drop-path — what
  the baselines' authors' recipes need (config/paper.yaml cites them).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..config import _build, _merge, load_config, merge_configs, settings_from_dict
from ..core.placement import check_placement
from ..core.placement.learned import PolicySettings

__all__ = ["Recipe", "ModelSettings", "DataSettings", "TokenSampling", "OptimizerSettings", "ScheduleSettings",
           "MixupSettings", "MAESettings", "PruneSettings", "load_recipe", "recipe_from_dict", "recipe_to_dict",
           # re-exported from spot.config, where they live
           "load_config", "merge_configs", "settings_from_dict"]


@dataclass
class ModelSettings:
    backbone: str = "vit_nano_patch8"  # a key of spot.BACKBONES or a timm name
    img_size: int | None = None  # None: the backbone's own
    num_classes: int | None = None  # None: the backbone's own
    in_chans: int | None = None
    global_pool: str | None = None  # None: the backbone's own ("token" = CLS, "avg" = MAE's global pool)
    fc_norm: bool | None = None
    drop_path: float = 0.0
    window: int | None = None  # SPoT window size; None = the patch size
    pe_sigma: float = 0.5  # kernel width of the kernelized PE, in lattice spacings
    timm_kwargs: dict = field(default_factory=dict)  # any other timm keyword config (embed_dim, depth, …)


@dataclass
class DataSettings:
    kind: str = "fmnist"  # "fmnist" (a folder built by `spot data fmnist`) or "imagenet" (`spot data imagenet`)
    train_split: str = "train"
    val_split: str = "val"
    mean: list = field(default_factory=lambda: [0.5])  # normalisation (fmnist); imagenet uses the model's own
    std: list = field(default_factory=lambda: [0.5])
    hflip: float = 0.0  # fmnist: probability of a horizontal flip
    translate: int = 0  # fmnist: random shift by up to ± this many pixels (zero fill)
    randaug: str | None = "rand-m15-mstd0.5-inc1"  # imagenet: timm RandAugment spec (None: RRC + flip only)
    rrc_scale: list = field(default_factory=lambda: [0.08, 1.0])  # imagenet RandomResizedCrop scale
    random_erasing: float = 0.0  # imagenet: timm RandomErasing probability (MAE's fine-tune: 0.25)
    workers: int = 8  # imagenet data-loader workers per process
    limit: int | None = None  # train on a stratified subset of N images drawn with the recipe's seed (smoke tests)


@dataclass
class TokenSampling:
    """Where the tokens of a training batch are. One budget m per batch (all images of a batch share it).

    ``grid``: the full patch grid (m = N). ``subpixel``: m from the budget schedule, positions from ``prior``
    (Isotropic: the even layout for m) moved by a uniform jitter of ± ``jitter``/2 of the layout spacing, drawn per
    token and image, then clamped to the image — so tokens cover continuous positions. ``grid_subset``: m from the same
    schedule, a uniformly random subset of m grid patches per image (the grid control). ``full_share``: that share of
    batches (drawn per batch) is the exact full patch grid instead — for either mode the plain ViT's input, so
    retrofitting keeps rehearsing the parent's full budget. ``mixture_share``: in ``subpixel`` mode, that share of the
    other batches takes its positions from one of the ``mixture`` placements (drawn per batch, uniformly; stochastic
    priors too), so that a retrofit sees the layouts it will be evaluated on, not only jittered Isotropic ones.
    """

    mode: str = "grid"  # grid | subpixel | grid_subset
    budget: str = "uniform"  # uniform: m uniform in [min_tokens, max_tokens]; choices: m uniform over `choices`
    min_tokens: int = 1
    max_tokens: int | None = None  # None: the full grid
    choices: list | None = None
    prior: str | dict = "isotropic"  # a placement spec (spot.core.placement); with jitter > 0 a deterministic layout
    jitter: float = 1.0  # fraction of the layout spacing (1.0: anywhere in the token's own cell)
    full_share: float = 0.0  # share of batches on the exact full patch grid (no jitter), the rest from the schedule
    mixture: list = field(default_factory=list)  # placement specs for mixture_share of the scheduled batches
    mixture_share: float = 0.0


@dataclass
class OptimizerSettings:
    name: str = "adamw"  # any timm optimizer name
    lr: float | None = None  # absolute learning rate; or give blr (scaled by batch/256, as MAE does)
    blr: float | None = None
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.05
    layer_decay: float | None = None  # layer-wise lr decay: block i of L gets lr·decay^(L−i); head gets lr
    clip_grad: float | None = None  # max gradient norm


@dataclass
class ScheduleSettings:
    name: str = "cosine"  # any timm scheduler name
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6


@dataclass
class MixupSettings:
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


@dataclass
class MAESettings:
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    fixed_sincos_pe: bool = False  # from scratch: MAE's fixed 2-D sin-cos encoder PE (frozen), as MAE pre-trains


@dataclass
class PruneSettings:
    """Token pruning (``task: prune``); the seed's values (App. 6.2) as defaults."""

    method: str = "spot_ad"  # a name of spot.core.pruning.PRUNING_METHODS
    keep_ratio: float = 0.7  # ρ: stage k keeps ρ^k of the patch tokens
    stages: list | None = None  # 0-indexed stage blocks; None: one block after each of the first three quarters
    settings: dict = field(default_factory=dict)  # the method's own (SPOT-AD's d_remap, statistics, …; EViT's fuse)
    rate_weight: float = 2.0  # λ1
    distill_weight: float = 0.5  # λ2 (KL to the unpruned parent)
    token_weight: float = 0.0  # λ3 (0 for DeiT in the seed)
    token_loss: str = "cosine"  # cosine: seed Eq. 14 (1 − cos, per image); mse: DynamicViT's (squared error, pooled)
    predictor_lr_scale: float = 10.0  # the method's parameters: lr × this (seed: 1e-2 against the backbone's 1e-3)
    backbone_lr_scale: float = 1.0  # the wrapped classifier's parameters: lr × this (DynamicViT: 0.01)
    backbone_frozen_share: float = 0.0  # the first share of the steps, the wrapped classifier's lr is 0 (DynamicViT:
    # 5 of 30 epochs); its Adam moments still accumulate, as in the authors' optimiser
    freeze: list = field(default_factory=list)  # parameters of the wrapped classifier never trained, by name or
    # name prefix (DynamicViT: cls_token, pos_embed)
    eval_mode: bool = False  # the wrapped classifier in eval mode while it trains (no dropout or drop-path; EViT's
    # fine-tune: `set_training_mode=args.finetune == ''`); learned methods' masks need train mode


@dataclass
class PlaceSettings:
    """A learned placement policy (``task: place``): the policy's shape (:class:`~spot.core.placement.learned.
    PolicySettings`), and whether the SPoT model it places tokens for stays ``frozen`` or is tuned ``joint``ly at
    ``model_lr_scale`` × lr (the policy trains at lr)."""

    policy: dict = field(default_factory=dict)
    tune: str = "frozen"  # frozen | joint
    model_lr_scale: float = 0.1


@dataclass
class Recipe:
    name: str = "recipe"
    task: str = "classify"  # classify | mae | prune | place
    description: str = ""
    init: str = "parent"  # parent: start from the parent checkpoint (required); scratch: random init
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    tokens: TokenSampling = field(default_factory=TokenSampling)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    mixup: MixupSettings = field(default_factory=MixupSettings)
    mae: MAESettings = field(default_factory=MAESettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    place: PlaceSettings = field(default_factory=PlaceSettings)
    epochs: int = 1
    batch_size: int = 128  # global batch (split over DDP processes)
    label_smoothing: float = 0.0
    amp: str = "bf16"  # autocast dtype on CUDA: bf16 | fp16 | none (always off on CPU)
    eval_budgets: list = field(default_factory=list)  # extra validation budgets (subpixel/grid_subset), besides full
    eval_batch_size: int = 500
    seed: int = 0

    def validate(self) -> "Recipe":
        def bad(key, value, accepted):
            raise ValueError(f"recipes.{self.name}.{key} = {value!r} is not valid; accepted: {accepted}")

        if self.task not in TASKS:
            bad("task", self.task, ", ".join(TASKS))
        if self.task == "prune":
            self._validate_prune(bad)
        if self.task == "place":
            self._validate_place(bad)
        if self.init not in ("parent", "scratch"):
            bad("init", self.init, "parent, scratch")
        self._validate_tokens(bad)
        if self.data.kind not in ("fmnist", "imagenet"):
            bad("data.kind", self.data.kind, "fmnist, imagenet")
        if not (isinstance(self.data.random_erasing, (int, float)) and 0 <= self.data.random_erasing <= 1):
            bad("data.random_erasing", self.data.random_erasing, "0 … 1 (probability)")
        if self.data.limit is not None and (isinstance(self.data.limit, bool) or not isinstance(self.data.limit, int)
                                            or self.data.limit < 1):
            bad("data.limit", self.data.limit, "an int ≥ 1, or null for the whole split")
        if (self.optimizer.lr is None) == (self.optimizer.blr is None):
            bad("optimizer.lr/blr", (self.optimizer.lr, self.optimizer.blr), "exactly one of lr and blr")
        if self.optimizer.layer_decay is not None and not 0 < self.optimizer.layer_decay <= 1:
            bad("optimizer.layer_decay", self.optimizer.layer_decay, "0 < layer_decay ≤ 1, or null")
        if self.amp not in ("bf16", "fp16", "none"):
            bad("amp", self.amp, "bf16, fp16, none")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                bad(key, getattr(self, key), "an integer ≥ 1")
        self._validate_lists(bad)
        if not 0 <= self.mae.mask_ratio < 1:
            bad("mae.mask_ratio", self.mae.mask_ratio, "0 ≤ mask_ratio < 1")
        if self.task == "mae" and self.mixup.active:
            bad("mixup", "active", "no mixup/cutmix for the mae task")
        return self

    def _validate_tokens(self, bad) -> None:
        """``tokens:``: the mode, the budget schedule, the layout and the mixture."""
        if self.tokens.mode not in ("grid", "subpixel", "grid_subset"):
            bad("tokens.mode", self.tokens.mode, "grid, subpixel, grid_subset")
        if self.tokens.budget not in ("uniform", "choices"):
            bad("tokens.budget", self.tokens.budget, "uniform, choices")
        if self.tokens.budget == "choices" and not self.tokens.choices:
            bad("tokens.choices", self.tokens.choices, "a non-empty list of token counts")
        if self.tokens.min_tokens < 1:
            bad("tokens.min_tokens", self.tokens.min_tokens, "≥ 1")
        if not 0 <= self.tokens.jitter <= 2:
            bad("tokens.jitter", self.tokens.jitter, "0 … 2 (fraction of the layout spacing)")
        prior = check_placement(self.tokens.prior, f"recipes.{self.name}.tokens.prior")
        if self.tokens.mode == "subpixel" and self.tokens.jitter > 0 and not prior.deterministic:
            bad("tokens.prior", self.tokens.prior, "a deterministic layout (isotropic, center, …) when jitter > 0: the "
                "layout's points move within their cells")
        if not (isinstance(self.tokens.full_share, (int, float)) and 0 <= self.tokens.full_share <= 1):
            bad("tokens.full_share", self.tokens.full_share, "0 … 1 (share of batches on the full patch grid)")
        share = self.tokens.mixture_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            bad("tokens.mixture_share", share, "0 … 1 (share of scheduled batches placed by a mixture prior)")
        if not isinstance(self.tokens.mixture, list) or (share > 0 and not self.tokens.mixture):
            bad("tokens.mixture", self.tokens.mixture, "a list of placements (non-empty when mixture_share > 0)")
        if share > 0 and self.tokens.mode != "subpixel":
            bad("tokens.mixture_share", share, "0 unless tokens.mode is subpixel")
        for spec in self.tokens.mixture:
            check_placement(spec, f"recipes.{self.name}.tokens.mixture")

    def _validate_lists(self, bad) -> None:
        """The list settings' items (their fields declare only ``list``): numbers where numbers go."""
        def numbers(key, values, count=None, integer=False, low=None):
            ok = isinstance(values, list) and (count is None or len(values) == count) and all(
                not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
                and math.isfinite(v) and (low is None or v >= low) for v in values)
            if not ok:
                kind = "integers" if integer else "numbers"
                bad(key, values, f"a list of {count or ''}{' ' if count else ''}{kind}"
                                 f"{f' ≥ {low}' if low is not None else ''}")

        numbers("optimizer.betas", self.optimizer.betas, count=2)
        numbers("data.mean", self.data.mean)
        numbers("data.std", self.data.std)
        numbers("data.rrc_scale", self.data.rrc_scale, count=2)
        numbers("eval_budgets", self.eval_budgets, integer=True, low=1)
        if self.tokens.choices is not None:
            numbers("tokens.choices", self.tokens.choices, integer=True, low=1)
        if self.prune.stages is not None:
            numbers("prune.stages", self.prune.stages, integer=True, low=0)

    def _validate_prune(self, bad) -> None:
        from ..core.pruning.catalog import LEARNED, check_method

        p = self.prune
        try:
            check_method(p.method, p.settings, f"recipes.{self.name}.prune")
        except ValueError as err:
            raise ValueError(str(err)) from None
        if isinstance(p.keep_ratio, bool) or not isinstance(p.keep_ratio, (int, float)) or not 0 < p.keep_ratio <= 1:
            bad("prune.keep_ratio", p.keep_ratio, "a number in (0, 1]")
        for key in ("rate_weight", "distill_weight", "token_weight"):
            if getattr(p, key) < 0:
                bad(f"prune.{key}", getattr(p, key), "≥ 0")
        for key in ("predictor_lr_scale", "backbone_lr_scale"):
            value = getattr(p, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                bad(f"prune.{key}", value, "a number > 0")
        share = p.backbone_frozen_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            bad("prune.backbone_frozen_share", share, "0 ≤ share < 1 (of the training steps)")
        if p.token_loss not in ("cosine", "mse"):
            bad("prune.token_loss", p.token_loss, "cosine, mse")
        if not isinstance(p.freeze, list) or not all(isinstance(n, str) and n for n in p.freeze):
            bad("prune.freeze", p.freeze, "a list of parameter names or name prefixes (cls_token, pos_embed, …)")
        if not isinstance(p.eval_mode, bool):
            bad("prune.eval_mode", p.eval_mode, "true or false")
        if p.eval_mode and p.method in LEARNED:
            bad("prune.eval_mode", p.eval_mode, f"false for {p.method} (a learned method trains its masks in train "
                "mode)")
        if self.init != "parent":
            bad("init", self.init, "parent (pruning fine-tunes a trained classifier)")

    def _validate_place(self, bad) -> None:
        p = self.place
        policy_settings(p.policy, self.model.in_chans or 3, f"recipes.{self.name}.place.policy")
        if p.tune not in ("frozen", "joint"):
            bad("place.tune", p.tune, "frozen, joint")
        if isinstance(p.model_lr_scale, bool) or not isinstance(p.model_lr_scale, (int, float)) \
                or not p.model_lr_scale > 0:
            bad("place.model_lr_scale", p.model_lr_scale, "a number > 0")
        if self.init != "parent":
            bad("init", self.init, "parent (a policy places tokens for a trained SPoT model)")
        if self.tokens.mode != "subpixel":
            bad("tokens.mode", self.tokens.mode, "subpixel (the policy's positions are sub-pixel)")

    @property
    def lr(self) -> float:
        """The absolute peak learning rate (``blr · batch_size / 256`` when given as a base rate, MAE's rule)."""
        o = self.optimizer
        return o.lr if o.lr is not None else o.blr * self.batch_size / 256


TASKS = ("classify", "mae", "prune", "place")


def policy_settings(values: dict, in_chans: int, where: str = "place.policy"):
    """A ``place.policy`` mapping → the validated :class:`~spot.core.placement.learned.PolicySettings` (``in_chans``:
    the images', unless the mapping sets it)."""
    values = {"in_chans": in_chans, **(values or {})}
    try:
        return _build(PolicySettings, values, where).validate()
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def _resolve(recipes: dict, name: str, seen=()) -> dict:
    if name not in recipes:
        raise ValueError(f"no recipe {name!r} in the config; recipes: {', '.join(sorted(recipes))}")
    if name in seen:
        raise ValueError(f"recipe {name!r} extends itself (cycle: {' → '.join((*seen, name))})")
    raw = dict(recipes[name] or {})
    parent = raw.pop("extends", None)
    return _merge(_resolve(recipes, parent, (*seen, name)), raw) if parent else raw


def recipe_from_dict(values: dict, name: str = "recipe") -> Recipe:
    values = dict(values)
    values.setdefault("name", name)
    return _build(Recipe, values, f"recipes.{name}").validate()


def recipe_to_dict(recipe: Recipe) -> dict:
    """The recipe as plain values (records, the resumable state's identity, the workflow's params). ``prune`` only
    for a pruning recipe, ``tokens.mixture``/``mixture_share`` only when the share is > 0: settings with no effect
    on a run must not make it look changed (a changed param re-runs a workflow job)."""
    values = dataclasses.asdict(recipe)
    if recipe.task != "prune":
        values.pop("prune")
    if recipe.task != "place":
        values.pop("place")
    if not recipe.tokens.mixture_share:
        values["tokens"].pop("mixture")
        values["tokens"].pop("mixture_share")
    return values


def load_recipe(config, name: str, overrides: dict | None = None) -> Recipe:
    """Recipe ``name`` from a config mapping (or a YAML file path), resolving ``extends`` and applying overrides."""
    if not isinstance(config, dict):
        config = load_config(config)
    recipes = config.get("recipes")
    if not isinstance(recipes, dict) or not recipes:
        raise ValueError("the config has no `recipes:` mapping")
    values = _resolve(recipes, name)
    if overrides:
        values = _merge(values, overrides)
    values["name"] = name
    recipe = _build(Recipe, values, f"recipes.{name}")  # keys and types checked before the seed is offset
    offset = config.get("recipe_seed_offset") or 0  # the training-seed presets: the same recipe, another seed
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"recipe_seed_offset = {offset!r} is not valid; accepted: an integer ≥ 0")
    recipe.seed += offset
    return recipe.validate()
