"""SPoT models on timm Vision Transformers, and the PatchDropout baseline.

``SPoTViT.from_timm(vit)`` wraps any timm ``VisionTransformer``: it shares the ViT's prefix tokens, blocks, norms and
head (the very same modules and parameters, no copy) and replaces ``patch_embed`` + ``pos_embed`` by subpixel
windows (:class:`~spot.core.tokenizer.WindowEmbedding`, whose projection *is* the patch projection) plus the kernelized
positional embedding fitted to the learned ``pos_embed``. With ``positions = grid_positions(image_size, patch)``
the wrapped model computes the same logits as the ViT (the grid-equivalence test).

Data path: images → positions (given, or sampled from a prior) → tokens → blocks → pooled feature → logits.
"""
from __future__ import annotations

import torch
from torch import nn
from timm.layers import resample_patch_embed
from timm.models import checkpoint_seq
from timm.models.vision_transformer import VisionTransformer, global_pool_nlc

from .. import _checks
from .embedding import KernelizedPositionalEmbedding
from .positions import grid_positions
from .placement import random_patch_subset, sample_positions
from .tokenizer import LayoutMemo, WindowEmbedding

__all__ = ["SPoTViT", "PatchDropoutViT"]


def _check_vit(vit) -> VisionTransformer:
    if not isinstance(vit, VisionTransformer):
        raise ValueError(f"expected a timm VisionTransformer, got {type(vit).__name__}")
    if not isinstance(getattr(vit.patch_embed, "proj", None), nn.Conv2d):
        raise ValueError("the ViT's patch_embed has no Conv2d projection (hybrid/CNN stems are not supported)")
    return vit


class _TimmHead(nn.Module):
    """Pooling + fc_norm + head, shared with (and computed exactly as) timm's ``VisionTransformer.forward_head``."""

    def _init_head(self, vit: VisionTransformer) -> None:
        self.attn_pool = vit.attn_pool
        self.fc_norm = vit.fc_norm
        self.head_drop = vit.head_drop
        self.head = vit.head
        self.global_pool = vit.global_pool
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.pool_include_prefix = getattr(vit, "pool_include_prefix", False)
        self.num_classes = vit.num_classes
        self.num_features = vit.num_features
        self.head_hidden_size = getattr(vit, "head_hidden_size", vit.num_features)
        self.embed_dim = vit.embed_dim

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """timm's ``VisionTransformer.reset_classifier``: a new head for ``num_classes`` (0: none, the pooled
        feature is the output); ``global_pool`` '' (no pooling), 'token', 'avg', 'max', 'avgmax' ('map' only when
        the model already pools by attention)."""
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("", "avg", "avgmax", "max", "token", "map"):
                raise ValueError(f"global_pool {global_pool!r}: accepted '', 'avg', 'avgmax', 'max', 'token', 'map'")
            if global_pool == "map" and self.attn_pool is None:
                raise ValueError("global_pool 'map' needs the model's attention pool; it has none")
            if global_pool != "map":
                self.attn_pool = None
            self.global_pool = global_pool
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.attn_pool is not None:
            return self.attn_pool(x if self.pool_include_prefix else x[:, self.num_prefix_tokens:])
        return global_pool_nlc(x, pool_type=self.global_pool, num_prefix_tokens=self.num_prefix_tokens,
                               reduce_include_prefix=self.pool_include_prefix)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, prefix + m, D) → logits, or with ``pre_logits`` the pooled feature (used for kNN)."""
        x = self.head_drop(self.fc_norm(self.pool(x)))
        return x if pre_logits else self.head(x)


class SPoTViT(_TimmHead):
    """A timm ViT whose tokens are k×k bilinear windows at continuous positions.

    Call as ``model(images, positions)`` with positions (B, m, 2) or (m, 2) in [0, 1] (y, x); or
    ``model(images, prior="center", num_tokens=25, generator=g)`` to sample positions; or ``model(images)`` for the
    full patch grid (patch tokenization, identical to the wrapped ViT).
    """

    def __init__(self, vit: VisionTransformer, window=None, pe_sigma: float = 0.5, geometry: str = "spot"):
        super().__init__()
        vit = _check_vit(vit)
        pe = vit.patch_embed
        self.patch_size = tuple(pe.patch_size)
        self.image_size = tuple(pe.img_size) if pe.img_size is not None else None
        self.in_chans = pe.proj.in_channels
        window = self.patch_size if window is None else _checks.pair(window, "window")
        if tuple(window) == self.patch_size:
            proj = pe.proj  # shared: the patch projection becomes the window projection
        else:  # FlexiViT-style resampling of the projection to another window size (a new parameter)
            proj = nn.Conv2d(self.in_chans, pe.proj.out_channels, kernel_size=window, stride=window,
                             bias=pe.proj.bias is not None).to(pe.proj.weight)
            with torch.no_grad():
                proj.weight.copy_(resample_patch_embed(pe.proj.weight, list(window)))
                if pe.proj.bias is not None:
                    proj.bias.copy_(pe.proj.bias)
        self.window_embed = WindowEmbedding(proj, getattr(pe, "norm", None), geometry=geometry)
        self._pe_memo = LayoutMemo()  # the positional embedding of a layout reused across forwards (no grad)
        self._positions_memo = LayoutMemo()  # that layout checked and on the images' device, once

        # positional term: kernelized PE on the ViT's patch grid, plus timm's learned prefix-token terms
        grid = tuple(pe.grid_size)
        npt = vit.num_prefix_tokens
        if vit.pos_embed is not None:
            learned = vit.pos_embed.detach()[0]
            patch_part = learned if vit.no_embed_class else learned[npt:]
            self.pos_embed = KernelizedPositionalEmbedding.from_grid(patch_part.reshape(*grid, -1), pe_sigma)
            has_prefix_pe = not vit.no_embed_class and npt > 0
            self.prefix_pos_embed = nn.Parameter(learned[:npt][None].clone()) if has_prefix_pe else None
        else:
            self.pos_embed = None
            self.prefix_pos_embed = None

        # shared modules (the very same objects as in `vit`)
        self.cls_token = vit.cls_token
        self.reg_token = vit.reg_token
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre
        self.blocks = vit.blocks
        self.norm = vit.norm
        self._init_head(vit)
        self.pretrained_cfg = dict(getattr(vit, "pretrained_cfg", {}) or {})
        if self.pretrained_cfg.get("first_conv") == "patch_embed.proj":  # the same module, under this model's name
            self.pretrained_cfg["first_conv"] = "window_embed.proj"
        self.default_cfg = self.pretrained_cfg  # timm's alias
        self.grad_checkpointing = False
        # what ``model(images)`` samples when called without positions and without a prior (None: the full grid)
        self.default_prior = None
        self.default_num_tokens = None

    @classmethod
    def from_timm(cls, vit: VisionTransformer, window=None, pe_sigma: float = 0.5, geometry: str = "spot") -> "SPoTViT":
        """Wrap a timm ``VisionTransformer`` (shares its blocks, norms and head; see the class docs).

        ``geometry`` is the window geometry of :func:`~spot.core.tokenizer.extract_windows` (``"release"``: the authors'
        release, used by :func:`spot.weights.official.load_official`, which also replaces ``pos_embed`` by the release's
        :class:`~spot.core.embedding.ReleaseHeatmapEmbedding`; any module called as ``pos_embed(positions, image_size=)``
        can be put there).
        """
        return cls(vit, window=window, pe_sigma=pe_sigma, geometry=geometry)

    @property
    def window(self) -> tuple[int, int]:
        return self.window_embed.window

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's activation checkpointing of the blocks (recomputed in the backward pass to save memory)."""
        self.grad_checkpointing = enable

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for timm's layer-wise lr decay, as timm's ViT: the stem (prefix tokens, window
        projection, positional embedding) first, then one group per block, the final norm, and — unmatched — the
        head last."""
        return dict(stem=r"^cls_token|^reg_token|^prefix_pos_embed|^pos_embed|^window_embed|^norm_pre",
                    blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])

    def no_weight_decay(self) -> set[str]:
        """Tokens and positional embeddings are not weight-decayed (timm's ViT convention)."""
        return {"cls_token", "reg_token", "prefix_pos_embed", "pos_embed.weight"}

    def grid_positions(self, image_size=None, device=None) -> torch.Tensor:
        """The patch-grid centres of this model's patch size for ``image_size`` (default: its own input size)."""
        return grid_positions(image_size or self.image_size, self.patch_size, device=device)

    def resolve_positions(self, images: torch.Tensor, positions=None, *, prior=None, num_tokens=None,
                          generator=None, saliency=None) -> torch.Tensor:
        """The (B or 1, m, 2) positions a forward pass uses: given, sampled from a prior, or the full grid.

        Without positions, a missing ``prior``/``num_tokens`` is taken from ``default_prior``/``default_num_tokens``
        when those are set (as :func:`spot.weights.official.load_official` does); with neither, the full patch grid.
        """
        B, _, H, W = images.shape
        if positions is not None:
            if prior is not None or num_tokens is not None:
                raise ValueError("give either positions or prior + num_tokens, not both")
            # a reused shared layout is checked (a device sync on a GPU) and moved once, and stays one tensor on
            # the images' device, so the window plan and positional embedding kept for it are found again
            return self._positions_memo.get(
                positions, (images.device,), lambda: _checks.positions_tensor(positions, B).to(images.device))
        if self.default_prior is not None or self.default_num_tokens is not None:
            prior = self.default_prior if prior is None else prior
            num_tokens = self.default_num_tokens if num_tokens is None else num_tokens
        if prior is None and num_tokens is None:
            return grid_positions((H, W), self.patch_size, device=images.device)[None]
        if prior is None or num_tokens is None:
            raise ValueError("sampling positions needs both prior= and num_tokens=")
        return sample_positions(prior, num_tokens, B, (H, W), generator=generator, saliency=saliency,
                                device=images.device)

    def embed_tokens(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Images + positions → the input sequence (B, prefix + m, D), before ``norm_pre`` and the blocks."""
        x = self.window_embed(images, positions)
        if self.pos_embed is not None:
            # positions stay float64 (a bf16 cast would move them by up to ~1 px at 224²); the PE casts to its weight
            x = x + self.positional_embedding(positions, tuple(images.shape[-2:])).to(x.dtype)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if prefix:
            prefix = torch.cat(prefix, dim=1)
            if self.prefix_pos_embed is not None:
                prefix = prefix + self.prefix_pos_embed
            x = torch.cat([prefix, x], dim=1)
        return self.pos_drop(x)

    def positional_embedding(self, positions: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """``pos_embed(positions)``; for a layout reused across forwards outside autograd, computed once while the
        positions and the embedding's parameters are unchanged (:class:`~spot.core.tokenizer.LayoutMemo`)."""
        params = list(self.pos_embed.parameters())
        compute = lambda: self.pos_embed(positions, image_size=image_size)  # noqa: E731
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return compute()
        key = (image_size, *((p._version, p.data_ptr(), p.dtype, p.device) for p in params))
        return self._pe_memo.get(positions, key, compute)

    def forward_features(self, images: torch.Tensor, positions=None, **sampling) -> torch.Tensor:
        """Tokens after the final norm: (B, prefix + m, D)."""
        _checks.images_tensor(images, self.in_chans)
        positions = self.resolve_positions(images, positions, **sampling)
        x = self.norm_pre(self.embed_tokens(images, positions))
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)

    def pooled_features(self, images: torch.Tensor, positions=None, **sampling) -> torch.Tensor:
        """The pooled, pre-logits feature (B, num_features): CLS token or mean of patch tokens after fc_norm (kNN)."""
        return self.forward_head(self.forward_features(images, positions, **sampling), pre_logits=True)

    def forward(self, images: torch.Tensor, positions=None, **sampling) -> torch.Tensor:
        return self.forward_head(self.forward_features(images, positions, **sampling))


class PatchDropoutViT(_TimmHead):
    """The PatchDropout baseline (Liu et al., 2023) at inference: a timm ViT on a random subset of m grid patches.

    Uses the ViT's own patch embedding and learned ``pos_embed`` (shared modules), keeps the prefix tokens, and
    drops all but ``num_tokens`` patch tokens before the blocks. ``num_tokens=None`` keeps every patch (the ViT
    itself).
    """

    def __init__(self, vit: VisionTransformer):
        super().__init__()
        vit = _check_vit(vit)
        self.vit = vit
        self.in_chans = vit.patch_embed.proj.in_channels
        self._init_head(vit)

    @property
    def num_patches(self) -> int:
        return self.vit.patch_embed.num_patches

    def forward_features(self, images: torch.Tensor, num_tokens: int | None = None, generator=None,
                         keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens after the final norm for a random (or the given ``keep`` (B, m) indices) subset of patches."""
        _checks.images_tensor(images, self.in_chans)
        vit = self.vit
        x = vit._pos_embed(vit.patch_embed(images))  # (B, prefix + N, D), as timm computes it
        npt, N = vit.num_prefix_tokens, x.shape[1] - vit.num_prefix_tokens
        if keep is None and num_tokens is not None:
            keep = random_patch_subset(x.shape[0], N, num_tokens, generator, device=x.device)
        if keep is not None:
            if keep.dim() != 2 or keep.shape[0] != x.shape[0] or keep.min() < 0 or keep.max() >= N:
                raise ValueError(f"keep must be (B, m) patch indices in [0, {N}) for a batch of {x.shape[0]}")
            patches = torch.gather(x[:, npt:], 1, keep[..., None].expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :npt], patches], dim=1)
        x = vit.blocks(vit.norm_pre(x))
        return vit.norm(x)

    def pooled_features(self, images, num_tokens=None, generator=None, keep=None) -> torch.Tensor:
        return self.forward_head(self.forward_features(images, num_tokens, generator, keep), pre_logits=True)

    def forward(self, images, num_tokens=None, generator=None, keep=None) -> torch.Tensor:
        return self.forward_head(self.forward_features(images, num_tokens, generator, keep))
