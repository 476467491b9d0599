"""What a recipe trains and how: the model (from scratch or a parent checkpoint), timm's optimiser with layer-wise
learning-rate decay, and timm's per-step scheduler."""
from __future__ import annotations

import os

import torch

from .recipes import Recipe, policy_settings
from ..weights.checkpoints import checkpoint_record
from ..core.pruning import prune
from ..weights.backbones import create_backbone
from ..weights.formats import load_mae_state_dict, read_state_dict
from ..core.models import SPoTViT
from ..core.mae import SubpixelMAE
from ..core.pruning import PrunedViT
from ..core.policy import GlancePolicy, PlacedSPoT
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

__all__ = ["build_training_model", "build_optimizer", "build_scheduler", "hold_frozen", "freeze_parameters",
           "timm_kwargs", "architecture"]


def _is_spot_state(state: dict) -> bool:
    """A SPoTViT / SubpixelMAE ``state_dict`` (as opposed to timm-ViT or MAE-repo key names)."""
    return any(k.startswith(("window_embed.", "encoder.window_embed.")) for k in state)


def timm_kwargs(recipe: Recipe, parent=None) -> dict:
    """timm keyword config of the recipe's model. The pooling head (``global_pool``, ``fc_norm``) is an architectural
    property of a classifier: unset in the recipe, it is the parent classifier's (from its record), else the
    backbone's own — so retrofitting a global-pool parent keeps its head."""

    m = recipe.model
    kw = dict(m.timm_kwargs)
    inherited = {}
    if parent is not None and (m.global_pool is None or m.fc_norm is None):
        record = checkpoint_record(parent) or {}
        if record.get("format") in ("timm_vit", "spot_vit"):
            inherited = {k: v for k, v in (record.get("timm_kwargs") or {}).items() if k in ("global_pool", "fc_norm")}
    for key, value in (("img_size", m.img_size), ("num_classes", m.num_classes), ("in_chans", m.in_chans),
                       ("global_pool", m.global_pool), ("fc_norm", m.fc_norm)):
        if value is None:
            value = inherited.get(key)
        if value is not None:
            kw[key] = value
    kw["drop_path_rate"] = m.drop_path
    return kw


def architecture(recipe: Recipe, parent=None) -> tuple[str, dict]:
    """(backbone name, timm keyword config) of the recipe's model. A pruning or placement-policy recipe serves any
    parent: its architecture is the parent's (from its record), with the recipe's own model settings on top."""
    name, kwargs = recipe.model.backbone, timm_kwargs(recipe, parent)
    if recipe.task in ("prune", "place") and parent is not None:
        record = checkpoint_record(parent) or {}
        name = record.get("backbone") or record.get("name") or name
        kwargs = {**(record.get("timm_kwargs") or {}), **kwargs}
    return name, kwargs


def _load_into(module: torch.nn.Module, state: dict, what: str, log) -> None:
    """Load matching keys; a classifier head of another shape (e.g. 1000 → 10 classes, or none) is left at init."""
    own = module.state_dict()
    skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if skipped and not all(k.startswith(("head.", "fc_norm.")) for k in skipped):
        raise ValueError(f"the parent checkpoint does not fit the model ({what}): shape mismatch for {skipped[:5]}")
    result = module.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("head.", "fc_norm."))]
    if missing:
        raise ValueError(f"the parent checkpoint lacks {len(missing)} weights of the model ({what}): {missing[:5]}")
    fresh = sorted(set(skipped) | set(result.missing_keys))
    if fresh:
        log(f"parent: {', '.join(fresh)} not in the parent (or of another shape): newly initialised")


def build_training_model(recipe: Recipe, parent: str | os.PathLike | None = None, log=print):
    """The module a recipe trains: a timm ViT (grid classify), a SPoTViT (subpixel / grid_subset classify), a
    SubpixelMAE (mae) or either classifier wrapped by :func:`spot.prune` (prune), initialised from ``parent``
    (a timm ViT, SPoT or MAE-layout checkpoint) or at random."""
    model = _build_model(recipe, parent, log)
    if recipe.task == "place":
        return _placed(recipe, model)
    if recipe.task == "prune":
        p = recipe.prune
        freeze_parameters(model, p.freeze)
        return prune(model, p.method, p.keep_ratio, stages=p.stages, **(p.settings or {}))
    return model


def _placed(recipe: Recipe, model) -> PlacedSPoT:
    """The SPoT model (frozen, or tuned jointly) with a fresh glance policy placing its tokens (``task: place``; a
    plain-ViT parent is wrapped as a SPoT model first, as a retrofit starts)."""
    if recipe.place.tune == "frozen":
        model.requires_grad_(False)
    policy = GlancePolicy(policy_settings(recipe.place.policy, model.in_chans))
    return PlacedSPoT(policy, model)


def freeze_parameters(model: torch.nn.Module, names) -> None:
    """Stop training the parameters named (exactly, or as a dotted prefix: ``pos_embed``, ``blocks.0``); a name
    that matches none is an error listing the model's top-level parameter names."""
    params = dict(model.named_parameters())
    for name in names:
        hits = [k for k in params if k == name or k.startswith(name + ".")]
        if not hits:
            tops = sorted({k.split(".")[0] for k in params})
            raise ValueError(f"prune.freeze: the model has no parameter {name!r}; its parameters: {', '.join(tops)} "
                             "(remove the name, or name one of these)")
        for k in hits:
            params[k].requires_grad_(False)


def _build_model(recipe: Recipe, parent, log):
    if recipe.init == "parent" and parent is None:
        raise ValueError(f"recipe {recipe.name!r} starts from a parent checkpoint (init: parent): pass --parent PATH")
    if recipe.init == "scratch" and parent is not None:
        raise ValueError(f"recipe {recipe.name!r} trains from scratch (init: scratch) but a parent was given")
    state = read_state_dict(parent) if parent is not None else None
    name, kwargs = architecture(recipe, parent)
    vit = create_backbone(name, **kwargs)
    spot_kw = dict(window=recipe.model.window, pe_sigma=recipe.model.pe_sigma)
    if recipe.task == "mae":
        cfg = recipe.mae
        model = SubpixelMAE.from_backbone(vit, decoder_dim=cfg.decoder_dim, decoder_depth=cfg.decoder_depth,
                                          decoder_heads=cfg.decoder_heads, norm_pix_loss=cfg.norm_pix_loss,
                                          fixed_sincos_pe=cfg.fixed_sincos_pe and state is None, **spot_kw)
        if state is not None:
            if _is_spot_state(state):
                model.load_state_dict(state)
            else:
                load_mae_state_dict(model, state)
        return model
    if state is not None and not _is_spot_state(state):
        enc = {k: v for k, v in state.items() if not k.startswith(("decoder_", "mask_token"))}
        _load_into(vit, enc, recipe.model.backbone, log)
    if recipe.tokens.mode == "grid":
        if state is not None and _is_spot_state(state):
            raise ValueError("grid training of a plain ViT cannot start from a SPoT checkpoint; use tokens.mode: "
                             "grid_subset with max_tokens = the grid size to train a SPoT model on the full grid")
        return vit
    model = SPoTViT.from_timm(vit, **spot_kw)
    if state is not None and _is_spot_state(state):
        _load_into(model, state, "SPoT", log)
    return model


def build_optimizer(model: torch.nn.Module, recipe: Recipe, total_steps: int = 0):
    """timm's optimiser factory: AdamW (or the recipe's), weight decay off for 1-d weights and tokens, and layer-wise
    lr decay by the model's ``group_matcher`` (the stem gets ``lr·decay^(L+1)``, block i ``lr·decay^(L−i)``, the head
    ``lr``: deeper layers get larger rates); frozen parameters (``requires_grad`` off) are left out.

    A pruned model: the wrapped model so, at ``prune.backbone_lr_scale`` × lr (timm's schedulers multiply a group's
    scheduled lr by its ``lr_scale``) and held at 0 for the first ``prune.backbone_frozen_share`` of ``total_steps``
    (``frozen_steps``: :func:`hold_frozen` applies it); the pruning method's own parameters (the predictors) in groups
    of their own at ``prune.predictor_lr_scale`` × lr — DynamicViT's ``get_parameter_groups`` with its
    ``bone_lr_scale`` and ``fix_step``."""


    o = recipe.optimizer
    kwargs = dict(betas=tuple(o.betas), eps=o.eps) if "adam" in o.name.lower() or "lamb" in o.name.lower() else {}
    if isinstance(model, PlacedSPoT):
        return _placed_optimizer(model, recipe)
    backbone = model.model if isinstance(model, PrunedViT) else model
    optimizer = create_optimizer_v2(backbone, opt=o.name, lr=recipe.lr, weight_decay=o.weight_decay,
                                    layer_decay=o.layer_decay, **kwargs)
    if isinstance(model, PrunedViT):
        p = recipe.prune
        frozen_steps = int(p.backbone_frozen_share * total_steps)
        for group in optimizer.param_groups:
            group["lr_scale"] = group.get("lr_scale", 1.0) * p.backbone_lr_scale
            group["frozen_steps"] = frozen_steps
        params = [q for q in model.method.parameters() if q.requires_grad]
        for decay, group in ((o.weight_decay, [q for q in params if q.ndim > 1]),
                             (0.0, [q for q in params if q.ndim <= 1])):
            if group:
                optimizer.add_param_group({"params": group, "lr": recipe.lr, "weight_decay": decay,
                                           "lr_scale": p.predictor_lr_scale})
    return optimizer


def _placed_optimizer(model: PlacedSPoT, recipe: Recipe):
    """``task: place``: the policy at lr (weight decay on its convolution kernels only); a jointly tuned SPoT model
    with timm's groups and layer decay at ``place.model_lr_scale`` × lr."""
    o = recipe.optimizer
    kwargs = dict(betas=tuple(o.betas), eps=o.eps) if "adam" in o.name.lower() or "lamb" in o.name.lower() else {}
    params = list(model.policy.parameters())
    groups = [{"params": [q for q in params if q.ndim > 1], "weight_decay": o.weight_decay},
              {"params": [q for q in params if q.ndim <= 1], "weight_decay": 0.0}]
    optimizer = create_optimizer_v2(groups, opt=o.name, lr=recipe.lr, weight_decay=o.weight_decay, **kwargs)
    if recipe.place.tune == "joint":
        tuned = create_optimizer_v2(model.model, opt=o.name, lr=recipe.lr, weight_decay=o.weight_decay,
                                    layer_decay=o.layer_decay, **kwargs)
        for group in tuned.param_groups:
            group["lr_scale"] = group.get("lr_scale", 1.0) * recipe.place.model_lr_scale
            optimizer.add_param_group({k: v for k, v in group.items() if k not in ("initial_lr",)})
    return optimizer


def hold_frozen(optimizer, step: int) -> None:
    """Set to 0 the lr of every group still within its ``frozen_steps`` at global step ``step`` (after the
    scheduler has set the step's rates)."""
    for group in optimizer.param_groups:
        if step < group.get("frozen_steps", 0):
            group["lr"] = 0.0


def build_scheduler(optimizer, recipe: Recipe, updates_per_epoch: int):
    s = recipe.schedule
    sched, _ = create_scheduler_v2(optimizer, sched=s.name, num_epochs=recipe.epochs, warmup_epochs=s.warmup_epochs,
                                   warmup_lr=s.warmup_lr, min_lr=s.min_lr, step_on_epochs=False,
                                   updates_per_epoch=updates_per_epoch)
    return sched


