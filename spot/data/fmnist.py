"""The embedded benchmark: Fashion-MNIST articles placed at subpixel positions on a larger canvas.

Why a canvas. On plain, centred Fashion-MNIST every article sits at the same place, aligned with a fixed patch grid,
so *where* tokens go hardly matters. ImageNet objects are concentrated near the centre but land anywhere relative to
the patch grid. The canvas reproduces that: each 28×28 article is pasted at a continuous (subpixel) position drawn
around the canvas centre, so objects are centre-biased but never aligned with the 8-px grid; tokens spent on the
empty background (an all-over Uniform placement, a Background prior) see nothing. Optional clutter — faint fragments
of other articles dropped anywhere (``fragments``) — is off by default: two 10×10 fragments at 40 % intensity cost a
small ViT 5.6 points of accuracy for the same training (69.2 vs 74.7 % after 3 epochs), which the 2-core training
budget cannot buy back.

The default (``CanvasConfig()``): a 48×48 canvas, which a ViT with patch 8 sees as 6×6 = 36 grid tokens — the role
of ViT-B/16's 196 — so the paper's budgets 12.5 / 25 / 50 / 100 % become ≈ 4–5, 9, 18 and 36 tokens. The article
centre is offset from the canvas centre by N(0, 5 px) per axis, truncated at ±10 px so the article always stays
whole on the canvas; no clutter. 48 rather than 64 px keeps every stage of the embedded workflow trainable on 2 CPU cores (36 tokens per
image instead of 64, ~1.8× cheaper per step) while the article still covers only ~a third of the canvas.

Everything is deterministic from ``seed``; the official 60 000/10 000 train/test split is kept and a validation split
(``val_size`` images, drawn with the seed) is held out of train. The result is stored compactly as one compressed
``.npz`` per split (uint8 canvases, labels, the article's top-left position and source index, enough to recompute
the article's mask for saliency) plus ``manifest.json`` with checksums of the sources and of every file written.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..provenance import atomic_output, atomic_write_json, provenance, sha256_file
from .canvas import ARTICLE, CanvasConfig
from .fmnist_files import DEFAULT_FMNIST_DIRS, FashionMNISTNotFound, find_fmnist
from .fmnist_files import IDX_FILES as _FILES
from .fmnist_files import idx_path as _idx_path

__all__ = ["CanvasConfig", "FMNIST_CLASSES", "DEFAULT_FMNIST_DIRS", "FashionMNISTNotFound", "find_fmnist",
           "load_fmnist", "render_canvases", "build_canvas_dataset", "build_plain_dataset", "ArrayDataset",
           "load_split", "article_masks"]

FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")


# ---------------------------------------------------------------------------------------------------------- sources

def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read {path}: {err}; the file is corrupt or truncated, re-install or re-download it") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != expected_dims:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes with {expected_dims} dimension(s)")
    dims = np.frombuffer(data, dtype=">u4", count=expected_dims, offset=4).astype(int)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * expected_dims)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} holds {body.size} values but its header says {tuple(dims)}; the file is truncated")
    return body.reshape(tuple(dims))


def load_fmnist(directory=None, download: bool = False) -> tuple[dict, dict]:
    """Fashion-MNIST as ``({"train": (images uint8 (60000, 28, 28), labels), "test": …}, {file: sha256})``."""
    if download and directory is not None:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(directory), train=train, download=True)
    d = find_fmnist(directory)
    splits, checksums = {}, {}
    for split, (img_name, lab_name) in _FILES.items():
        img_path, lab_path = _idx_path(d, img_name), _idx_path(d, lab_name)
        images, labels = _read_idx(img_path, 3), _read_idx(lab_path, 1)
        if images.shape[1:] != (ARTICLE, ARTICLE) or len(images) != len(labels) or labels.max() > 9:
            raise ValueError(f"{img_path} / {lab_path} do not look like Fashion-MNIST "
                             f"(images {images.shape}, {len(labels)} labels)")
        splits[split] = (images, labels)
        checksums[str(img_path)] = sha256_file(img_path)
        checksums[str(lab_path)] = sha256_file(lab_path)
    return splits, checksums


# -------------------------------------------------------------------------------------------------------- rendering

def _paste(articles: torch.Tensor, top_left: torch.Tensor, canvas: int, size: int) -> torch.Tensor:
    """Bilinearly paste (N, size, size) float images with their top-left corner at continuous pixel ``top_left``
    (N, 2) (y, x) onto zero (N, canvas, canvas) canvases (zeros outside the source)."""
    centres = torch.arange(canvas, dtype=torch.float64) + 0.5  # canvas pixel centres
    src_y = centres[None, :] - top_left[:, :1]  # source continuous coordinate of each canvas row (N, canvas)
    src_x = centres[None, :] - top_left[:, 1:]
    gy = (2 * src_y / size - 1)[:, :, None].expand(-1, -1, canvas)
    gx = (2 * src_x / size - 1)[:, None, :].expand(-1, canvas, -1)
    grid = torch.stack([gx, gy], dim=-1).float()
    return F.grid_sample(articles[:, None].float(), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0]


def render_canvases(articles: np.ndarray, pool: np.ndarray, cfg: CanvasConfig, generator: torch.Generator,
                    chunk: int = 4096) -> dict[str, np.ndarray]:
    """Draw one canvas per article (uint8 (N, 28, 28)); fragments are cut from ``pool`` images. Deterministic."""
    cfg.validate()
    n, c = len(articles), cfg.canvas_size
    g = generator
    # article centre offset: N(0, std²) per axis truncated to ±max_offset (inverse-CDF, one draw per value)
    if cfg.placement_std > 0 and cfg.max_offset > 0:
        lo = torch.special.ndtr(torch.tensor(-cfg.max_offset / cfg.placement_std, dtype=torch.float64))
        u = lo + (1 - 2 * lo) * torch.rand(n, 2, generator=g, dtype=torch.float64)
        offset = cfg.placement_std * torch.special.ndtri(u)
    else:
        offset = torch.zeros(n, 2, dtype=torch.float64)
    top_left = (c - ARTICLE) / 2 + offset
    frag_src = torch.randint(0, len(pool), (n, cfg.fragments), generator=g)
    frag_crop = torch.randint(0, ARTICLE - cfg.fragment_size + 1, (n, cfg.fragments, 2), generator=g)
    frag_pos = torch.rand(n, cfg.fragments, 2, generator=g, dtype=torch.float64) * (c - cfg.fragment_size)
    out = np.empty((n, c, c), dtype=np.uint8)
    pool_t = torch.from_numpy(np.array(pool))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        canvas = _paste(torch.from_numpy(np.array(articles[s:e])), top_left[s:e], c, ARTICLE)
        for f in range(cfg.fragments):
            src = pool_t[frag_src[s:e, f]]  # (b, 28, 28)
            ys = frag_crop[s:e, f, 0, None] + torch.arange(cfg.fragment_size)
            xs = frag_crop[s:e, f, 1, None] + torch.arange(cfg.fragment_size)
            crops = src[torch.arange(e - s)[:, None, None], ys[:, :, None], xs[:, None, :]]
            frag = _paste(crops, frag_pos[s:e, f], c, cfg.fragment_size) * cfg.fragment_intensity
            canvas = torch.maximum(canvas, frag)
        out[s:e] = canvas.round().clamp(0, 255).to(torch.uint8).numpy()
    return {"images": out, "top_left": top_left.float().numpy()}


def article_masks(top_left: np.ndarray, articles: np.ndarray, canvas_size: int, threshold: int = 0) -> np.ndarray:
    """The pasted article's footprint on the canvas (float (N, C, C) in [0, 1]): the embedded preset's saliency map."""
    mask = (torch.from_numpy(articles) > threshold).float()
    return _paste(mask, torch.from_numpy(top_left).double(), canvas_size, ARTICLE).numpy()


# ----------------------------------------------------------------------------------------------------------- storage

def _split_indices(n_train: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def _save_npz(path: Path, **arrays) -> str:
    with atomic_output(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return sha256_file(path)


def _finish(out: Path, work: Path, manifest: dict) -> dict:
    atomic_write_json(work / "manifest.json", manifest)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return manifest


def _prepare_out(out) -> tuple[Path, Path, dict | None]:
    out = Path(out)
    if (out / "manifest.json").is_file():
        return out, out, json.loads((out / "manifest.json").read_text())
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists, is not empty and holds no manifest.json; choose another --out or remove it")
    work = out.with_name(f".{out.name}.partial")
    if work.exists():
        shutil.rmtree(work)  # an interrupted build: start it again
    work.mkdir(parents=True)
    return out, work, None


def build_canvas_dataset(out, cfg: CanvasConfig = CanvasConfig(), seed: int = 0, fmnist_dir=None,
                         download: bool = False, log=print) -> dict:
    """Build (once) the canvas benchmark in ``out``: {train,val,test}.npz + manifest.json. Returns the manifest.

    An existing build with the same config and seed is reused; a different one is an error (choose another folder).
    """
    cfg.validate()
    out, work, existing = _prepare_out(out)
    wanted = {"kind": "canvas", "config": asdict(cfg), "seed": seed}
    if existing is not None:
        if {k: existing.get(k) for k in wanted} != wanted:
            raise ValueError(f"{out} holds a different build ({ {k: existing.get(k) for k in wanted} }); "
                             f"use another folder for this config/seed")
        log(f"canvas benchmark already built in {out}")
        return existing
    sources, checksums = load_fmnist(fmnist_dir, download)
    train_idx, val_idx = _split_indices(len(sources["train"][1]), cfg.val_size, seed)
    parts = {"train": ("train", train_idx), "val": ("train", val_idx),
             "test": ("test", np.arange(len(sources["test"][1])))}
    files = {}
    for i, (split, (source, idx)) in enumerate(parts.items()):
        images, labels = sources[source]
        g = torch.Generator().manual_seed(seed * 1000 + i)  # one stream per split: splits are independent
        drawn = render_canvases(images[idx], images, cfg, g)
        path = work / f"{split}.npz"
        files[split] = {"file": path.name, "n": int(len(idx)),
                        "per_class": np.bincount(labels[idx], minlength=10).tolist(),
                        "sha256": _save_npz(path, images=drawn["images"], labels=labels[idx],
                                            top_left=drawn["top_left"], source_index=idx.astype(np.int32),
                                            source_split=np.array(source))}
        log(f"  {split}: {len(idx)} canvases {cfg.canvas_size}×{cfg.canvas_size}")
    manifest = {**wanted, "classes": list(FMNIST_CLASSES), "splits": files, "sources": checksums,
                "provenance": provenance(wanted, seed=seed)}
    return _finish(out, work, manifest)


def build_plain_dataset(out, val_size: int = 5000, seed: int = 0, fmnist_dir=None, download: bool = False,
                        log=print) -> dict:
    """Plain, centred 28×28 Fashion-MNIST in the same storage format ({train,val,test}.npz + manifest.json)."""
    out, work, existing = _prepare_out(out)
    wanted = {"kind": "plain", "config": {"val_size": val_size}, "seed": seed}
    if existing is not None:
        if {k: existing.get(k) for k in wanted} != wanted:
            raise ValueError(f"{out} holds a different build; use another folder")
        return existing
    sources, checksums = load_fmnist(fmnist_dir, download)
    train_idx, val_idx = _split_indices(len(sources["train"][1]), val_size, seed)
    parts = {"train": ("train", train_idx), "val": ("train", val_idx),
             "test": ("test", np.arange(len(sources["test"][1])))}
    files = {}
    for split, (source, idx) in parts.items():
        images, labels = sources[source]
        path = work / f"{split}.npz"
        files[split] = {"file": path.name, "n": int(len(idx)),
                        "per_class": np.bincount(labels[idx], minlength=10).tolist(),
                        "sha256": _save_npz(path, images=images[idx], labels=labels[idx],
                                            source_index=idx.astype(np.int32), source_split=np.array(source))}
        log(f"  {split}: {len(idx)} images 28×28")
    manifest = {**wanted, "classes": list(FMNIST_CLASSES), "splits": files, "sources": checksums,
                "provenance": provenance(wanted, seed=seed)}
    return _finish(out, work, manifest)


# ----------------------------------------------------------------------------------------------------------- reading

class ArrayDataset(torch.utils.data.Dataset):
    """A stored split as (image (1, H, W) float in [0, 1] → ``transform``, label); keeps uint8 in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i][None].float().div_(255.0)
        return (self.transform(x) if self.transform else x), self.labels[i]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (N, 1, H, W) float in [0, 1] and labels, for fast in-memory batching on the CPU."""
        return self.images[:, None].float().div_(255.0), self.labels


def load_split(root, split: str, transform=None, verify: bool = True) -> ArrayDataset:
    """A split ("train", "val", "test") of a built dataset; checks the file against the manifest's sha256."""
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{root} holds no manifest.json: build it with `spot data fmnist --out {root}`")
    manifest = json.loads(manifest_path.read_text())
    if split not in manifest["splits"]:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(manifest['splits'])}")
    entry = manifest["splits"][split]
    path = root / entry["file"]
    if verify and sha256_file(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its checksum in the manifest (changed or corrupt); rebuild the dataset")
    with np.load(path) as data:
        return ArrayDataset(data["images"], data["labels"], transform)
