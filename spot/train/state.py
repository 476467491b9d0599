"""What a training run keeps: the resumable state (model, optimiser, scheduler, grad scaler, every RNG, the position
in the epoch, the history — saved atomically after every epoch and on a signal; resumed only by the same recipe,
parent checkpoint, data and DDP world size), the finished model and its record.

The state is tensors and plain values only (the RNG states converted to them), so it is read with
``torch.load(weights_only=True)``: a file placed in the state folder cannot run code. A small JSON beside it
(``state.json``: the run's identity, the state's sha256 and size) is written after it and checked *before* the state
is opened, so the state of another run, a truncated or altered file, or one left without its JSON by a crash between
the two writes is refused with a message naming the fix, never loaded."""
from __future__ import annotations

import json
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..provenance import atomic_output, atomic_write_json, provenance, sha256_file
from .build import architecture
from ..core.mae import SubpixelMAE
from ..core.models import SPoTViT
from ..weights.formats import mae_state_dict
from ..core.pruning import PrunedViT
from ..core.policy import PlacedSPoT, policy_record
from safetensors.torch import save_file
import contextlib

__all__ = ["Progress", "ResumableState", "save_model", "final_record", "model_format", "STATE_FILE", "STATE_RECORD"]

STATE_FILE = "state.pt"
STATE_RECORD = "state.json"  # identity + sha256 of STATE_FILE, checked before it is opened


@dataclass
class Progress:
    """Where a run is: what the resumable state restores besides the modules and RNGs."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list = field(default_factory=list)
    images_seen: int = 0
    train_time: float = 0.0


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG of this process as tensors and plain values (what ``torch.load(weights_only=True)`` reads back)."""
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "sampler": generator.get_state(),
             "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    generator.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(model: torch.nn.Module, path: Path, record: dict) -> dict:
    """Weights as safetensors (a plain ViT under timm's key names) + ``<path>.json`` record; atomic."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # an MAE is stored in the MAE repository's layout (timm encoder names + decoder), like the official file
    weights = mae_state_dict(model) if isinstance(model, SubpixelMAE) else model.state_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata={"format": record.get("format", "")})
    record = {**record, "sha256": sha256_file(path), "size": path.stat().st_size, "file": path.name}
    atomic_write_json(path.with_suffix(".json"), record)
    return record



class ResumableState:
    """``state_dir/state.pt`` of one run, its record ``state.json``, and the run's live per-epoch log beside them.

    ``identity`` is what a state must match to be resumed: the recipe, the parent checkpoint and data it started
    from (their sha256), the DDP world size.
    """

    def __init__(self, state_dir, identity: dict):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / STATE_FILE
        self.record_path = self.dir / STATE_RECORD
        self.log_path = self.dir / "log.jsonl"
        self.identity = identity

    def resume(self, modules: dict, generator, rank: int) -> Progress | None:
        """Load the state into ``modules`` (name → object with ``load_state_dict``) and ``generator``; None when
        there is none. A state of another run (recipe, inputs or world size differ), one that does not match its
        record or cannot be read as tensors is a ValueError — checked before the state is opened."""
        if not self.path.is_file():
            return None
        self._check_record()
        state = self._load()
        for name, module in modules.items():
            module.load_state_dict(state[name])
        set_rng_state(state["rng"][rank], generator)
        return Progress(state["epoch"], state["step_in_epoch"], state["global_step"], state["history"],
                        state["images_seen"], state["train_time"])

    def _refuse(self, problem: str) -> ValueError:
        return ValueError(f"{self.path} {problem}; it is not loaded: delete {self.dir} to restart the run from "
                          f"scratch")

    def _check_record(self) -> None:
        """The record must be of this run and describe the state's bytes (sha256, size)."""
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            raise self._refuse(f"has no readable record {self.record_path} (written after the state: a crash between "
                               f"the two, or not written by `spot train`)") from None
        names = {"recipe": "recipe", "inputs": "parent checkpoint or data", "world": "DDP world size"}
        theirs = record.get("identity") or {}
        differs = [names[k] for k, ours in _plain(self.identity).items() if ours != theirs.get(k)]
        if differs:
            raise ValueError(f"{self.path} holds the unfinished state of another run (different "
                             f"{', '.join(differs)}); delete {self.dir} to start over, or run what made it")
        size, digest = self.path.stat().st_size, sha256_file(self.path)
        if (size, digest) != (record.get("size"), record.get("sha256")):
            raise self._refuse(f"does not match its record {self.record_path} ({size} bytes, sha256 {digest[:12]}…; "
                               f"recorded {record.get('size')} bytes, {str(record.get('sha256'))[:12]}…): it is "
                               f"truncated, altered, or left by a save interrupted before its record was written")

    def _load(self) -> dict:
        """The checked state, read as tensors and plain values only (no code runs)."""
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise self._refuse("holds objects other than tensors and plain values") from None
        except Exception:  # noqa: BLE001 — any other decoding failure means a damaged file
            raise self._refuse("cannot be read (corrupt or truncated)") from None

    def save(self, modules: dict, generator, progress: Progress, *, epoch: int, step: int, world: int,
             is_main: bool) -> None:
        """Save the state at (epoch, step) — every rank's RNGs gathered to rank 0, which writes the state, then
        its record (both atomically)."""
        rngs = [None] * world
        mine = rng_state(generator)
        if world > 1:
            torch.distributed.all_gather_object(rngs, mine)
        else:
            rngs = [mine]
        if not is_main:
            return
        state = {**{name: m.state_dict() for name, m in modules.items()}, "rng": rngs, "epoch": epoch,
                 "step_in_epoch": step, "global_step": progress.global_step, "history": progress.history,
                 "images_seen": progress.images_seen, "train_time": progress.train_time}
        with atomic_output(self.path) as tmp:
            torch.save(state, tmp)
            record = {"file": STATE_FILE, "size": tmp.stat().st_size, "sha256": sha256_file(tmp), "epoch": epoch,
                      "step_in_epoch": step, "identity": _plain(self.identity)}
        atomic_write_json(self.record_path, record)

    def finish(self) -> None:
        """The run is finished: its state has served (a later run, e.g. of an edited recipe, starts afresh)."""

        for leftover in (self.path, self.record_path, self.log_path):
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()


def _plain(obj):
    """``obj`` as its JSON record holds it (tuples → lists …), so an identity compares equal to its record's."""
    return json.loads(json.dumps(obj, default=str))


def model_format(model) -> str:
    if isinstance(model, PrunedViT):
        return "pruned_vit"
    if isinstance(model, PlacedSPoT):
        return "placed_spot"
    if isinstance(model, SPoTViT):
        return "spot_vit"
    return "mae" if model.__class__.__name__ == "SubpixelMAE" else "timm_vit"


def final_record(model, recipe, recipe_dict, parent, checksums, data_root, data, history, device, world, images_seen,
                  train_time, wall_time, config_source) -> dict:
    inputs = dict(checksums)
    inputs.update({f"data:{k}": v["sha256"] for k, v in data.manifest.get("splits", {}).items() if "sha256" in v})
    fmt = model_format(model)
    base = model.model if fmt in ("pruned_vit", "placed_spot") else model
    base_fmt = model_format(base)
    name, kwargs = architecture(recipe, parent)
    kwargs = dict(kwargs)
    kwargs.pop("drop_path_rate", None)
    record = {
        "format": fmt,
        "origin": f"trained here by `spot train` (recipe {recipe.name})",
        "backbone": name,
        "timm_kwargs": kwargs,
        "spot": {"window": recipe.model.window, "pe_sigma": recipe.model.pe_sigma} if base_fmt != "timm_vit" else None,
        "mae": recipe_dict["mae"] if fmt == "mae" else None,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "recipe": recipe_dict,
        "parent": inputs["checkpoint:parent"] if parent else None,
        "data": {"root": str(data_root), "kind": recipe.data.kind, "manifest": data.manifest,
                 "train_images": data.train_len},
        "history": history,
        "final": history[-1] if history else {},
        "images_seen": images_seen,
        "train_time_s": train_time,
        "wall_time_s": wall_time,
        "images_per_s": images_seen / max(train_time, 1e-9),
        "world_size": world,
        "config_file": config_source,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "provenance": provenance(recipe_dict, seed=recipe.seed, device=device, inputs=inputs),
    }
    if fmt == "pruned_vit":  # what spot.load_trained needs to rebuild it
        record["prune"] = {**model.describe(), "base_format": base_fmt}
    if fmt == "placed_spot":  # the policy's settings: spot.core.policy.load_policy and the learned placement
        record.update(policy_record(model.policy))
    return record
