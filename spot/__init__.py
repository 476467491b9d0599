"""SPoT: Subpixel Placement of Tokens in Vision Transformers.

The data path, one module per stage::

    images ─► positions (spot.core.placement: priors, grid placements, searches; spot.core.positions) ─► tokens (spot.core.tokenizer + spot.core.embedding)
           ─► encoder (spot.core.models, timm blocks) ─► logits / pooled features

Quick start::

    import spot, timm
    vit = timm.create_model("vit_base_patch16_224", pretrained=...)
    model = spot.SPoTViT.from_timm(vit)                      # shares vit's blocks, norms and head
    logits = model(images, spot.grid_positions((224, 224), 16))   # == vit(images)
    logits = model(images, prior="center", num_tokens=25, generator=torch.Generator().manual_seed(0))
    model = timm.create_model("spot_vit_base_patch16_224.augreg_in1k", pretrained=True)   # timm's registry
    pruned = spot.prune(model, method="spot_ad", keep_ratio=0.7)   # token pruning between blocks (spot.core.pruning)
"""
from __future__ import annotations

from ._lazy import lazy_exports
from ._version import __version__

# ``spot.<name>`` imports its module on first use, so that ``import spot`` (and the workflow's ``import spot.config``)
# does not import torch. The first such use also imports the modules that fill the registries a user reaches through
# ``spot.``: SPoT-ON's searched placements (PLACEMENTS) and the spot_* models (timm's registry).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "spot.core.positions": ("grid_cell_index", "grid_positions", "grid_shape", "snap_to_grid", "to_pixels"),
    "spot.core.placement": ("PLACEMENTS", "PRIORS", "ImageBatch", "ImageStreams", "Placement", "Prior",
                            "isotropic_layout", "make_placement", "make_prior", "place", "random_patch_subset",
                            "sample_positions", "transport_layout"),
    "spot.core.tokenizer": ("WindowEmbedding", "extract_windows"),
    "spot.core.embedding": ("KernelizedPositionalEmbedding",),
    "spot.core.models": ("PatchDropoutViT", "SPoTViT"),
    "spot.core.mae": ("SubpixelMAE", "sincos_pos_embed_2d"),
    "spot.core.pruning": ("PRUNING_METHODS", "PrunedViT", "prune"),
    "spot.weights.backbones": ("BACKBONES", "MissingWeightsError", "create_backbone", "create_model"),
    "spot.weights.checkpoints": ("Checkpoint", "load_trained", "open_checkpoint"),
    "spot.weights.official": ("load_official",),
    "spot.experiments.oracle.search": ("SpotOn", "oracle_search"),
    "spot.paper.plotting": ("plot_positions",),
}, first=("spot.experiments.oracle.search", "spot.weights"))
