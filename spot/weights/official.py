"""Load the authors' released SPoT checkpoints (``spot_1k_b16.pth``, ``spot_21k_b16.pth``, ``spot_mae_b16.pth``).

``load_official(path)`` returns a :class:`~spot.core.models.SPoTViT` that computes the release's outputs for the same
images and positions. The encoder is a plain timm ``VisionTransformer`` (LayerScale, qkv bias, class token, no
``pos_embed``; CLS head for the supervised models, ``global_pool="avg"`` + ``fc_norm`` for MAE) whose keys map one to
one onto the release's; only the tokenizer differs from ``spot``'s, and it is selected by options, not by other
model code:

* windows: ``WindowEmbedding(geometry="release")`` (:func:`~spot.core.tokenizer.extract_windows`), whose projection is the
  first 3·k² input columns of the release's ``embedder.emb`` (and its bias);
* positions: :class:`~spot.core.embedding.ReleaseHeatmapEmbedding`, the last k² columns of ``embedder.emb``.

The key layout and its conversion are in :mod:`spot.weights.formats`. The file is read with ``torch.load(weights_only=True)``
(no arbitrary unpickling: a file holding other Python objects is refused, never unpickled); the weights are the dict
itself or under ``"model"``; a ``tokenizer.logprior`` entry is ignored. Depth, width, MLP width, window size and
classes are read off the shapes (so the three ViT-B/16 files and smaller files of the same layout load); the number
of heads is not in the weights and defaults to ``width // 64`` (12 for ViT-B).
"""
from __future__ import annotations

import os

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer

from ..core.embedding import ReleaseHeatmapEmbedding
from .formats import IGNORED_KEYS, convert_release_state_dict, read_release_state_dict, release_config
from ..core.models import SPoTViT
from ..core.placement import make_prior

__all__ = ["load_official", "build_official_vit", "IGNORED_KEYS", "RELEASE_INPUT"]

# the inputs the released models were trained and validated on (the release's transforms, all three models):
# ImageNet mean/std, short side resized bicubically to 256, centre crop 224 — recorded as the model's
# ``pretrained_cfg``, which evaluation, the oracle and transfer read for their normalisation
RELEASE_INPUT = dict(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875, crop_mode="center",
                     mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)

def build_official_vit(depth=12, embed_dim=768, num_heads=12, mlp_ratio=4.0, window=16, num_classes=1000,
                       mae=False, img_size=224) -> VisionTransformer:
    """The timm encoder of a release checkpoint (random weights): LayerScale, qkv bias, CLS token, no pos_embed."""
    img_size = window * max(1, round(img_size / window))  # timm's patch grid must tile the nominal input size
    return VisionTransformer(
        img_size=img_size, patch_size=window, in_chans=3, num_classes=num_classes, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, init_values=1e-5, class_token=True,
        pos_embed="none", global_pool="avg" if mae else "token", fc_norm=mae)


def load_official(path: str | os.PathLike, prior=None, num_tokens: int | None = None, *, num_heads: int | None = None,
                  **prior_settings) -> SPoTViT:
    """A :class:`SPoTViT` (eval mode) with the weights of a release checkpoint, computing the release's outputs.

    Args:
        path: ``spot_1k_b16.pth``, ``spot_21k_b16.pth`` or ``spot_mae_b16.pth`` (or a file of the same key layout).
        prior, num_tokens: the default sampling of ``model(images)`` (stored as ``model.default_prior`` /
            ``model.default_num_tokens``), like the release's ``load_trained_model(name, sampler, ksize, n_features)``;
            the release's prior names are accepted (uniform, gauss, sobol, grid_uniform, grid_center, edge) and mapped
            to ours with the release's settings (``spot.core.placement.RELEASE_NAMES``). Without them ``model(images)``
            uses the full patch grid. Explicit ``positions`` or ``prior=``/``num_tokens=`` at call time override them.
        num_heads: attention heads (not stored in the file); default width // 64.
        **prior_settings: settings of the prior (e.g. ``scale=0.3`` for grid_center).

    The model's ``pretrained_cfg`` records the release's input normalisation (ImageNet mean/std, :data:`RELEASE_INPUT`).

    Raises:
        ValueError listing the missing and unexpected keys when the file is not in the release's layout.
    """
    state = read_release_state_dict(path)
    cfg = release_config(state, num_heads)
    vit = build_official_vit(cfg["depth"], cfg["embed_dim"], cfg["num_heads"], cfg["mlp_ratio"], cfg["window"],
                             cfg["num_classes"], cfg["mae"])
    vit_state, pe_state = convert_release_state_dict(state, cfg["window"])
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
