"""SPoT models in timm's registry: ``import spot.weights`` registers ``spot_<parent>`` for the ViTs of the paper and for the
small embedded ViTs, so timm's own API builds them::

    import spot.weights, timm
    model = timm.create_model("spot_vit_base_patch16_224")                                  # random weights
    model = timm.create_model("spot_vit_base_patch16_224.augreg_in1k", pretrained=True)     # the parent's weights
    model = timm.create_model("spot_vit_base_patch16_224.augreg_in1k", pretrained=True,
                              pretrained_cfg_overlay=dict(file="model.safetensors"))         # … from a local file
    timm.list_models("spot_*"), timm.list_pretrained("spot_*")

Each ``spot_<parent>`` has the parent's pretrained tags and configs (``default_cfgs``, the same Hugging Face
files): the parent timm ``VisionTransformer`` is built and loaded by timm (its ``checkpoint_filter_fn`` included),
then wrapped by :meth:`SPoTViT.from_timm <spot.core.models.SPoTViT.from_timm>` — the kernelized positional embedding
solved from the parent's learned one, exactly as the paper's backbones are made (``model.pretrained_cfg`` is the
spot variant's, so ``timm.data.resolve_data_config`` gives the parent's normalisation). ``window=`` and
``pe_sigma=`` go to the wrapper, every other keyword to timm. The embedded ViTs (``spot_vit_nano_patch8`` …) carry
the architecture of :data:`spot.weights.backbones.BACKBONES` and have no hub weights: load one trained here with
``pretrained=True, pretrained_cfg_overlay=dict(file=PATH)`` (a ``spot train`` grid-ViT checkpoint). A retrofitted
SPoT checkpoint is a whole SPoT model, not a parent: load it with :func:`spot.load_trained`.

Without network, ``pretrained=True`` fails at once with :class:`~spot.weights.backbones.MissingWeightsError` naming the file to
download (see :func:`spot.weights.backbones.create_timm`).
"""
from __future__ import annotations

import timm
from timm.models import generate_default_cfgs, register_model

from .backbones import BACKBONES, create_timm
from ..core.models import SPoTViT

__all__ = ["PARENTS", "SPOT_MODELS"]

# parent timm architectures registered with all their pretrained tags (DeiT: the pruning experiments' backbones)
PARENTS = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224",
           "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224")
EMBEDDED = ("vit_nano_patch8", "vit_micro_patch8", "vit_mini_patch8")  # keys of spot.weights.backbones.BACKBONES


def _parent_cfgs(parent: str) -> dict:
    """The parent's pretrained configs under ``spot_<parent>.<tag>``, in the parent's own order: timm makes the first
    tag registered an architecture's default, so ``spot_<parent>`` defaults to the parent's default tag (an
    alphabetical order would give ``spot_vit_tiny_patch16_224`` the 21 843-class ``augreg_in21k``). The configs are
    the parent's as they are (timm loads the parent's weights with them); the built model names its own first conv
    (:class:`~spot.core.models.SPoTViT`)."""
    cfgs = {}
    for full, cfg in timm.models.get_arch_pretrained_cfgs(parent).items():
        tag = full.split(".", 1)[1] if "." in full else ""
        cfgs[f"spot_{parent}.{tag}" if tag else f"spot_{parent}"] = cfg.to_dict()
    return cfgs


def _embedded_cfg(key: str) -> dict:
    kwargs = BACKBONES[key].kwargs
    size = kwargs["img_size"]
    return dict(url="", num_classes=kwargs["num_classes"], input_size=(kwargs["in_chans"], size, size),
                mean=(0.5,) * kwargs["in_chans"], std=(0.5,) * kwargs["in_chans"], interpolation="bilinear",
                crop_pct=1.0, first_conv="patch_embed.proj", classifier="head", license="mit")


default_cfgs = generate_default_cfgs({**{k: v for p in PARENTS for k, v in _parent_cfgs(p).items()},
                                      **{f"spot_{key}": _embedded_cfg(key) for key in EMBEDDED}})


def _entrypoint(name: str, parent: str, parent_kwargs: dict):
    def create(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None, window=None,
               pe_sigma: float = 0.5, cache_dir=None, **kwargs) -> SPoTViT:
        tag = pretrained_cfg if isinstance(pretrained_cfg, str) else None
        cfg = pretrained_cfg
        if pretrained_cfg is None or tag is not None:
            try:
                cfg = timm.models.get_pretrained_cfg(f"{name}.{tag}" if tag else name, allow_unregistered=False)
            except RuntimeError as err:  # timm's "Invalid pretrained tag", with the accepted ones
                raise RuntimeError(f"{err} Accepted: {', '.join(timm.list_pretrained(f'{name}.*')) or 'no tags'}") \
                    from None
        label = f"{name}.{cfg.tag}" if getattr(cfg, "tag", None) else name
        vit = create_timm(parent, pretrained=pretrained, label=label, pretrained_cfg=cfg,
                          pretrained_cfg_overlay=pretrained_cfg_overlay, cache_dir=cache_dir,
                          **{**parent_kwargs, **kwargs})
        return SPoTViT.from_timm(vit, window=window, pe_sigma=pe_sigma)  # keeps vit's pretrained_cfg (ours)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"SPoT on timm's {parent}{' with ' + str(parent_kwargs) if parent_kwargs else ''}."
    return register_model(create)


SPOT_MODELS = {f"spot_{p}": _entrypoint(f"spot_{p}", p, {}) for p in PARENTS}
SPOT_MODELS.update({f"spot_{key}": _entrypoint(f"spot_{key}", BACKBONES[key].timm_name, BACKBONES[key].kwargs)
                    for key in EMBEDDED})
