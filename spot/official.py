"""Load the authors' released SPoT checkpoints (``spot_1k_b16.pth``, ``spot_21k_b16.pth``, ``spot_mae_b16.pth``).

``load_official(path)`` returns a :class:`~spot.models.SPoTViT` that computes the release's outputs for the same
images and positions. The encoder is a plain timm ``VisionTransformer`` (LayerScale, qkv bias, class token, no
``pos_embed``; CLS head for the supervised models, ``global_pool="avg"`` + ``fc_norm`` for MAE) whose keys map one to
one onto the release's; only the tokenizer differs from ``spot``'s, and it is selected by options, not by other
model code:

* windows: ``WindowEmbedding(geometry="release")`` (:func:`~spot.tokenizer.extract_windows`), whose projection is the
  first 3·k² input columns of the release's ``embedder.emb`` (and its bias);
* positions: :class:`~spot.embedding.ReleaseHeatmapEmbedding`, the last k² columns of ``embedder.emb``.

The file is read with ``torch.load(weights_only=True)`` (no arbitrary unpickling); the weights are the dict itself or
under ``"model"``; a ``tokenizer.logprior`` entry is ignored. Depth, width, MLP width, window size and classes are read
off the shapes (so the three ViT-B/16 files and smaller files of the same layout load); the number of heads is not in
the weights and defaults to ``width // 64`` (12 for ViT-B).
"""
from __future__ import annotations

import math
import os
import re

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer

from .embedding import ReleaseHeatmapEmbedding
from .factory import read_state_dict
from .models import SPoTViT
from .priors import make_prior

__all__ = ["load_official", "convert_official_state_dict", "build_official_vit", "IGNORED_KEYS", "RELEASE_INPUT"]

IGNORED_KEYS = ("tokenizer.logprior",)
# the inputs the released models were trained and validated on (the release's transforms, all three models):
# ImageNet mean/std, short side resized bicubically to 256, centre crop 224 — recorded as the model's
# ``pretrained_cfg``, which evaluation, the oracle and transfer read for their normalisation
RELEASE_INPUT = dict(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875, crop_mode="center",
                     mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)

# release block key suffix → timm block key suffix
_BLOCK_KEYS = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias", "ls1.lambda_": "ls1.gamma", "ls2.lambda_": "ls2.gamma",
    "att.qkv.weight": "attn.qkv.weight", "att.qkv.bias": "attn.qkv.bias",
    "att.proj.weight": "attn.proj.weight", "att.proj.bias": "attn.proj.bias",
    "mlp.L1.weight": "mlp.fc1.weight", "mlp.L1.bias": "mlp.fc1.bias",
    "mlp.L2.weight": "mlp.fc2.weight", "mlp.L2.bias": "mlp.fc2.bias",
}
_TOKENIZER_KEYS = ("tokenizer._n_sigma", "embedder.cls_token", "embedder.emb.weight", "embedder.emb.bias")


def _expected_keys(depth: int, mae: bool) -> list[str]:
    keys = list(_TOKENIZER_KEYS)
    keys += [f"blocks.{i}.{k}" for i in range(depth) for k in _BLOCK_KEYS]
    keys += ["fc_norm.weight", "fc_norm.bias"] if mae else ["norm.weight", "norm.bias"]
    return keys + ["head.weight", "head.bias"]


def _read(path) -> dict:
    return {k: v for k, v in read_state_dict(path).items() if k not in IGNORED_KEYS}


def _config(state: dict, num_heads: int | None) -> dict:
    """Architecture read off the release's keys and shapes; ValueError listing missing/unexpected keys."""
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    mae = "fc_norm.weight" in state or "fc_norm.bias" in state
    expected = _expected_keys(depth, mae)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in set(expected)]
    if missing or unexpected:
        raise ValueError(f"not a SPoT release checkpoint (ViT, {depth} blocks, {'MAE' if mae else 'CLS'} head): "
                         f"missing keys {missing}, unexpected keys {unexpected}")
    D, n_in = state["embedder.emb.weight"].shape
    k = math.isqrt(n_in // 4)
    if 4 * k * k != n_in:
        raise ValueError(f"embedder.emb.weight has {n_in} inputs, not 4·k·k (3 colour + 1 position channel)")
    heads = num_heads if num_heads is not None else max(1, D // 64)
    if D % heads:
        raise ValueError(f"width {D} is not divisible by num_heads={heads}; pass num_heads=")
    return dict(depth=depth, mae=mae, embed_dim=D, window=k, num_heads=heads,
                mlp_ratio=state["blocks.0.mlp.L1.weight"].shape[0] / D if depth else 4.0,
                num_classes=state["head.weight"].shape[0])


def build_official_vit(depth=12, embed_dim=768, num_heads=12, mlp_ratio=4.0, window=16, num_classes=1000,
                       mae=False, img_size=224) -> VisionTransformer:
    """The timm encoder of a release checkpoint (random weights): LayerScale, qkv bias, CLS token, no pos_embed."""
    img_size = window * max(1, round(img_size / window))  # timm's patch grid must tile the nominal input size
    return VisionTransformer(
        img_size=img_size, patch_size=window, in_chans=3, num_classes=num_classes, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, init_values=1e-5, class_token=True,
        pos_embed="none", global_pool="avg" if mae else "token", fc_norm=mae)


def convert_official_state_dict(state: dict, window: int) -> tuple[dict, dict]:
    """Release keys → (timm ``VisionTransformer`` state dict, ``ReleaseHeatmapEmbedding`` state dict)."""
    emb_w = state["embedder.emb.weight"]
    D, k2 = emb_w.shape[0], window * window
    vit = {
        "cls_token": state["embedder.cls_token"],
        "patch_embed.proj.weight": emb_w[:, :3 * k2].reshape(D, 3, window, window),
        "patch_embed.proj.bias": state["embedder.emb.bias"],
        "head.weight": state["head.weight"], "head.bias": state["head.bias"],
    }
    for key, value in state.items():
        if m := re.match(r"blocks\.(\d+)\.(.+)$", key):
            vit[f"blocks.{m.group(1)}.{_BLOCK_KEYS[m.group(2)]}"] = value
        elif key.startswith(("norm.", "fc_norm.")):
            vit[key] = value
    pe = {"weight": emb_w[:, 3 * k2:].t(), "raw_n_sigma": state["tokenizer._n_sigma"].reshape(1)}
    return vit, pe


def load_official(path: str | os.PathLike, prior=None, num_tokens: int | None = None, *, num_heads: int | None = None,
                  **prior_settings) -> SPoTViT:
    """A :class:`SPoTViT` (eval mode) with the weights of a release checkpoint, computing the release's outputs.

    Args:
        path: ``spot_1k_b16.pth``, ``spot_21k_b16.pth`` or ``spot_mae_b16.pth`` (or a file of the same key layout).
        prior, num_tokens: the default sampling of ``model(images)`` (stored as ``model.default_prior`` /
            ``model.default_num_tokens``), like the release's ``load_trained_model(name, sampler, ksize, n_features)``;
            the release's prior names are accepted (uniform, gauss, sobol, grid_uniform, grid_center, edge) and mapped
            to ours with the release's settings (``spot.priors.RELEASE_PRIOR_NAMES``). Without them ``model(images)``
            uses the full patch grid. Explicit ``positions`` or ``prior=``/``num_tokens=`` at call time override them.
        num_heads: attention heads (not stored in the file); default width // 64.
        **prior_settings: settings of the prior (e.g. ``scale=0.3`` for grid_center).

    The model's ``pretrained_cfg`` records the release's input normalisation (ImageNet mean/std, :data:`RELEASE_INPUT`).

    Raises:
        ValueError listing the missing and unexpected keys when the file is not in the release's layout.
    """
    state = _read(path)
    cfg = _config(state, num_heads)
    vit = build_official_vit(cfg["depth"], cfg["embed_dim"], cfg["num_heads"], cfg["mlp_ratio"], cfg["window"],
                             cfg["num_classes"], cfg["mae"])
    vit_state, pe_state = convert_official_state_dict(state, cfg["window"])
    vit.load_state_dict(vit_state, strict=True)
    vit.pretrained_cfg = dict(RELEASE_INPUT, architecture="spot_official", num_classes=cfg["num_classes"],
                              file=str(path))
    model = SPoTViT.from_timm(vit, geometry="release")
    pe = ReleaseHeatmapEmbedding(cfg["embed_dim"], cfg["window"])
    pe.load_state_dict(pe_state, strict=True)
    model.pos_embed = pe
    if prior is not None:
        model.default_prior = make_prior(prior, **prior_settings)
    elif prior_settings:
        raise ValueError(f"prior settings {sorted(prior_settings)} given without a prior")
    model.default_num_tokens = num_tokens
    return model.eval()
