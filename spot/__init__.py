"""SPoT: Subpixel Placement of Tokens in Vision Transformers.

The data path, one module per stage::

    images ─► positions (spot.priors / spot.positions) ─► tokens (spot.tokenizer + spot.embedding)
           ─► encoder (spot.models, timm blocks) ─► logits / pooled features

Quick start::

    import spot, timm
    vit = timm.create_model("vit_base_patch16_224", pretrained=...)
    model = spot.SPoTViT.from_timm(vit)                      # shares vit's blocks, norms and head
    logits = model(images, spot.grid_positions((224, 224), 16))   # == vit(images)
    logits = model(images, prior="center", num_tokens=25, generator=torch.Generator().manual_seed(0))
    model = timm.create_model("spot_vit_base_patch16_224.augreg_in1k", pretrained=True)   # timm's registry
"""
from .embedding import KernelizedPositionalEmbedding
from .factory import BACKBONES, MissingWeightsError, create_backbone, create_model
from .mae import SubpixelMAE, sincos_pos_embed_2d
from .models import PatchDropoutViT, SPoTViT, random_patch_subset
from .official import load_official
from .positions import grid_cell_index, grid_positions, grid_shape, snap_to_grid, to_pixels
from .priors import PRIORS, Prior, isotropic_layout, make_prior, sample_positions
from .tokenizer import WindowEmbedding, extract_windows
from . import timm_models  # noqa: E402,F401 — registers the spot_* models in timm's registry

__version__ = "0.1.0"

__all__ = [
    "BACKBONES", "KernelizedPositionalEmbedding", "MissingWeightsError", "PRIORS", "PatchDropoutViT", "Prior",
    "SPoTViT", "SubpixelMAE", "WindowEmbedding", "create_backbone", "create_model", "extract_windows", "grid_cell_index",
    "grid_positions", "grid_shape", "isotropic_layout", "load_official", "make_prior", "random_patch_subset", "sample_positions",
    "sincos_pos_embed_2d", "snap_to_grid", "to_pixels", "plot_positions",
]


def plot_positions(*args, **kwargs):
    """Draw positions/windows (and optionally trajectories) over an image; see :func:`spot.plotting.plot_positions`."""
    from .plotting import plot_positions as _plot  # matplotlib is imported only when plotting

    return _plot(*args, **kwargs)
