"""Masked autoencoding (MAE, He et al. 2022) with the subpixel tokenizer.

MAE splits an image's tokens at random into a small visible set and a masked rest (75 % masked by default), encodes
only the visible tokens with the ViT, and asks a light decoder (the encoded tokens plus one learned ``mask_token`` per
masked token, all with a fixed 2-D sin-cos positional embedding) to predict the pixels of the masked patches; the
loss is the MSE on the masked patches only, optionally against per-patch normalised pixels (``norm_pix_loss``).

:class:`SubpixelMAE` does the same on a :class:`~spot.core.models.SPoTViT`: tokens are k×k windows at continuous positions,
the encoder sees the visible windows at their positions, and the decoder predicts the pixels of the masked windows
(:func:`~spot.core.tokenizer.extract_windows` at the masked positions) from the sin-cos embedding evaluated at those
continuous positions (:func:`sincos_pos_embed_2d`). This serves

* MAE retrofitting (the paper): positions sampled off the grid (e.g. from a prior), the encoder adapts to subpixel
  tokens while the MAE objective stays the same;
* plain MAE pre-training: ``positions = grid_positions(image_size, patch)``; grid windows are exactly the patches and
  the sin-cos embedding at grid centres is MAE's table, so this is standard MAE.

Prediction/target layout: every token's k·k·C values are ordered (row, column, channel), channel fastest, as MAE's
``patchify`` (``einsum('nchpwq->nhwpqc')``), so the official decoder's ``decoder_pred`` predicts in the right order.

Weights: ``state_dict()``/``load_state_dict()`` (ordinary ``nn.Module``) cover everything, including the SPoTViT's
own kernelized PE. :meth:`SubpixelMAE.mae_state_dict` / :meth:`SubpixelMAE.load_mae_state_dict` use the MAE repo's
layout (``mae_pretrain_vit_base_full.pth``: timm ViT names for the encoder, ``mask_token``, ``decoder_*`` for the
decoder) to exchange weights with MAE and timm.
"""
from __future__ import annotations

import numbers
from functools import partial
from typing import NamedTuple

import torch
from torch import nn
from timm.models.vision_transformer import Block, VisionTransformer

from .. import _checks
from .models import SPoTViT
from .positions import grid_positions, grid_shape
from .placement.priors import generator_device
from .tokenizer import extract_windows

__all__ = ["sincos_pos_embed_2d", "SubpixelMAE", "MAEOutput", "MAE_NORM_EPS", "MAE_NORM_PIX_EPS",
           "MAE_SINCOS_TEMPERATURE"]

MAE_SINCOS_TEMPERATURE = 10000.0  # MAE's (and the Transformer's) sin-cos frequency base
MAE_NORM_EPS = 1e-6  # LayerNorm eps of MAE's decoder (``partial(nn.LayerNorm, eps=1e-6)``)
MAE_NORM_PIX_EPS = 1e-6  # MAE's norm_pix_loss: (t − mean) / sqrt(var + 1e-6)
MAE_INIT_STD = 0.02  # MAE initialises mask_token with N(0, 0.02²)


def sincos_pos_embed_2d(positions: torch.Tensor, embed_dim: int, grid_size) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos positional embedding, as a continuous function of positions.

    MAE's table (``get_2d_sincos_pos_embed``) embeds the patch ``(row, col)`` of a ``gh × gw`` grid as
    ``[e(col), e(row)]`` with ``e(t) = [sin(t·ω), cos(t·ω)]`` (``embed_dim/2`` channels per axis, the column axis first
    — MAE's ``meshgrid(grid_w, grid_h)`` puts w first) and ``ω_i = 1 / 10000^(i / (embed_dim/4))``,
    ``i = 0 … embed_dim/4 − 1``. Here ``t`` is the position in grid units, ``row = y·gh − ½`` and ``col = x·gw − ½``,
    so the grid centres (:func:`~spot.core.positions.grid_positions`) give exactly MAE's rows, and positions between them
    interpolate smoothly.

    Args:
        positions: (..., 2) positions (y, x) in [0, 1] (float64 for exactness).
        embed_dim: channels, a multiple of 4.
        grid_size: ``g`` or ``(gh, gw)``, the patch grid the table is defined on.

    Returns:
        (..., embed_dim) in the positions' dtype (computed in float64).
    """
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 4 or embed_dim % 4:
        raise ValueError(f"embed_dim must be a positive multiple of 4 (sin and cos for each of 2 axes), got {embed_dim!r}")
    gh, gw = _checks.pair(grid_size, "grid_size")
    if not isinstance(positions, torch.Tensor) or positions.shape[-1:] != (2,) or not positions.is_floating_point():
        raise ValueError("positions must be a floating-point tensor of shape (..., 2) holding (y, x)")
    quarter = embed_dim // 4
    omega = MAE_SINCOS_TEMPERATURE ** -(torch.arange(quarter, dtype=torch.float64, device=positions.device) / quarter)
    pos = positions.to(torch.float64)
    row = pos[..., 0] * gh - 0.5
    col = pos[..., 1] * gw - 0.5
    parts = []
    for t in (col, row):  # MAE's order: the w (column) axis first
        angle = t[..., None] * omega
        parts += [torch.sin(angle), torch.cos(angle)]
    return torch.cat(parts, dim=-1).to(positions.dtype)


class MAEOutput(NamedTuple):
    """What :meth:`SubpixelMAE.forward` returns.

    loss: scalar, mean over masked tokens of the per-token MSE. pred/target: (B, n_masked, k·k·C), (row, col, channel)
    order. visible_positions: (B, n_visible, 2); masked_positions: (B, n_masked, 2) (a per-image random split).
    """

    loss: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    visible_positions: torch.Tensor
    masked_positions: torch.Tensor


class SubpixelMAE(nn.Module):
    """MAE on a :class:`~spot.core.models.SPoTViT` encoder with MAE's decoder (see the module docs).

    Args:
        encoder: the SPoTViT (its blocks etc. are shared with the wrapped timm ViT, and trained in place).
        decoder_dim, decoder_depth, decoder_heads, mlp_ratio: MAE's decoder (defaults: MAE's ViT-B decoder,
            512 wide, 8 blocks, 16 heads, MLP ratio 4).
        norm_pix_loss: predict per-window normalised pixels (MAE's recommended setting and that of the released
            checkpoints).

    MAE's encoder ends with the ViT's final ``norm``. A timm ViT built for global-pool fine-tuning (``fc_norm=True``,
    e.g. :data:`~spot.weights.backbones.BACKBONES` ``"mae_in1k"``) has ``norm = Identity``; this class then adds its own
    ``encoder_norm`` LayerNorm for the pre-training path (stored as ``norm.*`` in :meth:`mae_state_dict`, as in the
    MAE file); otherwise ``encoder_norm`` is None and ``encoder.norm`` is used.
    """

    def __init__(self, encoder: SPoTViT, decoder_dim: int = 512, decoder_depth: int = 8, decoder_heads: int = 16,
                 mlp_ratio: float = 4.0, norm_pix_loss: bool = True):
        super().__init__()
        if not isinstance(encoder, SPoTViT):
            raise ValueError(f"encoder must be a SPoTViT (use SubpixelMAE.from_backbone for a timm ViT), "
                             f"got {type(encoder).__name__}")
        for name, value in (("decoder_dim", decoder_dim), ("decoder_depth", decoder_depth),
                            ("decoder_heads", decoder_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {value!r}")
        if decoder_dim % 4 or decoder_dim % decoder_heads:
            raise ValueError(f"decoder_dim must be a multiple of 4 (2-D sin-cos embedding) and of decoder_heads "
                             f"({decoder_heads}), got {decoder_dim}")
        self.encoder = encoder
        self.norm_pix_loss = bool(norm_pix_loss)
        embed_dim = encoder.embed_dim
        norm_layer = partial(nn.LayerNorm, eps=MAE_NORM_EPS)
        self.encoder_norm = norm_layer(embed_dim) if isinstance(encoder.norm, nn.Identity) else None
        kh, kw = encoder.window
        ref = encoder.window_embed.proj.weight  # the decoder lives on the encoder's device, in its dtype
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim, device=ref.device, dtype=ref.dtype))
        self.decoder_blocks = nn.ModuleList([
            Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, kh * kw * encoder.in_chans, bias=True)
        for module in self._decoder_modules():
            module.to(device=ref.device, dtype=ref.dtype)
        self._init_decoder()

    def _decoder_modules(self) -> list[nn.Module]:
        modules = [self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred]
        return modules + ([self.encoder_norm] if self.encoder_norm is not None else [])

    def _init_decoder(self) -> None:
        """MAE's initialisation: mask token N(0, 0.02²), Linear xavier-uniform with zero bias, LayerNorm (1, 0)."""
        nn.init.normal_(self.mask_token, std=MAE_INIT_STD)
        for module in self._decoder_modules():
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    @classmethod
    def from_backbone(cls, vit: VisionTransformer, *, window=None, pe_sigma: float = 0.5,
                      fixed_sincos_pe: bool = False, **decoder_cfg) -> "SubpixelMAE":
        """Wrap a timm ViT (``SPoTViT.from_timm(vit, window, pe_sigma)``) and add MAE's decoder (``**decoder_cfg``).

        ``fixed_sincos_pe=True`` is MAE's encoder PE for pre-training from scratch: the ViT's ``pos_embed`` is set to
        MAE's sin-cos table (zero prefix rows) before wrapping, and the SPoTViT's PE (fitted to it) is frozen.
        """
        if fixed_sincos_pe:
            if vit.pos_embed is None:
                raise ValueError("fixed_sincos_pe needs a ViT with a pos_embed")
            grid = tuple(vit.patch_embed.grid_size)
            table = sincos_pos_embed_2d(grid_positions(grid, 1), vit.embed_dim, grid)
            npt = 0 if vit.no_embed_class else vit.num_prefix_tokens
            with torch.no_grad():
                vit.pos_embed.zero_()
                vit.pos_embed[0, npt:].copy_(table.to(vit.pos_embed))
        mae = cls(SPoTViT.from_timm(vit, window=window, pe_sigma=pe_sigma), **decoder_cfg)
        if fixed_sincos_pe:
            for p in (mae.encoder.pos_embed.weight, mae.encoder.prefix_pos_embed):
                if p is not None:
                    p.requires_grad_(False)
        return mae

    @property
    def window(self) -> tuple[int, int]:
        return self.encoder.window

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer-wise lr decay groups: the encoder's (under ``encoder.``), MAE's ``encoder_norm`` with the final
        norm, and the decoder — unmatched — last, at the full lr like a head."""
        groups = self.encoder.group_matcher(coarse)

        def prefixed(pattern: str) -> str:
            return "|".join("^encoder\\." + alt.lstrip("^") for alt in pattern.split("|"))

        blocks = [(prefixed(p), g) for p, g in groups["blocks"]] + [(r"^encoder_norm", (99999,))]
        return dict(stem=prefixed(groups["stem"]), blocks=blocks)

    def no_weight_decay(self) -> set[str]:
        """The encoder's tokens and positional embeddings, and the mask token, are not weight-decayed."""
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()} | {"mask_token"}

    def grid_size(self, image_size=None) -> tuple[int, int]:
        """The patch grid the decoder's sin-cos embedding is defined on: the encoder's (else ``image_size``'s)."""
        size = self.encoder.image_size or image_size
        if size is None:
            raise ValueError("the encoder has no fixed image size; pass image_size")
        return grid_shape(size, self.encoder.patch_size)

    def split_positions(self, positions: torch.Tensor, batch_size: int, mask_ratio: float = 0.75,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image random split of m positions into (B, n_visible, 2) visible and (B, m − n_visible, 2) masked.

        ``n_visible = max(1, round((1 − mask_ratio)·m))`` (MAE keeps ``int(m·(1 − mask_ratio))``; the same for the
        usual m and ratios); each image gets its own uniform random permutation (MAE's ``argsort`` of uniform noise),
        drawn from ``generator`` (torch's global RNG without one).
        """
        if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, numbers.Real) or not 0 <= mask_ratio < 1:
            raise ValueError(f"mask_ratio must be a number in [0, 1), got {mask_ratio!r}")
        positions = _checks.positions_tensor(positions, batch_size=batch_size).expand(batch_size, -1, -1)
        m = positions.shape[1]
        num_visible = max(1, round((1 - mask_ratio) * m))
        if num_visible >= m:
            raise ValueError(f"mask_ratio={mask_ratio} of m={m} tokens leaves no masked token to predict "
                             f"({num_visible} visible); use more tokens or a larger mask_ratio")
        noise = torch.rand(batch_size, m, generator=generator, device=generator_device(generator))
        order = noise.argsort(dim=1).to(positions.device)
        index = order[..., None].expand(-1, -1, 2)
        shuffled = torch.gather(positions, 1, index)
        return shuffled[:, :num_visible], shuffled[:, num_visible:]

    def forward_encoder(self, images: torch.Tensor, visible_positions: torch.Tensor) -> torch.Tensor:
        """Visible windows → encoded tokens (B, prefix + n_visible, D): embed, ``norm_pre``, blocks, final norm."""
        enc = self.encoder
        x = enc.blocks(enc.norm_pre(enc.embed_tokens(images, visible_positions)))
        x = enc.norm(x)
        return self.encoder_norm(x) if self.encoder_norm is not None else x

    def forward_decoder(self, latent: torch.Tensor, visible_positions: torch.Tensor, masked_positions: torch.Tensor,
                        image_size) -> torch.Tensor:
        """Encoded tokens + mask tokens at the masked positions → predictions (B, n_masked, k·k·C).

        The decoder sequence is [prefix, visible, masked] tokens; the fixed sin-cos PE is added at the visible and
        masked positions (zero for the prefix tokens, as MAE's table's cls row). Attention does not depend on the
        order of tokens, so this equals MAE's "unshuffle to the original order".
        """
        x = self.decoder_embed(latent)
        B, npt = x.shape[0], self.encoder.num_prefix_tokens
        n_masked = masked_positions.shape[1]
        x = torch.cat([x, self.mask_token.to(x.dtype).expand(B, n_masked, -1)], dim=1)
        pe = sincos_pos_embed_2d(torch.cat([visible_positions, masked_positions], dim=1), x.shape[-1],
                                 self.grid_size(image_size))
        pe = torch.cat([pe.new_zeros(B, npt, pe.shape[-1]), pe], dim=1)
        x = x + pe.to(x.dtype)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x[:, -n_masked:]))  # per-token head: the masked tokens only

    def targets(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The windows at ``positions`` as (B, m, k·k·C) targets, (row, col, channel) order, no gradient.

        With ``norm_pix_loss`` each window is normalised by its own mean and (unbiased, as MAE's ``.var``) variance:
        ``(t − mean) / sqrt(var + 1e-6)``.
        """
        windows = extract_windows(images.detach(), positions.detach(), self.window, self.encoder.window_embed.geometry)
        target = windows.permute(0, 1, 3, 4, 2).flatten(2)  # (B, m, C, kh, kw) → (B, m, kh·kw·C), MAE's patchify
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + MAE_NORM_PIX_EPS) ** 0.5
        return target

    def forward(self, images: torch.Tensor, positions: torch.Tensor, mask_ratio: float = 0.75,
                generator: torch.Generator | None = None) -> MAEOutput:
        """MAE step: split ``positions`` (B, m, 2) or (m, 2), encode the visible windows, predict the masked ones.

        Returns :class:`MAEOutput`; ``loss`` is the mean over masked tokens of the per-token MSE (in the images'
        dtype or wider), and only masked windows enter it.
        """
        _checks.images_tensor(images, self.encoder.in_chans)
        B = images.shape[0]
        positions = _checks.positions_tensor(positions, batch_size=B).to(images.device)
        visible, masked = self.split_positions(positions, B, mask_ratio, generator)
        latent = self.forward_encoder(images, visible)
        pred = self.forward_decoder(latent, visible, masked, tuple(images.shape[-2:]))
        target = self.targets(images, masked)
        dtype = torch.promote_types(pred.dtype, target.dtype)
        loss = (pred.to(dtype) - target.to(dtype)).pow(2).mean(dim=-1).mean()
        return MAEOutput(loss, pred, target, visible, masked)

    def extra_repr(self) -> str:
        return f"window={self.window}, norm_pix_loss={self.norm_pix_loss}"
