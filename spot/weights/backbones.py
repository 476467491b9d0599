"""Backbones by name: the paper's three ViT-B/16 models (timm names) and small ViTs for the embedded preset.

``create_model(name)`` returns a :class:`~spot.core.models.SPoTViT` (``wrap=False``: the plain timm ViT). Weights come
from a local file (``checkpoint=``) or, with ``pretrained=True``, from the Hugging Face hub / its local cache. When
the hub cannot be reached the lookup is made offline at once, so a missing file fails within a second with a
message naming what to provide, instead of timm's ~45 s of retries.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from .formats import MissingWeightsError, read_state_dict
from ..core.models import SPoTViT

__all__ = ["Backbone", "WeightSource", "BACKBONES", "MissingWeightsError", "create_backbone", "create_model",
           "create_timm", "hub_reachable"]


@dataclass(frozen=True)
class WeightSource:
    """Where a backbone's weights are downloaded from (``spot checkpoints fetch``)."""

    url: str  # where a person downloads them
    filename: str  # the file's name at the source (looked for in the target folder when offline)
    hf_repo: str | None = None  # Hugging Face repository (downloaded with huggingface_hub when online)
    sha256: str | None = None  # pinned checksum of the source file, where known (else recorded at the first fetch)
    revision: str | None = None  # pinned hub commit (hf_repo), where known
    description: str = ""


@dataclass(frozen=True)
class Backbone:
    """A named backbone — the one record of it: a timm architecture (+ pretrained tag), the keyword config that
    differs from it, and where its weights come from."""

    timm_name: str
    label: str
    kwargs: dict = field(default_factory=dict)
    description: str = ""
    source: WeightSource | None = None


_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
_MAE_HEAD = dict(global_pool="avg", fc_norm=True, num_classes=1000)

BACKBONES: dict[str, Backbone] = {
    # the paper's three backbones (Section 4, Table 7)
    "cls_in1k": Backbone(
        "vit_base_patch16_224.augreg_in1k", "CLS-IN1k",
        description="supervised ViT-B/16, ImageNet-1k (Steiner et al. 2021)",
        source=WeightSource(_HF.format("vit_base_patch16_224.augreg_in1k"), "model.safetensors",
                            hf_repo="timm/vit_base_patch16_224.augreg_in1k",
                            description="timm vit_base_patch16_224.augreg_in1k (CLS-IN1k)")),
    "cls_in21k": Backbone(
        "vit_base_patch16_224.augreg2_in21k_ft_in1k", "CLS-IN21k",
        description="supervised ViT-B/16, ImageNet-21k, fine-tuned on ImageNet-1k",
        source=WeightSource(_HF.format("vit_base_patch16_224.augreg2_in21k_ft_in1k"), "model.safetensors",
                            hf_repo="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
                            description="timm vit_base_patch16_224.augreg2_in21k_ft_in1k (CLS-IN21k)")),
    "mae_in1k": Backbone(
        "vit_base_patch16_224.mae", "MAE-IN1k", kwargs=_MAE_HEAD,
        description="MAE ViT-B/16 encoder with MAE's fine-tuning head (global pool + fc_norm); the hub holds the "
                    "pre-trained encoder only, fine-tuned weights come from a file",
        source=WeightSource("https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base_full.pth",
                            "mae_pretrain_vit_base_full.pth",
                            description="official MAE ViT-B/16 pre-trained encoder + decoder (MAE-IN1k; the decoder "
                                        "is needed for MAE retrofitting)")),
    "mae_in1k_ft": Backbone(
        "vit_base_patch16_224.mae", "MAE-IN1k (fine-tuned)", kwargs=_MAE_HEAD,
        description="the official MAE fine-tuned ViT-B/16 classifier (weights from a file)",
        source=WeightSource("https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_base.pth",
                            "mae_finetuned_vit_base.pth",
                            description="official MAE ViT-B/16 fine-tuned on ImageNet-1k (the paper's MAE ViT-B/16 "
                                        "baseline rows)")),
    # the pruning experiments' backbones (the SPOT-AD paper, Table 1): DeiT-S and DeiT-T (Touvron et al. 2021)
    "deit_s": Backbone(
        "deit_small_patch16_224.fb_in1k", "DeiT-S", description="DeiT-S/16, ImageNet-1k (79.9 % top-1 in timm)",
        source=WeightSource(_HF.format("deit_small_patch16_224.fb_in1k"), "model.safetensors",
                            hf_repo="timm/deit_small_patch16_224.fb_in1k",
                            description="timm deit_small_patch16_224.fb_in1k (DeiT-S)")),
    "deit_t": Backbone(
        "deit_tiny_patch16_224.fb_in1k", "DeiT-T", description="DeiT-T/16, ImageNet-1k (72.2 % top-1 in timm)",
        source=WeightSource(_HF.format("deit_tiny_patch16_224.fb_in1k"), "model.safetensors",
                            hf_repo="timm/deit_tiny_patch16_224.fb_in1k",
                            description="timm deit_tiny_patch16_224.fb_in1k (DeiT-T)")),
    # small ViTs for the embedded (CPU) preset: 8 px patches, one grey channel, 10 classes by default
    "vit_nano_patch8": Backbone("vit_tiny_patch16_224", "ViT-N/8", kwargs=dict(
        img_size=64, patch_size=8, in_chans=1, num_classes=10, embed_dim=96, depth=4, num_heads=3)),
    "vit_micro_patch8": Backbone("vit_tiny_patch16_224", "ViT-μ/8", kwargs=dict(
        img_size=64, patch_size=8, in_chans=1, num_classes=10, embed_dim=128, depth=6, num_heads=4)),
    "vit_mini_patch8": Backbone("vit_tiny_patch16_224", "ViT-m/8", kwargs=dict(
        img_size=64, patch_size=8, in_chans=1, num_classes=10, embed_dim=192, depth=6, num_heads=3)),
}


_REACHABLE: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` s (cached per process)."""
    import huggingface_hub.constants as hf

    if hf.HF_HUB_OFFLINE:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    if host not in _REACHABLE:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return _REACHABLE[host]


def _resolve(name: str) -> Backbone:
    if name in BACKBONES:
        return BACKBONES[name]
    for b in BACKBONES.values():
        if name in (b.timm_name, b.label):
            return b
    if timm.is_model(name) and name.startswith(("vit_", "deit", "eva")):
        return Backbone(name, name)
    raise ValueError(f"unknown backbone {name!r}; accepted: {', '.join(BACKBONES)}, their timm names or labels, "
                     f"or any timm VisionTransformer name")


def _load_file(model: VisionTransformer, path: Path, strict: bool) -> None:
    result = model.load_state_dict(read_state_dict(path), strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise ValueError(
            f"checkpoint {str(path)!r} does not match the architecture: missing keys {result.missing_keys[:10]}"
            f"{' …' if len(result.missing_keys) > 10 else ''}, unexpected keys {result.unexpected_keys[:10]}"
            f"{' …' if len(result.unexpected_keys) > 10 else ''}")


def create_backbone(name: str, *, pretrained: bool = False, checkpoint: str | os.PathLike | None = None,
                    strict: bool = True, **kwargs) -> VisionTransformer:
    """The timm ``VisionTransformer`` for ``name`` (a key of ``BACKBONES``, a timm name, or a paper label).

    Args:
        pretrained: load the pretrained weights of the timm tag from the hub (or its local cache).
        checkpoint: load weights from this local file instead (``.safetensors``, or a ``.pth``/``.pt`` state dict,
            possibly under ``"model"``/``"state_dict"``); missing/unexpected keys are an error unless ``strict=False``.
        **kwargs: timm keyword config overriding the backbone's (``num_classes``, ``img_size``, ``drop_path_rate`` …).
    """
    b = _resolve(name)
    cfg = {**b.kwargs, **kwargs}
    if checkpoint is not None:
        model = timm.create_model(b.timm_name, pretrained=False, **cfg)
        _load_file(model, Path(checkpoint), strict)
        return model
    return create_timm(b.timm_name, pretrained=pretrained, label=name, **cfg)


def create_timm(timm_name: str, *, pretrained: bool = False, label: str | None = None, **kwargs) -> torch.nn.Module:
    """``timm.create_model`` that, with ``pretrained=True`` and the hub unreachable, looks only in the local cache and
    fails at once with :class:`MissingWeightsError` naming the file to download and ``checkpoint=`` (instead of
    timm's ~45 s of retries). Weights given as ``pretrained_cfg_overlay=dict(file=…)`` are read from that file."""
    if not pretrained:
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    file = (kwargs.get("pretrained_cfg_overlay") or {}).get("file")
    if file is not None and not Path(file).is_file():
        raise MissingWeightsError(f"pretrained_cfg_overlay file {str(file)!r} does not exist; check the path")
    import huggingface_hub.constants as hf

    was_offline = hf.HF_HUB_OFFLINE
    hf.HF_HUB_OFFLINE = was_offline or not hub_reachable()
    try:
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    except OSError as err:  # LocalEntryNotFoundError and friends
        cfg = kwargs.get("pretrained_cfg") or timm.models.get_pretrained_cfg(timm_name)
        hub_id = getattr(cfg, "hf_hub_id", None) or timm_name
        fetchable = label in BACKBONES and BACKBONES[label].source is not None  # what `spot checkpoints fetch` takes
        cli = f"; for the workflow: spot checkpoints fetch {label} --from FILE" if fetchable else ""
        raise MissingWeightsError(
            f"pretrained weights for {label or timm_name!r} ({timm_name}) are not available: the hub is "
            f"{'offline' if hf.HF_HUB_OFFLINE else 'unreachable'} and they are not in the local cache. Either download "
            f"`model.safetensors` of https://huggingface.co/{hub_id} on a machine with internet and pass its path "
            f"(spot.create_model(..., checkpoint=FILE); timm: pretrained_cfg_overlay=dict(file=FILE){cli}), or copy "
            f"the Hugging Face cache there (HF_HOME)."
        ) from err
    finally:
        hf.HF_HUB_OFFLINE = was_offline


def create_model(name: str, *, pretrained: bool = False, checkpoint=None, wrap: bool = True, window=None,
                 pe_sigma: float = 0.5, strict: bool = True, **kwargs):
    """A SPoT model on the named backbone (``wrap=False``: the timm ViT itself); see :func:`create_backbone`."""
    vit = create_backbone(name, pretrained=pretrained, checkpoint=checkpoint, strict=strict, **kwargs)
    return SPoTViT.from_timm(vit, window=window, pe_sigma=pe_sigma) if wrap else vit
