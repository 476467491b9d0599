"""``spot train``: run a recipe (spot/recipes.py) — ViT pre-training, SPoT retrofitting, its grid control, MAE.

Data path of one step: images → token positions (the recipe's sampler: grid, subpixel, or a grid subset) → model
(timm ViT, :class:`~spot.models.SPoTViT` or :class:`~spot.mae.SubpixelMAE`) → loss → AdamW with layer-wise lr decay
(timm's optimiser factory) under timm's per-step scheduler.

Robustness: the full training state (model, optimiser, scheduler, grad scaler, every RNG, the position in the epoch)
is saved atomically at the end of every epoch and when SIGTERM/SIGINT arrives, under ``state_dir`` — not a workflow
output, so Snakemake's cleanup of a failed job does not delete it. Running the same command again resumes and
produces the same weights as an uninterrupted run. A non-finite loss stops the run with
:class:`NonFiniteLossError` and leaves the last good state in place.

Under ``torchrun`` the same command uses DistributedDataParallel (world size from the environment): the global
batch is split over the processes, each process draws its own token positions, rank 0 writes every file.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data.subsets import stratified_subset
from .positions import grid_positions
from .priors import sample_positions
from .provenance import atomic_write_json, provenance, sha256_file
from .recipes import Recipe, recipe_to_dict

__all__ = ["train", "TrainingInterrupted", "NonFiniteLossError", "TokenSampler", "build_optimizer",
           "build_training_model", "save_model"]

STATE_FILE = "state.pt"


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; the state was saved and the same command resumes."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good state (end of the previous epoch) is kept."""


# ------------------------------------------------------------------------------------------------ token positions

class TokenSampler:
    """The token positions of a training batch, following ``recipe.tokens`` (see :class:`spot.recipes.TokenSampling`).

    ``__call__(batch_size, generator)`` → ``(positions, num_tokens)``; positions are (B, m, 2) float64 or ``None``
    for the full grid of a plain ViT.
    """

    def __init__(self, tokens, image_size, patch_size):
        self.cfg = tokens
        self.image_size = tuple(image_size)
        self.patch_size = tuple(patch_size)
        self.grid = grid_positions(self.image_size, self.patch_size)
        self.num_patches = len(self.grid)
        hi = tokens.max_tokens or self.num_patches
        lo = tokens.min_tokens
        if tokens.mode != "grid":
            cap = self.num_patches if tokens.mode == "grid_subset" else None  # grid subsets cannot exceed the grid
            budgets = [int(m) for m in tokens.choices] if tokens.budget == "choices" else [lo, hi]
            if lo > hi or any(m < 1 or (cap is not None and m > cap) for m in budgets):
                raise ValueError(f"token budgets {budgets if tokens.budget == 'choices' else [lo, hi]} are invalid "
                                 f"for a grid of {self.num_patches} patches: need 1 ≤ min_tokens ≤ max_tokens"
                                 + (f" ≤ {cap} for grid_subset" if cap else ""))
        self.lo, self.hi = lo, hi
        self._cells: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def draw_budget(self, generator) -> int:
        if self.cfg.mode == "grid":
            return self.num_patches
        if self.cfg.budget == "choices":
            i = int(torch.randint(len(self.cfg.choices), (1,), generator=generator))
            return int(self.cfg.choices[i])
        return int(torch.randint(self.lo, self.hi + 1, (1,), generator=generator))

    def _layout(self, m: int):
        """Isotropic layout for m and each point's cell size (1/rows, 1/points-in-its-row)."""
        if m not in self._cells:
            base = sample_positions(self.cfg.prior, m, 1, self.image_size)[0]
            cell = torch.empty_like(base)
            ys, counts = torch.unique(base[:, 0], return_counts=True)
            for y, n in zip(ys, counts):
                cell[base[:, 0] == y] = torch.tensor([1.0 / len(ys), 1.0 / float(n)], dtype=base.dtype)
            self._cells[m] = (base, cell)
        return self._cells[m]

    def __call__(self, batch_size: int, generator) -> tuple[torch.Tensor | None, int]:
        mode = self.cfg.mode
        if mode != "grid" and self.cfg.full_share > 0 and \
                float(torch.rand((), generator=generator, dtype=torch.float64)) < self.cfg.full_share:
            return self.grid.expand(batch_size, -1, -1).clone(), self.num_patches  # rehearsal: the exact full grid
        m = self.draw_budget(generator)
        if mode == "grid":
            return None, m
        if mode == "grid_subset":
            keep = torch.rand(batch_size, self.num_patches, generator=generator).argsort(1)[:, :m].sort(1).values
            return self.grid[keep], m
        base, cell = self._layout(m)
        if self.cfg.jitter > 0:
            noise = torch.rand((batch_size, m, 2), generator=generator, dtype=base.dtype) - 0.5
            return (base + noise * cell * self.cfg.jitter).clamp(0.0, 1.0), m
        return base.expand(batch_size, -1, -1), m


# ------------------------------------------------------------------------------------------------ model & optimiser

def _is_spot_state(state: dict) -> bool:
    """A SPoTViT / SubpixelMAE ``state_dict`` (as opposed to timm-ViT or MAE-repo key names)."""
    return any(k.startswith(("window_embed.", "encoder.window_embed.")) for k in state)


def _timm_kwargs(recipe: Recipe, parent=None) -> dict:
    """timm keyword config of the recipe's model. The pooling head (``global_pool``, ``fc_norm``) is an architectural
    property of a classifier: unset in the recipe, it is the parent classifier's (from its record), else the
    backbone's own — so retrofitting a global-pool parent keeps its head."""
    from .factory import checkpoint_record

    m = recipe.model
    kw = dict(m.timm_kwargs)
    inherited = {}
    if parent is not None and (m.global_pool is None or m.fc_norm is None):
        record = checkpoint_record(parent) or {}
        if record.get("format") in ("timm_vit", "spot_vit"):
            inherited = {k: v for k, v in (record.get("timm_kwargs") or {}).items() if k in ("global_pool", "fc_norm")}
    for key, value in (("img_size", m.img_size), ("num_classes", m.num_classes), ("in_chans", m.in_chans),
                       ("global_pool", m.global_pool), ("fc_norm", m.fc_norm)):
        if value is None:
            value = inherited.get(key)
        if value is not None:
            kw[key] = value
    kw["drop_path_rate"] = m.drop_path
    return kw


def _load_into(module: torch.nn.Module, state: dict, what: str, log) -> None:
    """Load matching keys; a classifier head of another shape (e.g. 1000 → 10 classes, or none) is left at init."""
    own = module.state_dict()
    skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if skipped and not all(k.startswith(("head.", "fc_norm.")) for k in skipped):
        raise ValueError(f"the parent checkpoint does not fit the model ({what}): shape mismatch for {skipped[:5]}")
    result = module.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("head.", "fc_norm."))]
    if missing:
        raise ValueError(f"the parent checkpoint lacks {len(missing)} weights of the model ({what}): {missing[:5]}")
    fresh = sorted(set(skipped) | set(result.missing_keys))
    if fresh:
        log(f"parent: {', '.join(fresh)} not in the parent (or of another shape): newly initialised")


def build_training_model(recipe: Recipe, parent: str | os.PathLike | None = None, log=print):
    """The module a recipe trains: a timm ViT (grid classify), a SPoTViT (subpixel / grid_subset classify) or a
    SubpixelMAE (mae), initialised from ``parent`` (a timm ViT, SPoT or MAE-layout checkpoint) or at random."""
    from .factory import create_backbone, read_state_dict
    from .models import SPoTViT

    if recipe.init == "parent" and parent is None:
        raise ValueError(f"recipe {recipe.name!r} starts from a parent checkpoint (init: parent): pass --parent PATH")
    if recipe.init == "scratch" and parent is not None:
        raise ValueError(f"recipe {recipe.name!r} trains from scratch (init: scratch) but a parent was given")
    state = read_state_dict(parent) if parent is not None else None
    vit = create_backbone(recipe.model.backbone, **_timm_kwargs(recipe, parent))
    spot_kw = dict(window=recipe.model.window, pe_sigma=recipe.model.pe_sigma)
    if recipe.task == "mae":
        from .mae import SubpixelMAE

        cfg = recipe.mae
        model = SubpixelMAE.from_backbone(vit, decoder_dim=cfg.decoder_dim, decoder_depth=cfg.decoder_depth,
                                          decoder_heads=cfg.decoder_heads, norm_pix_loss=cfg.norm_pix_loss,
                                          fixed_sincos_pe=cfg.fixed_sincos_pe and state is None, **spot_kw)
        if state is not None:
            if _is_spot_state(state):
                model.load_state_dict(state)
            else:
                model.load_mae_state_dict(state)
        return model
    if state is not None and not _is_spot_state(state):
        enc = {k: v for k, v in state.items() if not k.startswith(("decoder_", "mask_token"))}
        _load_into(vit, enc, recipe.model.backbone, log)
    if recipe.tokens.mode == "grid":
        if state is not None and _is_spot_state(state):
            raise ValueError("grid training of a plain ViT cannot start from a SPoT checkpoint; use tokens.mode: "
                             "grid_subset with max_tokens = the grid size to train a SPoT model on the full grid")
        return vit
    model = SPoTViT.from_timm(vit, **spot_kw)
    if state is not None and _is_spot_state(state):
        _load_into(model, state, "SPoT", log)
    return model


def build_optimizer(model: torch.nn.Module, recipe: Recipe):
    """timm's optimiser factory: AdamW (or the recipe's), weight decay off for 1-d weights and tokens, and layer-wise
    lr decay by the model's ``group_matcher`` (the stem gets ``lr·decay^(L+1)``, block i ``lr·decay^(L−i)``, the head
    ``lr``: deeper layers get larger rates)."""
    from timm.optim import create_optimizer_v2

    o = recipe.optimizer
    kwargs = dict(betas=tuple(o.betas), eps=o.eps) if "adam" in o.name.lower() or "lamb" in o.name.lower() else {}
    return create_optimizer_v2(model, opt=o.name, lr=recipe.lr, weight_decay=o.weight_decay,
                               layer_decay=o.layer_decay, **kwargs)


def build_scheduler(optimizer, recipe: Recipe, updates_per_epoch: int):
    from timm.scheduler import create_scheduler_v2

    s = recipe.schedule
    sched, _ = create_scheduler_v2(optimizer, sched=s.name, num_epochs=recipe.epochs, warmup_epochs=s.warmup_epochs,
                                   warmup_lr=s.warmup_lr, min_lr=s.min_lr, step_on_epochs=False,
                                   updates_per_epoch=updates_per_epoch)
    return sched


# ------------------------------------------------------------------------------------------------ data

@dataclass
class _Data:
    train_len: int
    val_images: torch.Tensor | None  # fmnist: in memory (normalised)
    val_labels: torch.Tensor | None
    manifest: dict
    image_size: tuple[int, int]
    train_images: torch.Tensor | None = None
    train_labels: torch.Tensor | None = None
    train_set: object = None  # imagenet datasets
    val_set: object = None


def _load_data(recipe: Recipe, root, model_cfg: dict) -> _Data:
    root = Path(root)
    d = recipe.data
    if d.kind == "fmnist":
        from .data.fmnist import load_split

        mean = torch.tensor(d.mean).view(1, -1, 1, 1)
        std = torch.tensor(d.std).view(1, -1, 1, 1)
        xtr, ytr = load_split(root, d.train_split).tensors()
        xva, yva = load_split(root, d.val_split).tensors()
        if d.limit:
            keep = torch.from_numpy(stratified_subset(ytr.numpy(), d.limit, recipe.seed))
            xtr, ytr = xtr[keep], ytr[keep]
        manifest = json.loads((root / "manifest.json").read_text())
        return _Data(len(ytr), (xva - mean) / std, yva, manifest, tuple(xtr.shape[-2:]),
                     train_images=(xtr - mean) / std, train_labels=ytr)
    from .data.imagenet import imagenet_dataset
    from .data.transforms import eval_transform, train_transform

    size = model_cfg["img_size"]
    mean, std = model_cfg["mean"], model_cfg["std"]
    train_set = imagenet_dataset(root, d.train_split, train_transform(img_size=size, mean=mean, std=std,
                                                                      randaug=d.randaug, scale=tuple(d.rrc_scale),
                                                                      random_erasing=d.random_erasing))
    val_set = imagenet_dataset(root, d.val_split, eval_transform(img_size=size, mean=mean, std=std))
    if d.limit:  # never the first N of torchvision's class-sorted split
        train_set = torch.utils.data.Subset(train_set, stratified_subset(train_set.targets, d.limit,
                                                                         recipe.seed).tolist())
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return _Data(len(train_set), None, None, manifest, (size, size), train_set=train_set, val_set=val_set)


def _augment(x: torch.Tensor, d, generator) -> torch.Tensor:
    """fmnist augmentation: horizontal flip and an integer shift with zero fill (one draw per image)."""
    B = x.shape[0]
    if d.hflip > 0:
        flip = torch.rand(B, generator=generator) < d.hflip
        x = torch.where(flip.view(B, 1, 1, 1).to(x.device), x.flip(-1), x)
    if d.translate > 0:
        t = d.translate
        shifts = torch.randint(-t, t + 1, (B, 2), generator=generator)
        padded = F.pad(x, (t, t, t, t))
        H, W = x.shape[-2:]
        rows = (torch.arange(H)[None] + t - shifts[:, :1]).to(x.device)  # (B, H)
        cols = (torch.arange(W)[None] + t - shifts[:, 1:]).to(x.device)
        x = padded[torch.arange(B, device=x.device)[:, None, None, None], torch.arange(x.shape[1], device=x.device)
                   [None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    return x


class _Batches:
    """Deterministic batches of an epoch for one rank: the order is a permutation seeded by (seed, epoch), so a
    resumed run skips exactly the batches already done."""

    def __init__(self, data: _Data, recipe: Recipe, rank: int, world: int):
        self.data, self.recipe, self.rank, self.world = data, recipe, rank, world
        if recipe.batch_size % world:
            raise ValueError(f"batch_size {recipe.batch_size} is not divisible by the {world} DDP processes")
        self.local_batch = recipe.batch_size // world
        self.steps_per_epoch = data.train_len // recipe.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {recipe.batch_size} is larger than the {data.train_len} training images")

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.recipe.seed * 100_003 + epoch)
        return torch.randperm(self.data.train_len, generator=g)

    def iterate(self, epoch: int, start_step: int):
        perm = self.order(epoch)
        n = self.steps_per_epoch * self.recipe.batch_size
        lb = self.local_batch
        if self.data.train_images is not None:
            for step in range(start_step, self.steps_per_epoch):
                idx = perm[step * self.recipe.batch_size:][self.rank * lb:(self.rank + 1) * lb]
                yield self.data.train_images[idx], self.data.train_labels[idx]
            return
        sampler = [perm[s * self.recipe.batch_size:][self.rank * lb:(self.rank + 1) * lb].tolist()
                   for s in range(start_step, n // self.recipe.batch_size)]
        loader = torch.utils.data.DataLoader(self.data.train_set, batch_sampler=sampler,
                                             num_workers=self.recipe.data.workers, pin_memory=torch.cuda.is_available(),
                                             persistent_workers=False)
        yield from loader


# ------------------------------------------------------------------------------------------------ state

def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "sampler": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    generator.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_model(model: torch.nn.Module, path: Path, record: dict) -> dict:
    """Weights as safetensors (a plain ViT under timm's key names) + ``<path>.json`` record; atomic."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # an MAE is stored in the MAE repository's layout (timm encoder names + decoder), like the official file
    weights = model.mae_state_dict() if hasattr(model, "mae_state_dict") else model.state_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"format": record.get("format", "")})
    os.replace(tmp, path)
    record = {**record, "sha256": sha256_file(path), "size": path.stat().st_size, "file": path.name}
    atomic_write_json(path.with_suffix(".json"), record)
    return record


# ------------------------------------------------------------------------------------------------ the loop

def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _model_format(model) -> str:
    from .models import SPoTViT

    if isinstance(model, SPoTViT):
        return "spot_vit"
    return "mae" if model.__class__.__name__ == "SubpixelMAE" else "timm_vit"


def _geometry(model) -> tuple[tuple[int, int], int, dict, int | None]:
    """(patch size, image height, pretrained cfg, num_classes) of a timm ViT, SPoTViT or SubpixelMAE."""
    from .models import SPoTViT

    m = getattr(model, "encoder", model)
    if isinstance(m, SPoTViT):
        return tuple(m.patch_size), m.image_size[0], m.pretrained_cfg, m.num_classes
    return tuple(m.patch_embed.patch_size), m.patch_embed.img_size[0], m.pretrained_cfg or {}, m.num_classes


@torch.no_grad()
def evaluate_during_training(model, recipe: Recipe, data: _Data, sampler: TokenSampler, device, amp_ctx) -> dict:
    """Validation after an epoch: classify → top-1 % at the full grid and at ``eval_budgets`` (the training mode's
    positions: Isotropic layout for subpixel, fixed random grid subsets for grid_subset); mae → mean loss."""
    model.eval()
    g = torch.Generator().manual_seed(recipe.seed + 7)
    results = {}
    budgets = [None] + [int(m) for m in recipe.eval_budgets] if recipe.tokens.mode != "grid" else [None]

    def batches():
        if data.val_images is not None:
            for i in range(0, len(data.val_labels), recipe.eval_batch_size):
                yield data.val_images[i:i + recipe.eval_batch_size], data.val_labels[i:i + recipe.eval_batch_size]
        else:
            yield from torch.utils.data.DataLoader(data.val_set, batch_size=recipe.eval_batch_size,
                                                   num_workers=recipe.data.workers)

    if recipe.task == "mae":
        total, n = 0.0, 0
        for x, _ in batches():
            x = x.to(device)
            positions = sampler.grid[None] if recipe.tokens.mode == "grid" else sampler(len(x), g)[0]
            with amp_ctx():
                out = model(x, positions.to(device), mask_ratio=recipe.mae.mask_ratio, generator=g)
            total += float(out.loss) * len(x)
            n += len(x)
        return {"val_loss": total / n}
    for m in budgets:
        correct = n = 0
        for x, y in batches():
            x, y = x.to(device), y.to(device)
            with amp_ctx():
                if m is None:
                    logits = model(x)
                elif recipe.tokens.mode == "grid_subset":
                    keep = torch.rand(len(x), sampler.num_patches, generator=g).argsort(1)[:, :m].sort(1).values
                    logits = model(x, sampler.grid[keep].to(device))
                else:
                    logits = model(x, prior=recipe.tokens.prior, num_tokens=m)
            correct += int((logits.argmax(-1) == y).sum())
            n += len(y)
        results["val_acc1" if m is None else f"val_acc1@{m}"] = 100.0 * correct / n
    return results


def train(recipe: Recipe, *, data_root, out, state_dir, parent=None, device=None, log=print, on_step=None,
          progress: bool = True, config_source: str | None = None) -> dict:
    """Run ``recipe``; write ``out`` (safetensors) + ``out.json`` (record) + ``out.log.jsonl``; return the record.

    ``state_dir`` holds the resumable state (``state.pt``) and the live per-epoch log; an existing state of the same
    recipe is resumed. ``on_step(global_step)`` is called after every optimiser step (tests use it to send signals).
    """
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    start_time = time.time()
    out, state_dir = Path(out), Path(state_dir)
    rank, world, local_rank = _dist_env()
    distributed = world > 1
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if distributed and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0

    torch.manual_seed(recipe.seed + rank)
    np.random.seed(recipe.seed + rank)
    random.seed(recipe.seed + rank)
    model = build_training_model(recipe, parent, log=log if is_main else (lambda *_: None)).to(device)
    patch, img_size, cfg, num_classes = _geometry(model)
    data = _load_data(recipe, data_root, {"img_size": img_size, "mean": cfg.get("mean", (0.5,)),
                                          "std": cfg.get("std", (0.5,))})
    sampler = TokenSampler(recipe.tokens, data.image_size, patch)
    batches = _Batches(data, recipe, rank, world)
    steps_per_epoch = batches.steps_per_epoch

    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.amp)
    use_amp = device.type == "cuda" and amp_dtype is not None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def amp_ctx():
        return torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    mixup = None
    if recipe.task == "classify" and recipe.mixup.active:
        mx = recipe.mixup
        mixup = Mixup(mixup_alpha=mx.mixup_alpha, cutmix_alpha=mx.cutmix_alpha, prob=mx.prob,
                      switch_prob=mx.switch_prob, label_smoothing=recipe.label_smoothing, num_classes=num_classes)
    soft_ce = SoftTargetCrossEntropy()

    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + rank)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path = state_dir / STATE_FILE
    log_path = state_dir / "log.jsonl"
    recipe_dict = recipe_to_dict(recipe)
    # what a state must match to be resumed: the recipe, the parent checkpoint and data it started from, the DDP
    # world size
    from .results import input_checksums

    checksums = input_checksums({"parent": parent} if parent else None, data_root)  # hashed once per run
    inputs = {k: v["sha256"] for k, v in checksums.items()}
    epoch, step_in_epoch, global_step, history, images_seen, train_time = 0, 0, 0, [], 0, 0.0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        differs = [name for name, ours, theirs in (("recipe", recipe_dict, state["recipe"]),
                                                   ("parent checkpoint or data", inputs, state.get("inputs")),
                                                   ("DDP world size", world, state.get("world"))) if ours != theirs]
        if differs:
            raise ValueError(f"{state_path} holds the unfinished state of another run (different "
                             f"{', '.join(differs)}); delete {state_dir} to start over, or run what made it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"][rank] if isinstance(state["rng"], list) else state["rng"], generator)
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        history, images_seen, train_time = state["history"], state["images_seen"], state["train_time"]
        if is_main:
            log(f"resuming {recipe.name} from {state_path}: epoch {epoch + 1}, step {step_in_epoch}/{steps_per_epoch}")

    train_model = model
    if distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def save_state(epoch_, step_):
        rngs = [None] * world
        mine = _rng_state(generator)
        if distributed:
            torch.distributed.all_gather_object(rngs, mine)
        else:
            rngs = [mine]
        if is_main:
            _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rngs,
                                "epoch": epoch_, "step_in_epoch": step_, "global_step": global_step,
                                "history": history, "images_seen": images_seen, "train_time": train_time,
                                "recipe": recipe_dict, "world": world, "inputs": inputs}, state_path)

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for epoch in range(epoch, recipe.epochs):
            model.train()
            bar = None
            if is_main and progress:
                from tqdm import tqdm

                bar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"{recipe.name} {epoch + 1}/{recipe.epochs}",
                           dynamic_ncols=True, mininterval=2.0)
            t0, seen0 = time.time(), 0
            for x, y in batches.iterate(epoch, step_in_epoch):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if data.train_images is not None:
                    x = _augment(x, recipe.data, generator)
                positions, m = sampler(len(x), generator)
                if positions is not None:
                    positions = positions.to(device)
                with amp_ctx():
                    if recipe.task == "mae":
                        pos = positions if positions is not None else sampler.grid[None].expand(len(x), -1, -1).to(device)
                        loss = train_model(x, pos, mask_ratio=recipe.mae.mask_ratio, generator=generator).loss
                    else:
                        if mixup is not None:
                            x, target = mixup(x, y)
                        logits = train_model(x) if positions is None else train_model(x, positions)
                        loss = (soft_ce(logits, target) if mixup is not None
                                else F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing))
                flags = torch.tensor([float(not torch.isfinite(loss.detach())), 0.0], device=device)
                if flags[0] == 0:
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if recipe.optimizer.clip_grad:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.optimizer.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                flags[1] = float(stop["signal"] is not None)
                if distributed:
                    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
                if flags[0]:
                    raise NonFiniteLossError(
                        f"{recipe.name}: the loss is {float(loss.detach())} at epoch {epoch + 1}, step {step_in_epoch + 1}. "
                        f"Nothing was saved from this epoch; the last good state is "
                        f"{state_path if state_path.is_file() else '(none: it failed in the first epoch)'}. "
                        "Lower optimizer.lr, set optimizer.clip_grad, or use amp: none, then run the same command "
                        "again (it resumes from that state).")
                global_step += 1
                step_in_epoch += 1
                scheduler.step_update(num_updates=global_step)
                images_seen += len(x) * world
                seen0 += len(x) * world
                if bar is not None:
                    bar.update(1)
                    if step_in_epoch % 10 == 0 or step_in_epoch == steps_per_epoch:
                        bar.set_postfix(loss=f"{float(loss):.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}",
                                        img_s=f"{seen0 / max(time.time() - t0, 1e-9):.0f}", m=m)
                if on_step is not None:
                    on_step(global_step)
                    flags[1] = max(float(flags[1]), float(stop["signal"] is not None))
                if flags[1]:
                    train_time += time.time() - t0
                    save_state(epoch, step_in_epoch)
                    raise TrainingInterrupted(
                        f"{recipe.name}: stopped by signal at epoch {epoch + 1}, step {step_in_epoch}; state saved to "
                        f"{state_path}; run the same command again to resume")
            if bar is not None:
                bar.close()
            train_time += time.time() - t0
            metrics = evaluate_during_training(model, recipe, data, sampler, device, amp_ctx) if is_main else {}
            entry = {"epoch": epoch + 1, "step": global_step, "train_loss_last": float(loss.detach()),
                     "lr": optimizer.param_groups[-1]["lr"], "images_per_s": seen0 / max(time.time() - t0, 1e-9),
                     **metrics}
            history.append(entry)
            step_in_epoch = 0
            save_state(epoch + 1, 0)
            if is_main:
                with open(log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                log(f"{recipe.name} epoch {epoch + 1}/{recipe.epochs}: " +
                    ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k not in ("epoch", "step")))
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

    record = {}
    if is_main:
        record = _final_record(model, recipe, recipe_dict, parent, checksums, data_root, data, history, device, world,
                               images_seen, train_time, time.time() - start_time, config_source)
        record = save_model(model, out, record)
        (out.with_suffix(".log.jsonl")).write_text("".join(json.dumps(h) + "\n" for h in history))
        log(f"wrote {out} ({record['size'] / 1e6:.1f} MB) and {out.with_suffix('.json')}")
        # the run is finished: its resumable state has served (a later run, e.g. of an edited recipe, starts afresh)
        for leftover in (state_path, log_path):
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            state_dir.rmdir()
    if distributed:
        torch.distributed.barrier()
    return record


def _final_record(model, recipe, recipe_dict, parent, checksums, data_root, data, history, device, world, images_seen,
                  train_time, wall_time, config_source) -> dict:
    inputs = dict(checksums)
    inputs.update({f"data:{k}": v["sha256"] for k, v in data.manifest.get("splits", {}).items() if "sha256" in v})
    fmt = _model_format(model)
    timm_kwargs = _timm_kwargs(recipe, parent)
    timm_kwargs.pop("drop_path_rate", None)
    record = {
        "format": fmt,
        "origin": f"trained here by `spot train` (recipe {recipe.name})",
        "backbone": recipe.model.backbone,
        "timm_kwargs": timm_kwargs,
        "spot": {"window": recipe.model.window, "pe_sigma": recipe.model.pe_sigma} if fmt != "timm_vit" else None,
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
    return record
