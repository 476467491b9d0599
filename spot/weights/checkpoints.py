"""Checkpoints: opening any checkpoint this project writes or fetches, and fetching the backbones' weights.

:func:`open_checkpoint` is the one way the commands read a checkpoint: from the file and its JSON record (written by
``spot train``, ``spot checkpoints fetch`` or ``spot checkpoints official``) it builds the model and says what it is —
its format, how it was trained (token mode), the normalisation of its inputs — with a clear error for a missing
file, a missing record or the wrong kind of model.

``spot checkpoints fetch NAME --dir DIR`` (the workflow's download rule) stores a backbone's weights (where they come
from: :data:`spot.weights.backbones.BACKBONES`) as safetensors + a record. Offline, an already-stored file whose sha256 matches
its record is used as is; a file the user downloaded by hand and placed in DIR under its source name (or passed with
``--from FILE``) is converted; otherwise the command fails within seconds saying which file to download and where.
Every source file is checked against its pinned sha256 or, for a source without one, the sha256 recorded (in the
record's ``source_sha256``) when it was first fetched; hub downloads are of the pinned revision where one is known.
"""
from __future__ import annotations

import datetime as _dt
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .backbones import BACKBONES, MissingWeightsError, WeightSource, create_backbone, hub_reachable
from .formats import load_mae_state_dict, read_state_dict
from ..provenance import atomic_output, atomic_write_json, sha256_file
from ..core.models import SPoTViT
from ..core.mae import SubpixelMAE
from .official import load_official
from ..core.pruning import prune
from ..core.placement.learned import PolicySettings
from ..core.policy import GlancePolicy, PlacedSPoT
from ..data.evaluation import normalisation_of
from safetensors.torch import save_file
import socket
from urllib.parse import urlparse

__all__ = ["Checkpoint", "open_checkpoint", "load_trained", "checkpoint_record", "FORMATS", "Format",
           "register_format", "CHECKPOINTS", "fetch_checkpoint", "checkpoint_paths", "register_official"]

@dataclass(frozen=True)
class _Saved:
    """What a format's loader rebuilds a model from: the file, its record, the backbone name and timm config."""

    path: Path
    record: dict
    backbone: str | None
    timm_kwargs: dict
    wrap: bool

    @property
    def spot_settings(self) -> dict:
        spot = self.record.get("spot") or {}
        return dict(window=spot.get("window"), pe_sigma=spot.get("pe_sigma", 0.5))


@dataclass(frozen=True)
class Format:
    """A checkpoint format this project writes or reads: what it holds, and how :func:`load_trained` rebuilds it."""

    name: str
    summary: str
    load: object  # (_Saved) -> nn.Module
    needs_backbone: bool = True


FORMATS: dict[str, Format] = {}


def register_format(name: str, summary: str, *, needs_backbone: bool = True):
    """Decorator: ``load(saved)`` rebuilds a model of checkpoint format ``name`` (a record's ``format``)."""
    def add(load):
        FORMATS[name] = Format(name, summary, load, needs_backbone)
        return load
    return add


@register_format("timm_vit", "a plain timm ViT on the patch grid (trained here, or a fetched backbone)")
def _load_timm_vit(saved: _Saved):
    vit = create_backbone(saved.backbone, checkpoint=saved.path, **saved.timm_kwargs)
    return (SPoTViT.from_timm(vit) if saved.wrap else vit).eval()


@register_format("spot_vit", "a SPoT model (retrofitted here)")
def _load_spot_vit(saved: _Saved):
    if not saved.wrap:
        raise ValueError(f"{saved.path} is a retrofitted SPoT model: it has no plain-ViT form (wrap=False)")
    model = SPoTViT.from_timm(create_backbone(saved.backbone, **saved.timm_kwargs), **saved.spot_settings)
    model.load_state_dict(read_state_dict(saved.path), strict=True)
    return model.eval()


@register_format("mae", "an MAE encoder + pixel decoder (no classifier)")
def _load_mae(saved: _Saved):
    cfg = saved.record.get("mae") or {}
    model = SubpixelMAE.from_backbone(
        create_backbone(saved.backbone, **saved.timm_kwargs), **saved.spot_settings,
        decoder_dim=cfg.get("decoder_dim", 512), decoder_depth=cfg.get("decoder_depth", 8),
        decoder_heads=cfg.get("decoder_heads", 16), norm_pix_loss=cfg.get("norm_pix_loss", True))
    return load_mae_state_dict(model, read_state_dict(saved.path)).eval()


@register_format("official", "a record pointing at one of the authors' released SPoT checkpoints",
                 needs_backbone=False)
def _load_official(saved: _Saved):
    return load_official(saved.record["path"])


@register_format("placed_spot", "a SPoT model with the glance policy that places its tokens (task: place)")
def _load_placed_spot(saved: _Saved):
    model = SPoTViT.from_timm(create_backbone(saved.backbone, **saved.timm_kwargs), **saved.spot_settings)
    placed = PlacedSPoT(GlancePolicy(PolicySettings(**saved.record["policy"])), model)
    placed.load_state_dict(read_state_dict(saved.path), strict=True)
    return placed.eval()


@register_format("pruned_vit", "a timm ViT or SPoT model with token pruning (spot.core.pruning; fine-tuned here)")
def _load_pruned_vit(saved: _Saved):
    info = saved.record["prune"]
    vit = create_backbone(saved.backbone, **saved.timm_kwargs)
    base = SPoTViT.from_timm(vit, **saved.spot_settings) if info["base_format"] == "spot_vit" else vit
    model = prune(base, info["method"], info["keep_ratio"], stages=info["stages"], **info.get("settings", {}))
    model.load_state_dict(read_state_dict(saved.path), strict=True)
    return model.eval()


# the backbones whose weights can be fetched, by name
CHECKPOINTS: dict[str, WeightSource] = {name: b.source for name, b in BACKBONES.items() if b.source is not None}


def checkpoint_record(path) -> dict:
    """The JSON record stored beside a checkpoint (``X.safetensors`` → ``X.json``); ``{}`` when there is none."""
    record = Path(path).with_suffix(".json")
    return json.loads(record.read_text()) if record.is_file() else {}


@dataclass
class Checkpoint:
    """An opened checkpoint: the model and what it is."""

    path: Path
    record: dict
    format: str  # a key of FORMATS
    tokens_mode: str  # how it was trained: grid, subpixel or grid_subset (the grid control)
    model: object  # SPoTViT (timm_vit wrapped; official), or SubpixelMAE

    @property
    def classifier(self) -> bool:
        return self.format != "mae" and bool(getattr(self.model, "num_classes", 0))

    @property
    def normalisation(self) -> tuple[tuple, tuple]:
        """(mean, std) its inputs were normalised with: its recipe's (canvas data), else its ``pretrained_cfg``'s
        when it has one value per input channel (ImageNet backbones, the release), else (0.5, 0.5)."""

        model = getattr(self.model, "encoder", self.model)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        default = ((0.5,), (0.5,))
        if len(cfg.get("mean") or ()) == model.in_chans and len(cfg.get("std") or ()) == model.in_chans:
            default = (tuple(cfg["mean"]), tuple(cfg["std"]))
        return normalisation_of(self.record, default=default)

    def grid_vit(self):
        """The plain timm ViT of a ``timm_vit`` checkpoint (for PatchDropout and the grid baselines)."""
        if self.format != "timm_vit":
            raise ValueError(f"{self.path} is a {self.format} checkpoint: only a timm_vit checkpoint is a plain ViT")
        return load_trained(self.path, wrap=False)


def open_checkpoint(path, *, classifier: bool = False, name: str | None = None) -> Checkpoint:
    """Open a checkpoint and its record (see :class:`Checkpoint`); ``classifier=True`` refuses an MAE (no head).

    ``name`` is how error messages refer to it (the ``--model`` name)."""
    path = Path(path)
    what = f"model {name!r}: " if name else ""
    if not path.is_file():
        raise FileNotFoundError(f"{what}checkpoint {str(path)!r} not found; train it (`spot train`) or fetch it "
                                f"(`spot checkpoints fetch`)")
    record = checkpoint_record(path)
    if not record:
        raise ValueError(f"{what}{path} has no record ({path.with_suffix('.json')}); use checkpoints written by "
                         f"`spot train`, `spot checkpoints fetch` or `spot checkpoints official`")
    fmt = record.get("format", "timm_vit")
    if fmt not in FORMATS:
        raise ValueError(f"{what}{path} has unknown format {fmt!r}; accepted: {', '.join(FORMATS)}")
    if fmt == "mae" and classifier:
        raise ValueError(f"{what}{path} is an MAE checkpoint (encoder + pixel decoder), not a classifier; fine-tune it "
                         f"first (e.g. the finetune_mae recipe) and give that checkpoint")
    mode = ((record.get("recipe") or {}).get("tokens") or {}).get("mode") or (
        "grid" if fmt == "timm_vit" else "subpixel")
    checkpoint = Checkpoint(path, record, fmt, mode, load_trained(path))
    if classifier and not checkpoint.classifier:
        raise ValueError(f"{what}{path} is not a classifier ({type(checkpoint.model).__name__} without classes)")
    return checkpoint


def weights_file(path, record: dict) -> Path:
    """The file a checkpoint's weights are read from: the checkpoint itself, or for an ``official`` record the
    authors' released file it points at."""
    return Path(record["path"]) if record.get("format") == "official" else Path(path)


def verify_weights(path, record: dict) -> None:
    """Refuse weights that are not the ones their record describes (its ``sha256``): a model is evaluated only from
    the bytes its record — and every result's provenance — names. No record: nothing to verify (``backbone=``)."""
    if not record:
        return
    weights = weights_file(path, record)
    expected = record.get("sha256")
    if expected is None:
        raise ValueError(f"{path}: its record ({Path(path).with_suffix('.json')}) has no sha256; re-create it with "
                         f"`spot train`, `spot checkpoints fetch` or `spot checkpoints official`")
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: the weights its record points at ({weights}) are missing")
    actual = sha256_file(weights)
    if actual != expected:
        raise ValueError(f"{weights} has sha256 {actual[:12]}…, its record says {expected[:12]}…: the weights "
                         f"changed since they were recorded; train or fetch them again")


def load_trained(path, *, backbone: str | None = None, wrap: bool = True, **timm_kwargs):
    """A model from any checkpoint this project writes or fetches, rebuilt from its record.

    * ``spot train`` outputs: the record names the backbone and timm config; ``format`` is ``timm_vit`` (returned as
      a :class:`~spot.core.models.SPoTViT` wrapping it, or the plain ViT with ``wrap=False``), ``spot_vit`` (a
      retrofitted SPoT model) or ``mae`` (a :class:`~spot.core.mae.SubpixelMAE`).
    * ``format: pruned_vit``: the wrapped model (a timm ViT or a SPoT model) pruned as its record says
      (:class:`spot.core.pruning.PrunedViT`).
    * ``spot checkpoints fetch`` outputs: the record's ``name`` is the backbone key (``cls_in1k`` …).
    * ``spot checkpoints official`` records (``format: official``): the authors' released file they point at,
      loaded with :func:`spot.weights.official.load_official`.
    * any other file: give ``backbone=`` (and timm keyword config).

    The weights are verified against their record's sha256 first (:func:`verify_weights`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found; train it (`spot train`) or fetch it "
                                "(`spot checkpoints fetch`)")
    record = checkpoint_record(path)
    verify_weights(path, record)
    name = record.get("format", "timm_vit")
    if name not in FORMATS:
        raise ValueError(f"{path} has unknown format {name!r}; accepted: {', '.join(FORMATS)}")
    fmt = FORMATS[name]
    backbone = backbone or record.get("backbone") or record.get("name")
    if backbone is None and fmt.needs_backbone:
        raise ValueError(f"{path} has no record naming its backbone ({path.with_suffix('.json')}); pass backbone=")
    return fmt.load(_Saved(path, record, backbone, {**record.get("timm_kwargs", {}), **timm_kwargs}, wrap))


def checkpoint_paths(name: str, directory) -> tuple[Path, Path]:
    """(weights ``DIR/NAME.safetensors``, record ``DIR/NAME.json``)."""
    d = Path(directory)
    return d / f"{name}.safetensors", d / f"{name}.json"


def _recorded(record: Path) -> dict:
    """The record of an earlier fetch; ``{}`` when there is none or it cannot be read."""
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return {}


def _expected_sha256(source: WeightSource, earlier: dict, record: Path) -> tuple[str | None, str]:
    """The sha256 the source file must have, and why: pinned in the source, else recorded by the first fetch
    (trust on first use: an unknown source is hashed when first fetched and held to that hash afterwards)."""
    if source.sha256:
        return source.sha256, f"pinned for {source.url}"
    if earlier.get("source_sha256"):
        return earlier["source_sha256"], (f"recorded for {source.url} at its first fetch in {record}; delete that "
                                          f"record to accept another file")
    return None, ""


def _store(name: str, src: Path, source: WeightSource, target: Path, record: Path, origin: str,
           expected: tuple[str | None, str] = (None, ""), revision: str | None = None) -> dict:
    """Convert the source file ``src`` to safetensors at ``target`` + its record, after checking its sha256 against
    ``expected`` (see :func:`_expected_sha256`); the source's sha256 is recorded either way."""

    src_sha = sha256_file(src)
    want, why = expected
    if want and src_sha != want:
        raise ValueError(f"{src} has sha256 {src_sha}, expected {want} ({why}): truncated or a different file; "
                         f"download it again")
    state = {k: v.contiguous() for k, v in read_state_dict(src).items()}
    with atomic_output(target) as tmp:
        save_file(state, str(tmp), metadata={"source": source.url})
    info = {"name": name, "description": source.description, "source": source.url, "origin": origin,
            "source_sha256": src_sha, "sha256": sha256_file(target), "size": target.stat().st_size,
            "tensors": len(state), "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if revision:
        info["source_revision"] = revision
    atomic_write_json(record, info)
    return info


def fetch_checkpoint(name: str, directory, *, source_file=None, log=print) -> dict:
    """Make ``DIR/NAME.safetensors`` + ``DIR/NAME.json`` exist and be consistent; return the record.

    The source file is checked against its pinned sha256, or — for a source without one — the sha256 recorded when
    it was first fetched (a re-fetch, e.g. after the stored file changed, must bring the same bytes); hub downloads
    are of the source's pinned ``revision`` where it has one, and the commit fetched is recorded."""
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {name!r}; accepted: {', '.join(CHECKPOINTS)}")
    source = CHECKPOINTS[name]
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    target, record = checkpoint_paths(name, d)
    earlier = _recorded(record)
    if target.is_file() and earlier and source_file is None:
        if sha256_file(target) == earlier.get("sha256"):
            log(f"{target} present, checksum matches its record")
            return earlier
        log(f"{target} does not match its record's sha256: fetching again")
    expected = _expected_sha256(source, earlier, record)
    if source_file is not None:
        return _store(name, Path(source_file), source, target, record, f"file {source_file}", expected)
    placed = d / source.filename
    if placed.is_file():
        return _store(name, placed, source, target, record, f"file {placed}", expected)
    if source.hf_repo and hub_reachable():
        from huggingface_hub import hf_hub_download
        path = Path(hf_hub_download(source.hf_repo, source.filename, revision=source.revision))
        return _store(name, path, source, target, record, f"huggingface {source.hf_repo}", expected,
                      revision=source.revision or _hub_commit(path))
    if not source.hf_repo and _url_reachable(source.url):
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            path = Path(tmp) / source.filename
            _download(source.url, path, expected)
            return _store(name, path, source, target, record, f"download {source.url}", expected)
    raise MissingWeightsError(
        f"cannot fetch {name} ({source.description}): no network. Download {source.url} on a machine with internet "
        f"and place it at {placed} (or pass --from FILE), then run this command again.")


def _download(url: str, path: Path, expected: tuple[str | None, str]) -> None:
    """``url`` to ``path`` with torch's downloader, which checks the sha256 (``hash_prefix``) before keeping it."""
    want, why = expected
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=want, progress=True)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        raise ValueError(f"the download of {url} does not have sha256 {want} ({why}): truncated or a different "
                         f"file; try again later, or download it by hand and check it") from None


def _hub_commit(path: Path) -> str | None:
    """The hub commit a ``hf_hub_download`` path is a snapshot of (``…/snapshots/<commit>/<file>``), if it is one."""
    commit = path.parent.name
    return commit if path.parent.parent.name == "snapshots" and len(commit) == 40 else None


def _url_reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def register_official(path, out, backbone: str) -> dict:
    """A record (``out``, JSON) pointing at one of the authors' released SPoT checkpoints (``spot_1k_b16.pth`` …), so
    that the workflow's experiments load it like a model trained here (``retrofit: official``). The file is opened
    once with :func:`spot.weights.official.load_official` to fail early on a wrong file."""

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
