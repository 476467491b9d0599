"""``PrunedViT``: a timm ViT or a SPoT model whose encoder prunes (or merges) tokens between blocks.

It shares every module of the wrapped model (no copy) and adds the method's own (SPOT-AD's predictors), so its state
dict is the model's under ``model.`` plus ``method.``. ``forward(images[, positions])`` gives logits — a SPoT model
takes positions (or ``prior=``/``num_tokens=``) as usual, so sampling and pruning combine — and afterwards
``token_counts`` holds the sequence length (prefix included) entering every block of that forward pass.
"""
from __future__ import annotations

import torch
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from .encoder import TokenState, check_blocks, run_block
from .methods import PRUNING_METHODS, method_settings
from ..models import SPoTViT
from ... import _checks

__all__ = ["PrunedViT", "prune"]

_POOLS = ("token", "avg", "")


class PrunedViT(nn.Module):
    """See the module docs; build it with :func:`prune`."""

    def __init__(self, model: nn.Module, method):
        super().__init__()
        self.model = model
        self.method = method
        self.token_counts: list[int] = []
        self.state: TokenState | None = None  # of the last forward pass (kept tokens' original indices, masks)
        self.last_tokens: torch.Tensor | None = None  # the last forward's tokens after the final norm

    # what evaluation, training and the records read from a classifier
    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def in_chans(self) -> int:
        return getattr(self.model, "in_chans", None) or self.model.patch_embed.proj.in_channels

    @property
    def pretrained_cfg(self) -> dict:
        return getattr(self.model, "pretrained_cfg", {}) or {}

    @property
    def is_spot(self) -> bool:
        return isinstance(self.model, SPoTViT)

    def group_matcher(self, coarse: bool = False) -> dict:
        """The wrapped model's layer groups under ``model.`` (layer-wise lr decay); the method's parameters get
        their own learning rate (:func:`spot.train.build.build_optimizer`)."""
        inner = self.model.group_matcher(coarse)

        def prefixed(rule):
            if isinstance(rule, str):
                return "|".join(f"^model\\.{part.lstrip('^')}" for part in rule.split("|"))
            return [(f"^model\\.{pattern.lstrip('^')}", extra) for pattern, extra in rule]

        return {k: prefixed(v) for k, v in inner.items()}

    def no_weight_decay(self) -> set[str]:
        return {f"model.{k}" for k in getattr(self.model, "no_weight_decay", lambda: set())()}

    def embed(self, images: torch.Tensor, positions=None, **sampling) -> torch.Tensor:
        """The input sequence (B, prefix + n, D) after ``norm_pre``, as the wrapped model computes it."""
        m = self.model
        if self.is_spot:
            return m.norm_pre(m.embed_tokens(images, m.resolve_positions(images, positions, **sampling)))
        if positions is not None or sampling:
            raise ValueError("positions / prior / num_tokens are for a pruned SPoT model; a pruned timm ViT runs on "
                             "its full patch grid (prune a SPoTViT to combine sampling and pruning)")

        _checks.images_tensor(images, self.in_chans)
        return m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(images))))

    def forward_features(self, images: torch.Tensor, positions=None, **sampling) -> torch.Tensor:
        x = self.embed(images, positions, **sampling)
        state = TokenState.start(x, self.model.num_prefix_tokens)
        method = self.method
        method.begin(state, x)
        counts = []
        for i, blk in enumerate(self.model.blocks):
            before = method.reduces(i) and method.position == "input"
            if before:  # the stage acts on the block's input: the block runs on the kept tokens
                x = method.reduce(i, state, x, None, None)
            counts.append(int(x.shape[1]))
            observe = (lambda probs, keys, h, i=i: method.observe(i, state, probs, keys, h)) \
                if method.observes(i) else None
            reduce = (lambda h, probs, keys, i=i: method.reduce(i, state, h, probs, keys)) \
                if method.reduces(i) and not before else None
            x = run_block(blk, x, state, observe=observe, reduce=reduce, view=method.view(i))
        self.token_counts, self.state = counts, state
        x = self.model.norm(x)
        self.last_tokens = x
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooling + head of the wrapped model; a global average pool weights tokens by their training keep mask
        and ToMe size (a dropped token does not count, a merged one counts as many)."""
        m, state = self.model, self.state
        weights = None
        if state is not None and x.shape[1] == state.prefix + state.index.shape[1]:
            for w in (state.policy, state.size):
                if w is not None:
                    weights = w if weights is None else weights * w
        if m.global_pool != "avg" or weights is None:
            return m.forward_head(x, pre_logits=pre_logits)
        p = m.num_prefix_tokens
        w = weights[:, p:].to(x.dtype)
        pooled = (x[:, p:] * w).sum(dim=1) / w.sum(dim=1).clamp_min(1e-6)
        pooled = m.head_drop(m.fc_norm(pooled))
        return pooled if pre_logits else m.head(pooled)

    def pooled_features(self, images, positions=None, **sampling) -> torch.Tensor:
        return self.forward_head(self.forward_features(images, positions, **sampling), pre_logits=True)

    def forward(self, images: torch.Tensor, positions=None, **sampling) -> torch.Tensor:
        return self.forward_head(self.forward_features(images, positions, **sampling))

    def describe(self) -> dict:
        """What :func:`prune` needs to rebuild it (checkpoint records)."""
        return {"method": self.method.name, "keep_ratio": self.method.keep_ratio, "stages": list(self.method.stages),
                **({"settings": self.method.settings()} if method_settings(type(self.method)) else {})}


def _check_keep_ratio(keep_ratio) -> float:
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be a number in (0, 1] (the share of patch tokens each stage keeps), "
                         f"got {keep_ratio!r}")
    return float(keep_ratio)


def _check_stages(stages, depth: int):
    if stages is None:
        return None
    if isinstance(stages, int) or not all(isinstance(s, int) and not isinstance(s, bool) for s in stages):
        raise ValueError(f"stages must be a list of 0-indexed block numbers, got {stages!r}")
    stages = list(stages)
    if not stages or sorted(set(stages)) != stages or stages[0] < 0 or stages[-1] >= depth:
        raise ValueError(f"stages must be increasing, distinct block numbers in [0, {depth - 1}] (the model has "
                         f"{depth} blocks), got {stages}")
    return tuple(stages)


def prune(model: nn.Module, method: str = "spot_ad", keep_ratio: float = 0.7, *, stages=None,
          **settings) -> PrunedViT:
    """``model`` (a timm ``VisionTransformer`` or a :class:`~spot.core.models.SPoTViT`) with token pruning.

    Args:
        method: a name of :data:`~spot.core.pruning.PRUNING_METHODS` — ``spot_ad``, ``evit``, ``dynamicvit``,
            ``heuristic``, ``tome``.
        keep_ratio: ρ in (0, 1]: stage k keeps ρ^k of the patch tokens (EViT: ρ of those present; ToMe: sets r).
        stages: 0-indexed blocks that prune (default: one block after each of the first three quarters of the
            depth, 3, 6, 9 of 12; ToMe: every block).
        settings: the method's own (SPOT-AD: ``d_remap``, ``statistics``, ``dynamics``, ``heads``, ``shared``;
            EViT: ``fuse``; ToMe: ``r``, ``prop_attn`` — default: on for a CLS-token model, off for an
            average-pooled one, as the authors' timm and MAE patches).

    The returned module shares the model's parameters and adds the method's (untrained predictors for the learned
    methods: fine-tune them with a ``task: prune`` recipe).
    """

    if not isinstance(model, (VisionTransformer, SPoTViT)):
        raise ValueError(f"prune() takes a timm VisionTransformer or a SPoTViT, got {type(model).__name__}")
    if method not in PRUNING_METHODS:
        raise ValueError(f"method: unknown pruning method {method!r}; accepted: {', '.join(PRUNING_METHODS)}")
    cls = PRUNING_METHODS[method]
    unknown = sorted(set(settings) - set(method_settings(cls)))
    if unknown:
        raise ValueError(f"pruning method {method!r} accepts settings {method_settings(cls) or 'none'}, got {unknown}")
    check_blocks(model.blocks)
    if getattr(model, "attn_pool", None) is not None or model.global_pool not in _POOLS:
        raise ValueError(f"global_pool {model.global_pool!r}: pruning supports CLS-token ('token') and average "
                         f"('avg') pooling")
    depth = len(model.blocks)
    attn = model.blocks[0].attn
    if isinstance(model, SPoTViT):
        num_patches = (model.image_size[0] // model.patch_size[0]) * (model.image_size[1] // model.patch_size[1])
    else:
        num_patches = model.patch_embed.num_patches
    if model.num_prefix_tokens < 1 and cls.__name__ != "ToMe":
        raise ValueError(f"{method} ranks tokens by their attention to the CLS token: the model has no class token")
    common = dict(embed_dim=model.embed_dim, num_heads=attn.num_heads, depth=depth, num_patches=num_patches,
                  prefix=model.num_prefix_tokens, keep_ratio=_check_keep_ratio(keep_ratio),
                  stages=_check_stages(stages, depth))
    if method == "tome" and settings.get("prop_attn") is None:  # the authors' patch for the model's pooling
        settings = {**settings, "prop_attn": model.global_pool != "avg"}
    pruner = cls(**common, **settings)
    return PrunedViT(model, pruner.to(next(model.parameters()).device))
