"""SPoT: Subpixel Placement of Tokens in Vision Transformers.

The data path, one module per stage::

    images ─► positions (spot.placement: priors, grid placements, searches; spot.positions) ─► tokens (spot.tokenizer + spot.embedding)
           ─► encoder (spot.models, timm blocks) ─► logits / pooled features

Quick start::

    import spot, timm
    vit = timm.create_model("vit_base_patch16_224", pretrained=...)
    model = spot.SPoTViT.from_timm(vit)                      # shares vit's blocks, norms and head
    logits = model(images, spot.grid_positions((224, 224), 16))   # == vit(images)
    logits = model(images, prior="center", num_tokens=25, generator=torch.Generator().manual_seed(0))
    model = timm.create_model("spot_vit_base_patch16_224.augreg_in1k", pretrained=True)   # timm's registry
    pruned = spot.prune(model, method="spot_ad", keep_ratio=0.7)   # token pruning between blocks (spot.pruning)
"""
from .checkpoints import Checkpoint, load_trained, open_checkpoint
from .embedding import KernelizedPositionalEmbedding
from .factory import BACKBONES, MissingWeightsError, create_backbone, create_model
from .mae import SubpixelMAE, sincos_pos_embed_2d
from .models import PatchDropoutViT, SPoTViT
from .official import load_official
from .oracle import SpotOn, oracle_search  # registers the SPoT-ON placements
from .positions import grid_cell_index, grid_positions, grid_shape, snap_to_grid, to_pixels
from .pruning import PRUNING_METHODS, PrunedViT, prune
from .placement import (PLACEMENTS, PRIORS, ImageBatch, ImageStreams, Placement, Prior, isotropic_layout, make_placement,
                        make_prior, place, random_patch_subset, sample_positions, transport_layout)
from .tokenizer import WindowEmbedding, extract_windows
from . import timm_models  # noqa: E402,F401 — registers the spot_* models in timm's registry

from ._version import __version__  # noqa: E402,F401

__all__ = [
    "Checkpoint", "load_trained", "open_checkpoint", "SpotOn", "oracle_search", "PLACEMENTS", "ImageBatch", "ImageStreams", "Placement", "make_placement", "place",
    "BACKBONES", "KernelizedPositionalEmbedding", "MissingWeightsError", "PRIORS", "PatchDropoutViT", "Prior",
    "SPoTViT", "SubpixelMAE", "WindowEmbedding", "create_backbone", "create_model", "extract_windows", "grid_cell_index",
    "grid_positions", "grid_shape", "isotropic_layout", "load_official", "make_prior", "random_patch_subset", "sample_positions",
    "transport_layout", "sincos_pos_embed_2d", "snap_to_grid", "to_pixels", "plot_positions", "prune", "PrunedViT", "PRUNING_METHODS",
]


def plot_positions(*args, **kwargs):
    """Draw positions/windows (and optionally trajectories) over an image; see :func:`spot.plotting.plot_positions`."""
    from .plotting import plot_positions as _plot  # matplotlib is imported only when plotting

    return _plot(*args, **kwargs)
