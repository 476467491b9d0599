"""Token pruning between ViT blocks: SPOT-AD (the SPOT-AD paper) and its baselines, on timm ViTs and SPoT models.

::

    import spot
    pruned = spot.prune(vit_or_spot_model, method="spot_ad", keep_ratio=0.7)   # or evit, dynamicvit, heuristic, tome
    logits = pruned(images)              # a SPoT model also takes positions / prior= + num_tokens=
    pruned.token_counts                  # sequence length entering each block of that forward pass

One module per part: :mod:`.encoder` (the token state and one timm block run with hooks), :mod:`.statistics`
(SPOT-AD's attention descriptors), :mod:`.predictor` (the learned keep predictor), :mod:`.methods` (the registry
``PRUNING_METHODS``), :mod:`.model` (:class:`PrunedViT`, :func:`prune`), :mod:`.loss` (the SPOT-AD paper's Eq. 15),
:mod:`.experiment` (``spot pruning``), :mod:`.catalog` (the methods' names and settings, without torch: what the
workflow checks configs against). The names below load their module on first use, so that importing
``spot.core.pruning.catalog`` does not import torch.
"""
from __future__ import annotations

from ..._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".encoder": ("TokenState", "attention", "run_block", "softmax_with_policy"),
    ".methods": ("PRUNING_METHODS", "DynamicViT", "EViT", "Heuristic", "PruningMethod", "ScoredPruning", "SpotAD",
                 "ToMe", "default_stages", "keep_counts", "matching_r", "method_settings", "register"),
    ".model": ("PrunedViT", "prune"),
    ".statistics": ("FEATURES", "RunningMoments", "attention_statistics"),
})
