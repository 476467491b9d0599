"""ImageNet image transforms for evaluation and training, built with timm rather than by hand.

Both functions return torchvision ``Compose`` objects from :func:`timm.data.create_transform`, so that the
pre-processing is exactly timm's (the same code that produced the pretrained checkpoints' published accuracies).

* :func:`eval_transform` — the paper's evaluation: bicubic resize of the short side to ``img_size / crop_pct``
  (256 at 224 with ``crop_pct = 0.875``), centre crop to ``img_size``, then the model's *own* normalisation,
  read from timm's ``pretrained_cfg`` (e.g. ``vit_base_patch16_224.augreg_in1k`` uses mean = std = 0.5; MAE
  checkpoints use the ImageNet mean / std).
* :func:`train_transform` — Table 7 of the paper: RandomResizedCrop + RandAugment + horizontal flip. Mixup and
  CutMix act on batches and live in the training code, not here.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from timm.data import create_transform, resolve_data_config

from . import CROP_MODES

__all__ = ["eval_transform", "train_transform", "pretrained_cfg_of", "CROP_MODES"]


def pretrained_cfg_of(pretrained_cfg_or_model: Any) -> dict:
    """The timm ``pretrained_cfg`` dict of a timm model, a ``SPoTViT`` (it keeps its backbone's
    ``pretrained_cfg`` as an attribute), a dict (returned as a copy) or ``None`` (an empty dict)."""
    if pretrained_cfg_or_model is None:
        return {}
    if isinstance(pretrained_cfg_or_model, Mapping):
        return dict(pretrained_cfg_or_model)
    cfg = getattr(pretrained_cfg_or_model, "pretrained_cfg", None)
    if cfg is None:
        raise ValueError(
            f"pretrained_cfg_or_model must be a timm model, a SPoTViT, a pretrained_cfg dict or None, "
            f"got {type(pretrained_cfg_or_model).__name__} without a `pretrained_cfg` attribute; "
            f"pass mean= and std= explicitly instead"
        )
    if not isinstance(cfg, Mapping):  # timm's PretrainedCfg dataclass
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else vars(cfg)
    return dict(cfg)


def _check_size(img_size: int) -> int:
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1:
        raise ValueError(f"img_size must be an int ≥ 1, got {img_size!r}")
    return img_size


def eval_transform(
    pretrained_cfg_or_model: Any = None,
    *,
    img_size: int = 224,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_mode: str = "center",
):
    """The paper's evaluation transform (PIL image → normalised ``(3, img_size, img_size)`` tensor).

    Resize the short side to ``floor(img_size / crop_pct)`` with ``interpolation``, centre-crop ``img_size``,
    convert to a tensor and normalise. Size, crop and interpolation are the paper's protocol and are taken from
    the arguments (not from the model's cfg, which for some checkpoints says e.g. crop 0.9); the normalisation is
    the model's own: ``mean`` / ``std`` when given, otherwise its ``pretrained_cfg`` mean / std, otherwise timm's
    default (the ImageNet mean / std).

    ``crop_mode``: ``center`` (the short side to ``img_size / crop_pct``, the paper's protocol) or ``squash`` (the
    whole image resized to ``img_size / crop_pct`` square, aspect ratio not kept, then the centre crop).

    ``pretrained_cfg_or_model``: a timm model, a ``SPoTViT``, a ``pretrained_cfg`` dict, or ``None``.
    """
    _check_size(img_size)
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}")
    cfg = pretrained_cfg_of(pretrained_cfg_or_model)
    args = {"input_size": (3, img_size, img_size), "crop_pct": crop_pct, "interpolation": interpolation,
            "mean": tuple(mean) if mean is not None else None, "std": tuple(std) if std is not None else None}
    data_config = resolve_data_config(args, pretrained_cfg=cfg)
    data_config["crop_mode"] = crop_mode  # the protocol's, not the checkpoint's cfg
    return create_transform(**data_config, is_training=False)


def train_transform(
    *,
    img_size: int = 224,
    mean: Sequence[float],
    std: Sequence[float],
    randaug: str | None = "rand-m15-mstd0.5-inc1",
    scale: tuple[float, float] = (0.08, 1.0),
    interpolation: str = "bicubic",
    hflip: float = 0.5,
    random_erasing: float = 0.0,
):
    """The paper's training augmentation (Table 7): RandomResizedCrop(``scale``) → horizontal flip (probability
    ``hflip``) → RandAugment → tensor → normalise with ``mean`` / ``std`` (pass the model's own; see
    :func:`eval_transform`).

    ``randaug`` is a timm RandAugment spec. The paper writes "randaug(15, .5)"; that is ambiguous (it could be
    magnitude 15 with magnitude-std 0.5, or 15 ops at probability 0.5). We read it as magnitude 15, magnitude
    standard deviation 0.5, as in the DeiT-style timm spec ``rand-m15-mstd0.5-inc1``. ``randaug=None`` gives the
    RandomResizedCrop + flip only transform (the MAE retrofitting row). Colour jitter is off (the paper lists
    none); ``random_erasing`` is timm's RandomErasing probability (per-pixel noise, one box; MAE's fine-tune uses
    0.25, Table 7 lists none). Mixup / CutMix are batch-level and live in the training code.
    """
    _check_size(img_size)
    return create_transform(
        input_size=img_size,
        is_training=True,
        scale=tuple(scale),
        hflip=hflip,
        vflip=0.0,
        color_jitter=None,
        auto_augment=randaug,
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
        re_prob=float(random_erasing),
        re_mode="pixel",
        re_count=1,
    )
