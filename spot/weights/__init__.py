"""Weights: the backbones registry (:mod:`.backbones`), checkpoint formats (:mod:`.formats`), trained checkpoints
and their records (:mod:`.checkpoints`), the authors' released files (:mod:`.official`) and the ``spot_*`` models of
timm's registry (:mod:`.timm_models`). Importing this package registers those models in timm, so ``import
spot.weights`` is what makes ``timm.create_model("spot_vit_base_patch16_224")`` known."""
from . import timm_models  # noqa: F401  (registers the spot_* models in timm's registry)
