"""torch.hub entry points of spot (``torch.hub.load(repo_or_dir, name, …)``; ``source="local"`` for a clone).

    model = torch.hub.load("path/to/spot", "spot_official", source="local", path="spot_1k_b16.pth",
                           prior="grid_center", num_tokens=25)
    model = torch.hub.load("path/to/spot", "spot_vit_base_patch16_224", source="local", pretrained=False)

``spot_official`` loads one of the authors' released checkpoints (``spot_1k_b16.pth``, ``spot_21k_b16.pth``,
``spot_mae_b16.pth``; distributed by hand, read with ``torch.load(weights_only=True)``) as a
:class:`spot.SPoTViT` that computes the release's outputs (:func:`spot.load_official`). Every ``spot_*`` model of
timm's registry (:mod:`spot.weights.timm_models`) is an entry point too.
"""
dependencies = ["torch", "timm"]

import timm as _timm  # noqa: E402

import spot as _spot  # noqa: E402
from spot.weights import timm_models as _timm_models  # noqa: E402  (registers the spot_* models in timm)


def spot_official(path, prior=None, num_tokens=None, num_heads=None, **prior_settings):
    """The authors' released SPoT checkpoint at ``path`` (see :func:`spot.load_official` for the arguments)."""
    return _spot.load_official(path, prior=prior, num_tokens=num_tokens, num_heads=num_heads, **prior_settings)


def _timm_entry(name):
    def entry(pretrained=False, **kwargs):
        return _timm.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"``timm.create_model({name!r}, …)``: {_timm.models.model_entrypoint(name).__doc__}"
    return entry


globals().update({name: _timm_entry(name) for name in _timm_models.SPOT_MODELS})
