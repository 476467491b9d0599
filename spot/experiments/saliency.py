"""Per-image saliency maps for the Salient / Background priors and the saliency gain of Table 3 (pluggable).

``SaliencySettings.source`` picks the source (``SOURCES``):

* ``article_mask`` — the Fashion-MNIST canvas benchmark's own ground truth: the footprint of the pasted article
  (recomputed from the stored article position and source image; no model involved). Exact, never cached.
* ``spectral_residual`` — the classical, weight-free detector of X. Hou and L. Zhang, "Saliency Detection: A Spectral
  Residual Approach", CVPR 2007 (doi:10.1109/CVPR.2007.383267); see :func:`spectral_residual`.
* ``clipseg`` — text-prompted segmentation with CLIPSeg: T. Lüddecke and A. Ecker, "Image Segmentation Using Text and
  Image Prompts", CVPR 2022 — the saliency model the paper uses for its Salient prior. Needs the optional
  ``transformers`` package and the weights of ``settings.clipseg["model"]`` (a hub id, found in the local Hugging
  Face cache when the hub is unreachable, or a local folder saved with ``save_pretrained``); see :func:`clipseg_maps`.

``saliency_maps(data, indices, settings)`` → (B, H, W) float32 maps in [0, 1] at the evaluation images' size.

The computed sources (``spectral_residual``, ``clipseg``) work on the *un-normalised* images: for the Fashion-MNIST
benchmark they are read back from the dataset folder (exact), for ImageNet the normalisation is undone with the
mean / std of the dataset's ``Normalize`` transform (or ``mean=``/``std=`` given to :func:`saliency_maps`). Their
maps are rounded to float16 (the cache's storage type) whether or not a cache is used, so a result never depends on
the cache. With ``settings.cache_dir`` set, maps are stored per (source, settings hash, dataset, split, image index)
as compressed ``.npz`` blocks of ``CACHE_BLOCK`` consecutive images, written atomically, and reused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..settings.saliency import SOURCES, SaliencySettings
from ..weights.backbones import MissingWeightsError, hub_reachable
from ..data.fmnist import load_split
from ..provenance import atomic_write_json
from ..provenance import atomic_output
from ..data.fmnist import article_masks, load_fmnist

__all__ = ["SaliencySettings", "saliency_maps", "SaliencyMemo", "SOURCES", "spectral_residual", "clipseg_maps", "raw_images",
           "CACHE_BLOCK"]

CACHE_BLOCK = 256  # images per cache file
_CACHE_VERSION = 1  # bump when a computation changes: old cache entries are then ignored
_LUMA = (0.2989, 0.5870, 0.1140)  # ITU-R BT.601, as MATLAB's rgb2gray used by Hou & Zhang's reference code


# ------------------------------------------------------------------------------------------------ spectral residual

def _gaussian_blur(x: torch.Tensor, sigma: float, truncate: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) with zero padding (MATLAB ``imfilter``'s default boundary)."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(truncate * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = F.conv2d(x[:, None], k.view(1, 1, 1, -1), padding=(0, radius))
    y = F.conv2d(y, k.view(1, 1, -1, 1), padding=(radius, 0))
    return y[:, 0]


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-map min–max to [0, 1]; a constant map becomes all zeros (the Salient prior reads that as uniform)."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 1e-12 * (1 + lo.abs()), (x - lo) / span.clamp_min(1e-30), torch.zeros_like(x))


def _grey(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    C = images.shape[1]
    if C == 1:
        return images[:, 0]
    if C == 3:
        w = images.new_tensor(_LUMA).view(1, 3, 1, 1)
        return (images * w).sum(1)
    return images.mean(1)


def spectral_residual(images: torch.Tensor, *, size: int = 64, average: int = 3, sigma: float = 2.5,
                      truncate: float = 2.0, floor: float = 0.01) -> torch.Tensor:
    """Spectral-residual saliency (Hou & Zhang, CVPR 2007) of (B, C, H, W) images → (B, H, W) maps in [0, 1].

    Steps (Hou & Zhang §2.2–2.3 and their reference MATLAB code):

    1. grey image (BT.601 luma for RGB), bilinearly resized so that its long side is ``size`` px (64 in the paper;
       the reference code scales the width to 64; the two agree for square images);
    2. ``A = log|FFT|``, ``P = angle(FFT)``; spectral residual ``R = A − h_n * A`` with ``h_n`` the n×n
       averaging filter, n = ``average`` = 3, replicate padding (``imfilter(…, fspecial('average', 3), 'replicate')``).
       Our one addition: amplitudes are floored at ``floor`` (1 %) of the image's median amplitude before the log.
       Exact spectral zeros (synthetic images on a perfectly flat background) make ``log|FFT|`` −∞ in the reference
       code and, clamped, wreck the local average of their neighbours; the floor removes that and changes the maps
       of natural or textured images very little (≤ 0.04 on the canvas benchmark's [0, 1] maps). ``floor=0``: none;
    3. ``S = |IFFT(exp(R + iP))|²``;
    4. Gaussian smoothing ``g * S``, zero padding. The paper's text gives ``g`` a σ of 8 px; the authors' reference
       MATLAB code (``imfilter(S, fspecial('gaussian', [10, 10], 2.5))``, as reproduced e.g. in
       zhenglab/SpectralSaliency ``Models/SR/SR.m``) uses σ = 2.5 px on the 64-px map, which is our default
       (``sigma``; truncated at ``truncate``·σ = 5 px: an 11×11 kernel next to MATLAB's 10×10). OpenCV's
       ``StaticSaliencySpectralResidual`` blurs with a 5×5 kernel of σ = 8 (nearly a box) before squaring.
       ``sigma=8`` gives broader maps (tested: they spread further);
    5. bilinear resize back to H×W, min–max normalisation to [0, 1] (``mat2gray``).

    The computation runs in float64. It is invariant to a positive scaling of the image but not to an added offset
    (the DC term enters the residual of its neighbours): pass un-normalised images (see :func:`raw_images`).
    A constant image has no salient region: its map is all zeros.
    """
    B, _, H, W = images.shape
    size, average = int(size), int(average)
    grey = _grey(images.detach().to(torch.float64))
    scale = size / max(H, W)
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    small = F.interpolate(grey[:, None], size=(h, w), mode="bilinear", align_corners=False,
                          antialias=scale < 1)[:, 0]
    flat = small.flatten(1).std(dim=1) <= 1e-9 * (1 + small.flatten(1).mean(dim=1).abs())  # nothing stands out
    spectrum = torch.fft.fft2(small)
    amp = spectrum.abs()
    if floor > 0:
        amp = torch.maximum(amp, floor * amp.flatten(1).median(dim=1).values.view(-1, 1, 1))
    log_amp = torch.log(amp.clamp_min(1e-12))
    phase = torch.angle(spectrum)
    pad = (average - 1) // 2, average // 2
    padded = F.pad(log_amp[:, None], (pad[0], pad[1], pad[0], pad[1]), mode="replicate")
    residual = log_amp - F.avg_pool2d(padded, average, stride=1)[:, 0]
    sal = torch.fft.ifft2(torch.exp(torch.complex(residual, phase))).abs() ** 2
    sal = _minmax(_gaussian_blur(sal, float(sigma), float(truncate)))
    sal = F.interpolate(sal[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    return torch.where(flat.view(-1, 1, 1), torch.zeros_like(sal), _minmax(sal)).to(torch.float32)


# -------------------------------------------------------------------------------------------------------- CLIPSeg

_CLIPSEG_MODELS: dict = {}


def _import_transformers():
    try:
        import transformers  # noqa: F401
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor
    except ImportError as err:
        raise ImportError("saliency source 'clipseg' needs the `transformers` package, which is not installed: "
                          "pip install transformers (into this environment), or use saliency.source "
                          "spectral_residual / article_mask") from err
    return CLIPSegProcessor, CLIPSegForImageSegmentation


def _load_clipseg(model: str, device):
    """(processor, model) of a hub id or a local folder; offline and not cached → MissingWeightsError at once."""
    key = (model, str(device))
    if key in _CLIPSEG_MODELS:
        return _CLIPSEG_MODELS[key]
    CLIPSegProcessor, CLIPSegForImageSegmentation = _import_transformers()

    local = Path(model).expanduser()
    if local.is_dir():
        kwargs = {}
        where = f"the folder {str(local)!r}"
        source = str(local)
    else:
        if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1):
            raise MissingWeightsError(f"saliency.clipseg.model = {model!r} is neither a folder nor a hub id "
                                      f"(owner/name); give the folder holding a saved CLIPSeg model")
        import huggingface_hub.constants as hf

        offline = hf.HF_HUB_OFFLINE or not hub_reachable()
        kwargs = {"local_files_only": True} if offline else {}
        where = f"https://huggingface.co/{model}"
        source = model
    try:
        processor = CLIPSegProcessor.from_pretrained(source, **kwargs)
        net = CLIPSegForImageSegmentation.from_pretrained(source, **kwargs)
    except OSError as err:  # LocalEntryNotFoundError, missing files in a folder, …
        if kwargs.get("local_files_only"):
            why = "the Hugging Face hub is unreachable (or HF_HUB_OFFLINE is set) and it is not in the local cache"
        else:
            why = f"loading failed ({err})"
        raise MissingWeightsError(
            f"CLIPSeg weights {model!r} ({where}) are not available: {why}. Either copy a Hugging Face cache holding "
            f"{model} to this machine (HF_HOME), or on a machine with internet run `CLIPSegProcessor.from_pretrained("
            f"'{model}').save_pretrained(DIR)` and `CLIPSegForImageSegmentation.from_pretrained('{model}')"
            f".save_pretrained(DIR)`, copy DIR here and set saliency.clipseg.model: DIR") from err
    net = net.eval().to(device)
    _CLIPSEG_MODELS[key] = (processor, net)
    return processor, net


def clipseg_maps(images: torch.Tensor, *, model: str = "CIDAS/clipseg-rd64-refined",
                 prompt: str = "a photo of the main object", batch_size: int = 32, device=None) -> torch.Tensor:
    """CLIPSeg saliency of un-normalised (B, C, H, W) images in [0, 1] → (B, H, W): ``sigmoid(logits)`` of the prompt,
    bilinearly resized from CLIPSeg's 352² output to H×W. Grey images are repeated to RGB. The processor does
    CLIPSeg's own resizing and normalisation."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    processor, net = _load_clipseg(model, device)
    B, C, H, W = images.shape
    rgb = images.detach().float().clamp(0, 1)
    if C == 1:
        rgb = rgb.expand(-1, 3, -1, -1)
    elif C != 3:
        raise ValueError(f"clipseg needs grey or RGB images, got {C} channels")
    pixels = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    with torch.inference_mode():
        for i in range(0, B, batch_size):
            chunk = list(pixels[i:i + batch_size])
            inputs = processor(text=[prompt] * len(chunk), images=chunk, padding=True, return_tensors="pt")
            logits = net(**{k: v.to(device) for k, v in inputs.items()}).logits
            if logits.dim() == 2:  # CLIPSeg squeezes a batch of one
                logits = logits[None]
            maps = torch.sigmoid(logits.float())[:, None]
            out.append(F.interpolate(maps, size=(H, W), mode="bilinear", align_corners=False)[:, 0].cpu())
    return torch.cat(out).clamp(0, 1)


# --------------------------------------------------------------------------------------------- un-normalised images

def _find_normalize(transform):
    """(mean, std) of the first transform with both attributes inside a (nested) Compose, else None."""
    if transform is None:
        return None
    if hasattr(transform, "mean") and hasattr(transform, "std"):
        return tuple(np.ravel(transform.mean).tolist()), tuple(np.ravel(transform.std).tolist())
    for t in getattr(transform, "transforms", ()) or ():
        found = _find_normalize(t)
        if found is not None:
            return found
    return None


def _base_dataset(dataset):
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return dataset


def _normalisation(data, mean=None, std=None):
    if mean is not None and std is not None:
        return tuple(mean), tuple(std)
    for owner in (data, getattr(data, "extras", None) or {}):
        m = owner.get("mean") if isinstance(owner, dict) else getattr(owner, "mean", None)
        s = owner.get("std") if isinstance(owner, dict) else getattr(owner, "std", None)
        if m is not None and s is not None:
            return tuple(m), tuple(s)
    if getattr(data, "dataset", None) is not None:
        return _find_normalize(getattr(_base_dataset(data.dataset), "transform", None))
    return None


def _denormalise(x: torch.Tensor, norm) -> torch.Tensor:
    m = torch.as_tensor(norm[0], dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(norm[1], dtype=x.dtype).view(1, -1, 1, 1)
    return x * s + m


def raw_images(data, indices: torch.Tensor, *, images: torch.Tensor | None = None, mean=None, std=None) -> torch.Tensor:
    """The un-normalised images (B, C, H, W), values in [0, 1], of ``indices`` of an ``EvalData``.

    Fashion-MNIST benchmark: read back from the dataset folder (exact). Otherwise the normalised images (``images``
    when given — the batch the caller already holds — else ``data.images`` or ``data.dataset[i]``) are mapped back
    with ``mean``/``std``, or those of ``data`` (``data.mean``/``std`` or ``extras``), or of the ``Normalize`` in the
    dataset's transform. When none is known, each image is min–max scaled to [0, 1] (exact for one channel up to
    the image's own range; a ValueError for RGB, whose channels would be mixed wrongly).
    """
    idx = indices.detach().cpu().long()
    if getattr(data, "kind", None) == "fmnist" and getattr(data, "root", None) is not None \
            and (Path(data.root) / "manifest.json").is_file():
        cache = data.extras.setdefault("_raw", {})
        if "images" not in cache:
            cache["images"] = load_split(data.root, data.split).tensors()[0]
        return cache["images"][idx]
    if images is None:
        if hasattr(data, "take"):  # an EvalData: its images by split index
            images = data.take(idx)
        elif getattr(data, "images", None) is not None:
            images = data.images[idx]
        else:
            loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data.dataset, idx.tolist()),
                                                 batch_size=len(idx), shuffle=False,
                                                 num_workers=min(getattr(data, "workers", 0), len(idx), 8))
            images = next(iter(loader))[0]
    images = images.detach().cpu().float()
    if len(images) != len(idx):
        raise ValueError(f"images holds {len(images)} images for {len(idx)} indices")
    norm = _normalisation(data, mean, std)
    if norm is not None:
        return _denormalise(images, norm).clamp(0, 1)
    if images.shape[1] != 1:
        raise ValueError("cannot undo the normalisation of these RGB images: pass mean= and std= to saliency_maps")
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    span = (images.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
    return (images - lo) / span


# ---------------------------------------------------------------------------------------------------------- cache

def _dataset_key(data) -> str:
    """Identifies the images: the dataset's manifest checksum (else its folder), kind and image size; memoised in
    ``data.extras`` (reading ``image_size`` decodes an ImageNet image)."""
    extras = getattr(data, "extras", None)
    if isinstance(extras, dict) and "_saliency_dataset_key" in extras:
        return extras["_saliency_dataset_key"]
    root = getattr(data, "root", None)
    digest = None
    if root is not None and (Path(root) / "manifest.json").is_file():
        digest = hashlib.sha256((Path(root) / "manifest.json").read_bytes()).hexdigest()[:16]
    ident = {"manifest": digest, "root": None if digest else str(Path(root).resolve()) if root is not None else None,
             "kind": getattr(data, "kind", None), "image_size": list(data.image_size)}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    if isinstance(extras, dict):
        extras["_saliency_dataset_key"] = key
    return key


def _cache_dir(data, settings: SaliencySettings) -> Path:
    params = {"source": settings.source, "version": _CACHE_VERSION, **settings.parameters()}
    tag = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    d = Path(settings.cache_dir) / f"{settings.source}-{tag}" / _dataset_key(data) / str(getattr(data, "split", ""))
    meta = d / "settings.json"
    if not meta.is_file():
        atomic_write_json(meta, {"settings": params, "dataset_root": str(getattr(data, "root", "")),
                                 "split": str(getattr(data, "split", "")), "image_size": list(data.image_size),
                                 "block": CACHE_BLOCK})
    return d


def _read_block(path: Path) -> dict[int, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path) as z:
            return dict(zip(z["indices"].tolist(), z["maps"]))
    except Exception:  # noqa: BLE001 — a damaged cache file is recomputed, never trusted
        return {}


def _write_block(path: Path, entries: dict[int, np.ndarray]) -> None:
    keys = sorted(entries)
    with atomic_output(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, indices=np.asarray(keys, dtype=np.int64),
                            maps=np.stack([entries[k] for k in keys]).astype(np.float16))


def _cached(compute, data, indices: torch.Tensor, settings: SaliencySettings) -> torch.Tensor:
    """Maps of ``indices``: those in the cache read back, the others computed with ``compute(missing)`` and stored."""
    idx = indices.detach().cpu().long().tolist()
    if settings.cache_dir is None:
        return compute(torch.tensor(idx, dtype=torch.long)).half().float()
    d = _cache_dir(data, settings)
    blocks = {b: _read_block(d / f"{b:07d}.npz") for b in sorted({i // CACHE_BLOCK for i in idx})}
    found = {i: blocks[i // CACHE_BLOCK].get(i) for i in idx}
    missing = sorted({i for i, m in found.items() if m is None})
    if missing:
        maps = compute(torch.tensor(missing, dtype=torch.long)).half().numpy()
        new = dict(zip(missing, maps))
        found.update(new)
        for b in sorted({i // CACHE_BLOCK for i in missing}):
            entries = {**_read_block(d / f"{b:07d}.npz"), **{i: m for i, m in new.items() if i // CACHE_BLOCK == b}}
            _write_block(d / f"{b:07d}.npz", entries)
    return torch.from_numpy(np.stack([found[i] for i in idx]).astype(np.float32))


# ---------------------------------------------------------------------------------------------------------- sources

def _article_masks(data, indices: torch.Tensor) -> torch.Tensor:
    if data.kind != "fmnist" or "top_left" not in data.extras:
        raise ValueError("saliency source 'article_mask' needs the Fashion-MNIST canvas benchmark (its article "
                         "positions); use another saliency.source for this dataset")
    cache = data.extras.setdefault("_articles", {})
    if "all" not in cache:  # the source articles, read once from the Fashion-MNIST files the canvases were built from
        sources = list(data.manifest.get("sources", {}))
        splits, _ = load_fmnist(Path(sources[0]).parent if sources else None)
        cache["all"] = splits[str(data.extras["source_split"])][0][data.extras["source_index"]]
    idx = indices.cpu().numpy()
    masks = article_masks(data.extras["top_left"][idx], cache["all"][idx], data.image_size[-1])
    return torch.from_numpy(masks).float()


def _compute(data, settings: SaliencySettings, images, mean, std, all_indices: torch.Tensor):
    """The uncached computation of the selected source for a subset of the requested indices."""
    positions = {int(i): k for k, i in enumerate(all_indices.tolist())}

    def compute(idx: torch.Tensor) -> torch.Tensor:
        given = None if images is None else images[[positions[int(i)] for i in idx]]
        raw = raw_images(data, idx, images=given, mean=mean, std=std)
        if settings.source == "spectral_residual":
            return spectral_residual(raw, **settings.parameters())
        cfg = settings.clipseg or {}
        return clipseg_maps(raw, model=cfg["model"], prompt=cfg.get("prompt", "a photo of the main object"),
                            batch_size=int(cfg.get("batch_size", 32)), device=cfg.get("device"))

    return compute


def saliency_maps(data, indices: torch.Tensor, settings: SaliencySettings, *, images: torch.Tensor | None = None,
                  mean=None, std=None) -> torch.Tensor:
    """Saliency maps (B, H, W) in [0, 1] of the evaluation images ``indices`` of ``data`` (an ``EvalData``).

    Optional: ``images`` — the (normalised) batch of those indices the caller already holds (saves decoding ImageNet
    images twice); ``mean``/``std`` — the normalisation of the images, when ``data`` does not know it.
    """
    settings.validate()
    indices = torch.as_tensor(indices).long().reshape(-1)
    if settings.source == "article_mask":
        return _article_masks(data, indices)
    if images is not None and len(images) != len(indices):
        raise ValueError(f"images holds {len(images)} images for {len(indices)} indices")
    return _cached(_compute(data, settings, images, mean, std, indices), data, indices, settings)


class SaliencyMemo:
    """``memo(data, indices)`` → :func:`saliency_maps` of the batch, kept in memory up to ``budget_bytes`` (the rest is
    recomputed, or read back from ``settings.cache_dir``): for runs that visit the same batches once per placement."""

    def __init__(self, settings: SaliencySettings, budget_bytes: int = 1 << 30):
        self.settings, self.budget_bytes = settings, budget_bytes
        self._maps: dict = {}
        self._bytes = 0

    def __call__(self, data, indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices).long().reshape(-1)
        key = (str(data.root), data.split, id(data), tuple(indices.tolist()))
        if key in self._maps:
            return self._maps[key]
        maps = saliency_maps(data, indices, self.settings).detach().cpu().float()
        if self._bytes + maps.numel() * 4 <= self.budget_bytes:
            self._maps[key] = maps
            self._bytes += maps.numel() * 4
        return maps
