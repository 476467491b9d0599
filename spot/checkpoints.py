"""Backbone checkpoints: fetch once, store as safetensors with a record (source, sha256, size, time).

``spot checkpoints fetch NAME --dir DIR`` (the workflow's download rule) for the paper's three backbones. Offline, an
already-stored file whose sha256 matches its record is used as is; a file the user downloaded by hand and placed in
DIR under its source name (or passed with ``--from FILE``) is converted; otherwise the command fails within seconds
saying which file to download and where to put it.
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .factory import MissingWeightsError, hub_reachable, read_state_dict
from .provenance import atomic_write_json, sha256_file

__all__ = ["CheckpointSource", "CHECKPOINTS", "fetch_checkpoint", "checkpoint_paths", "register_official"]


@dataclass(frozen=True)
class CheckpointSource:
    name: str
    description: str
    url: str  # where a person downloads it
    filename: str  # the file's name at the source (looked for in the target folder when offline)
    hf_repo: str | None = None  # Hugging Face repository (downloaded with huggingface_hub when online)
    sha256: str | None = None  # pinned checksum of the source file, where known


CHECKPOINTS: dict[str, CheckpointSource] = {
    "cls_in1k": CheckpointSource(
        "cls_in1k", "timm vit_base_patch16_224.augreg_in1k (CLS-IN1k)",
        "https://huggingface.co/timm/vit_base_patch16_224.augreg_in1k/resolve/main/model.safetensors",
        "model.safetensors", hf_repo="timm/vit_base_patch16_224.augreg_in1k"),
    "cls_in21k": CheckpointSource(
        "cls_in21k", "timm vit_base_patch16_224.augreg2_in21k_ft_in1k (CLS-IN21k)",
        "https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k/resolve/main/model.safetensors",
        "model.safetensors", hf_repo="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    "mae_in1k": CheckpointSource(
        "mae_in1k", "official MAE ViT-B/16 pre-trained encoder + decoder (MAE-IN1k; the decoder is needed for MAE "
                    "retrofitting)",
        "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base_full.pth",
        "mae_pretrain_vit_base_full.pth"),
    "mae_in1k_ft": CheckpointSource(
        "mae_in1k_ft", "official MAE ViT-B/16 fine-tuned on ImageNet-1k (the paper's MAE ViT-B/16 baseline rows)",
        "https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_base.pth",
        "mae_finetuned_vit_base.pth"),
}


def checkpoint_paths(name: str, directory) -> tuple[Path, Path]:
    """(weights ``DIR/NAME.safetensors``, record ``DIR/NAME.json``)."""
    d = Path(directory)
    return d / f"{name}.safetensors", d / f"{name}.json"


def _store(src: Path, source: CheckpointSource, target: Path, record: Path, origin: str) -> dict:
    from safetensors.torch import save_file

    src_sha = sha256_file(src)
    if source.sha256 and src_sha != source.sha256:
        raise ValueError(f"{src} has sha256 {src_sha}, expected {source.sha256} for {source.url}: "
                         f"truncated or a different file; download it again")
    state = {k: v.contiguous() for k, v in read_state_dict(src).items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"source": source.url})
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    info = {"name": source.name, "description": source.description, "source": source.url, "origin": origin,
            "source_sha256": src_sha, "sha256": sha256_file(target), "size": target.stat().st_size,
            "tensors": len(state), "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(record, info)
    return info


def fetch_checkpoint(name: str, directory, *, source_file=None, log=print) -> dict:
    """Make ``DIR/NAME.safetensors`` + ``DIR/NAME.json`` exist and be consistent; return the record."""
    import json

    if name not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {name!r}; accepted: {', '.join(CHECKPOINTS)}")
    source = CHECKPOINTS[name]
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    target, record = checkpoint_paths(name, d)
    if target.is_file() and record.is_file() and source_file is None:
        info = json.loads(record.read_text())
        if sha256_file(target) == info.get("sha256"):
            log(f"{target} present, checksum matches its record")
            return info
        log(f"{target} does not match its record's sha256: fetching again")
    if source_file is not None:
        return _store(Path(source_file), source, target, record, origin=f"file {source_file}")
    placed = d / source.filename
    if placed.is_file():
        return _store(placed, source, target, record, origin=f"file {placed}")
    if source.hf_repo and hub_reachable():
        from huggingface_hub import hf_hub_download
        path = Path(hf_hub_download(source.hf_repo, source.filename))
        return _store(path, source, target, record, origin=f"huggingface {source.hf_repo}")
    if not source.hf_repo and _url_reachable(source.url):
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            path = Path(tmp) / source.filename
            torch.hub.download_url_to_file(source.url, str(path), progress=True)
            return _store(path, source, target, record, origin=f"download {source.url}")
    raise MissingWeightsError(
        f"cannot fetch {name} ({source.description}): no network. Download {source.url} on a machine with internet "
        f"and place it at {placed} (or pass --from FILE), then run this command again.")


def _url_reachable(url: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    host = urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def register_official(path, out, backbone: str) -> dict:
    """A record (``out``, JSON) pointing at one of the authors' released SPoT checkpoints (``spot_1k_b16.pth`` …), so
    that the workflow's experiments load it like a model trained here (``retrofit: official``). The file is opened
    once with :func:`spot.official.load_official` to fail early on a wrong file."""
    from .official import load_official

    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"released checkpoint {str(path)!r} not found: download spot_1k_b16.pth / "
                                "spot_21k_b16.pth / spot_mae_b16.pth from the authors' release and set its path in "
                                "the config's `official:` section")
    load_official(path)
    info = {"format": "official", "path": str(path), "backbone": backbone, "sha256": sha256_file(path),
            "size": path.stat().st_size, "origin": "the authors' released SPoT checkpoint",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(out, info)
    return info
