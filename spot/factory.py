"""Backbones by name: the paper's three ViT-B/16 models (timm names) and small ViTs for the embedded preset.

``create_model(name)`` returns a :class:`~spot.models.SPoTViT` (``wrap=False``: the plain timm ViT). Weights come
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

from .models import SPoTViT

__all__ = ["Backbone", "BACKBONES", "MissingWeightsError", "create_backbone", "create_model", "create_timm", "hub_reachable",
           "read_state_dict", "load_trained", "checkpoint_record"]


@dataclass(frozen=True)
class Backbone:
    """A named backbone: a timm architecture (+ pretrained tag) and the keyword config that differs from it."""

    timm_name: str
    label: str
    kwargs: dict = field(default_factory=dict)
    description: str = ""


BACKBONES: dict[str, Backbone] = {
    # the paper's three backbones (Section 4, Table 7)
    "cls_in1k": Backbone("vit_base_patch16_224.augreg_in1k", "CLS-IN1k",
                         description="supervised ViT-B/16, ImageNet-1k (Steiner et al. 2021)"),
    "cls_in21k": Backbone("vit_base_patch16_224.augreg2_in21k_ft_in1k", "CLS-IN21k",
                          description="supervised ViT-B/16, ImageNet-21k, fine-tuned on ImageNet-1k"),
    "mae_in1k": Backbone("vit_base_patch16_224.mae", "MAE-IN1k",
                         kwargs=dict(global_pool="avg", fc_norm=True, num_classes=1000),
                         description="MAE ViT-B/16 encoder with MAE's fine-tuning head (global pool + fc_norm); "
                                     "the hub holds the pre-trained encoder only, fine-tuned weights come from a file"),
    "mae_in1k_ft": Backbone("vit_base_patch16_224.mae", "MAE-IN1k (fine-tuned)",
                            kwargs=dict(global_pool="avg", fc_norm=True, num_classes=1000),
                            description="the official MAE fine-tuned ViT-B/16 classifier (weights from a file)"),
    # small ViTs for the embedded (CPU) preset: 8 px patches, one grey channel, 10 classes by default
    "vit_nano_patch8": Backbone("vit_tiny_patch16_224", "ViT-N/8", kwargs=dict(
        img_size=64, patch_size=8, in_chans=1, num_classes=10, embed_dim=96, depth=4, num_heads=3)),
    "vit_micro_patch8": Backbone("vit_tiny_patch16_224", "ViT-μ/8", kwargs=dict(
        img_size=64, patch_size=8, in_chans=1, num_classes=10, embed_dim=128, depth=6, num_heads=4)),
    "vit_mini_patch8": Backbone("vit_tiny_patch16_224", "ViT-m/8", kwargs=dict(
        img_size=64, patch_size=8, in_chans=1, num_classes=10, embed_dim=192, depth=6, num_heads=3)),
}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are neither in a given file nor reachable (hub offline and not cached)."""


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


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file: ``.safetensors``, or a ``.pth``/``.pt`` read with ``torch.load(weights_only=True)``
    (no arbitrary unpickling), unwrapped from ``"model"``/``"state_dict"``/``"model_ema"`` when nested there.

    A missing file is a ``MissingWeightsError``; an unreadable one or one without a dict of tensors a ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"checkpoint file {str(path)!r} does not exist; check the path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 — any decoding failure means a bad file
        raise ValueError(f"{str(path)!r} is not a readable checkpoint ({err}); download it again") from err
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} holds no state dict of tensors")
    return state


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
        raise MissingWeightsError(
            f"pretrained weights for {label or timm_name!r} ({timm_name}) are not available: the hub is "
            f"{'offline' if hf.HF_HUB_OFFLINE else 'unreachable'} and they are not in the local cache. Either download "
            f"`model.safetensors` of https://huggingface.co/{hub_id} on a machine with internet and pass its path as "
            f"checkpoint= (CLI: --checkpoint PATH; timm: pretrained_cfg_overlay=dict(file=PATH)), or copy the Hugging "
            f"Face cache there (HF_HOME)."
        ) from err
    finally:
        hf.HF_HUB_OFFLINE = was_offline


def create_model(name: str, *, pretrained: bool = False, checkpoint=None, wrap: bool = True, window=None,
                 pe_sigma: float = 0.5, strict: bool = True, **kwargs):
    """A SPoT model on the named backbone (``wrap=False``: the timm ViT itself); see :func:`create_backbone`."""
    vit = create_backbone(name, pretrained=pretrained, checkpoint=checkpoint, strict=strict, **kwargs)
    return SPoTViT.from_timm(vit, window=window, pe_sigma=pe_sigma) if wrap else vit


def checkpoint_record(path) -> dict:
    """The JSON record stored beside a checkpoint (``X.safetensors`` → ``X.json``); ``{}`` when there is none."""
    import json

    record = Path(path).with_suffix(".json")
    return json.loads(record.read_text()) if record.is_file() else {}


def load_trained(path, *, backbone: str | None = None, wrap: bool = True, **timm_kwargs):
    """A model from any checkpoint this project writes or fetches, rebuilt from its record.

    * ``spot train`` outputs: the record names the backbone and timm config; ``format`` is ``timm_vit`` (returned as
      a :class:`SPoTViT` wrapping it, or the plain ViT with ``wrap=False``), ``spot_vit`` (a retrofitted SPoT model)
      or ``mae`` (a :class:`~spot.mae.SubpixelMAE`).
    * ``spot checkpoints fetch`` outputs: the record's ``name`` is the backbone key (``cls_in1k`` …).
    * ``spot checkpoints official`` records (``format: official``): the authors' released file they point at,
      loaded with :func:`spot.official.load_official`.
    * any other file: give ``backbone=`` (and timm keyword config).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found; train it (`spot train`) or fetch it "
                                "(`spot checkpoints fetch`)")
    record = checkpoint_record(path)
    fmt = record.get("format", "timm_vit")
    if fmt == "official":  # a record pointing at one of the authors' released checkpoints (retrofit: official)
        from .official import load_official

        return load_official(record["path"])
    name = backbone or record.get("backbone") or record.get("name")
    if name is None:
        raise ValueError(f"{path} has no record naming its backbone ({path.with_suffix('.json')}); pass backbone=")
    kwargs = {**record.get("timm_kwargs", {}), **timm_kwargs}
    spot_cfg = record.get("spot") or {}
    if fmt == "mae":
        from .mae import SubpixelMAE

        mae_cfg = record.get("mae") or {}
        model = SubpixelMAE.from_backbone(
            create_backbone(name, **kwargs), window=spot_cfg.get("window"), pe_sigma=spot_cfg.get("pe_sigma", 0.5),
            decoder_dim=mae_cfg.get("decoder_dim", 512), decoder_depth=mae_cfg.get("decoder_depth", 8),
            decoder_heads=mae_cfg.get("decoder_heads", 16), norm_pix_loss=mae_cfg.get("norm_pix_loss", True))
        return model.load_mae_state_dict(read_state_dict(path)).eval()
    if fmt == "spot_vit":
        model = SPoTViT.from_timm(create_backbone(name, **kwargs), window=spot_cfg.get("window"),
                                  pe_sigma=spot_cfg.get("pe_sigma", 0.5))
        result = model.load_state_dict(read_state_dict(path), strict=True)
        del result
        if not wrap:
            raise ValueError(f"{path} is a retrofitted SPoT model: it has no plain-ViT form (wrap=False)")
        return model.eval()
    vit = create_backbone(name, checkpoint=path, **kwargs)
    return (SPoTViT.from_timm(vit) if wrap else vit).eval()
