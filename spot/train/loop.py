"""The training loop: one step, one epoch, the validation after it, and the whole run (:func:`train`).

Data path of one step: images → (canvas augmentation) → token positions (:class:`~spot.train.tokens.TokenSampler`)
→ model → loss → AdamW with layer-wise lr decay under timm's per-step scheduler. The draws of a step come, in this
order, from the run's generator (augmentation, token positions, MAE's masks) and torch's (mixup): the resumable
state restores both, so a resumed run equals an uninterrupted one.
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

from ..core.placement import ImageBatch, place
from .recipes import Recipe, recipe_to_dict
from .build import build_optimizer, build_scheduler, build_training_model, hold_frozen
from .data import EpochBatches, TrainingData, augment, load_data
from .state import Progress, ResumableState, final_record, save_model
from .tokens import TokenSampler
from ..core.models import SPoTViT
from ..core.pruning import PrunedViT
from ..core.policy import PlacedSPoT
from ..core.pruning.loss import distillation_loss, rate_loss, token_loss
from ..results import input_checksums
from timm.loss import SoftTargetCrossEntropy
from tqdm import tqdm
from timm.data import Mixup
import copy

__all__ = ["train", "TrainingInterrupted", "NonFiniteLossError", "evaluate_during_training"]


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; the state was saved and the same command resumes."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good state (end of the previous epoch) is kept."""


def _dist_env() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _geometry(model) -> tuple[tuple[int, int], int, dict, int | None]:
    """(patch size, image height, pretrained cfg, num_classes) of a timm ViT, SPoTViT, SubpixelMAE, PrunedViT or
    PlacedSPoT."""

    m = model.model if isinstance(model, (PrunedViT, PlacedSPoT)) else getattr(model, "encoder", model)
    if isinstance(m, SPoTViT):
        return tuple(m.patch_size), m.image_size[0], m.pretrained_cfg, m.num_classes
    return tuple(m.patch_embed.patch_size), m.patch_embed.img_size[0], m.pretrained_cfg or {}, m.num_classes


@torch.no_grad()
def evaluate_during_training(model, recipe: Recipe, data: TrainingData, sampler: TokenSampler, device, amp_ctx) -> dict:
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
                elif recipe.task == "place":  # the policy's positions
                    logits = model(x, num_tokens=m)
                elif recipe.tokens.mode == "grid_subset":  # fixed random grid subsets (the grid control)
                    batch = ImageBatch(sampler.image_size, len(x), patch=sampler.patch_size)
                    logits = model(x, place("grid_random", m, batch, g).to(device))
                else:
                    logits = model(x, prior=recipe.tokens.prior, num_tokens=m)
            correct += int((logits.argmax(-1) == y).sum())
            n += len(y)
        results["val_acc1" if m is None else f"val_acc1@{m}"] = 100.0 * correct / n
    return results



@dataclass
class _Run:
    """Everything one training run holds."""

    recipe: Recipe
    model: torch.nn.Module
    train_model: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: object
    scheduler: object
    scaler: object
    generator: torch.Generator
    sampler: TokenSampler
    data: TrainingData
    batches: EpochBatches
    device: torch.device
    amp_dtype: object
    mixup: object
    world: int
    is_main: bool
    state: ResumableState
    checksums: dict  # of the parent checkpoint and the data manifest, hashed once per run
    progress: Progress
    teacher: torch.nn.Module | None = None  # task prune: the frozen parent (Eq. 15's KL and token terms)

    def amp(self):
        use = self.device.type == "cuda" and self.amp_dtype is not None
        return torch.autocast("cuda", dtype=self.amp_dtype) if use else contextlib.nullcontext()

    @property
    def modules(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def save(self, epoch: int, step: int) -> None:
        self.state.save(self.modules, self.generator, self.progress, epoch=epoch, step=step, world=self.world,
                        is_main=self.is_main)


def _loss(run: _Run, x, y):
    """One forward pass of a batch → (loss, budget m)."""

    recipe = run.recipe
    if run.data.train_images is not None:
        x = augment(x, recipe.data, run.generator)
    positions, m = run.sampler(len(x), run.generator)
    if positions is not None:
        positions = positions.to(run.device)
    with run.amp():
        if recipe.task == "mae":
            pos = positions if positions is not None else \
                run.sampler.grid[None].expand(len(x), -1, -1).to(run.device)
            return run.train_model(x, pos, mask_ratio=recipe.mae.mask_ratio, generator=run.generator).loss, m
        target = None
        if run.mixup is not None:
            x, target = run.mixup(x, y)
        inputs = (x,) if positions is None else (x, positions)
        if recipe.task == "place":  # the policy places the m tokens of the schedule (the sampler's positions unused)
            logits = run.train_model(x, num_tokens=m)
        else:
            logits = run.train_model(*inputs)
        if target is not None:
            loss = SoftTargetCrossEntropy()(logits, target)
        else:
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        if recipe.task == "prune":
            loss = loss + _pruning_terms(run, inputs, logits)
        return loss, m


def _pruning_terms(run: _Run, inputs, logits):
    """Eq. 15 of the SPOT-AD paper beyond the cross-entropy: λ1·rate + λ2·KL(teacher ‖ student) + λ3·token cosine."""

    p, state = run.recipe.prune, run.model.state
    total = logits.new_zeros(())
    rate = rate_loss(state.decisions, p.keep_ratio, state.num_patches)
    if rate is not None and p.rate_weight:
        total = total + p.rate_weight * rate
    if p.distill_weight or p.token_weight:
        with torch.no_grad():
            teacher_tokens = run.teacher.forward_features(*inputs)
            teacher_logits = run.teacher.forward_head(teacher_tokens)
        if p.distill_weight:
            total = total + p.distill_weight * distillation_loss(logits, teacher_logits)
        if p.token_weight:
            total = total + p.token_weight * token_loss(run.model.last_tokens, teacher_tokens, state, p.token_loss)
    return total


def _step(run: _Run, loss) -> bool:
    """Backward and optimiser step when the loss is finite; whether it was."""
    finite = bool(torch.isfinite(loss.detach()))
    if finite:
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if run.recipe.optimizer.clip_grad:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.recipe.optimizer.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    return finite


def train_one_epoch(run: _Run, epoch: int, stop: dict, on_step=None, progress_bar: bool = True) -> tuple:
    """The batches of ``epoch`` from the saved position on → (last loss, images seen, seconds). A non-finite loss
    raises :class:`NonFiniteLossError`; a signal (``stop``) saves the state and raises :class:`TrainingInterrupted`
    — both agreed over DDP ranks, so every rank stops at the same step."""
    recipe, p = run.recipe, run.progress
    run.model.train(not (recipe.task == "prune" and recipe.prune.eval_mode))
    bar = None
    if run.is_main and progress_bar:

        bar = tqdm(total=run.batches.steps_per_epoch, initial=p.step_in_epoch,
                   desc=f"{recipe.name} {epoch + 1}/{recipe.epochs}", dynamic_ncols=True, mininterval=2.0)
    t0, seen, loss = time.time(), 0, None
    for x, y in run.batches.iterate(epoch, p.step_in_epoch):
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        loss, m = _loss(run, x, y)
        flags = torch.tensor([float(not _step(run, loss)), float(stop["signal"] is not None)], device=run.device)
        if run.world > 1:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if flags[0]:
            raise NonFiniteLossError(
                f"{recipe.name}: the loss is {float(loss.detach())} at epoch {epoch + 1}, step {p.step_in_epoch + 1}. "
                f"Nothing was saved from this epoch; the last good state is "
                f"{run.state.path if run.state.path.is_file() else '(none: it failed in the first epoch)'}. "
                "Lower optimizer.lr, set optimizer.clip_grad, or use amp: none, then run the same command "
                "again (it resumes from that state).")
        p.global_step += 1
        p.step_in_epoch += 1
        run.scheduler.step_update(num_updates=p.global_step)
        hold_frozen(run.optimizer, p.global_step)
        p.images_seen += len(x) * run.world
        seen += len(x) * run.world
        if bar is not None:
            bar.update(1)
            if p.step_in_epoch % 10 == 0 or p.step_in_epoch == run.batches.steps_per_epoch:
                bar.set_postfix(loss=f"{float(loss):.3f}", lr=f"{run.optimizer.param_groups[-1]['lr']:.2e}",
                                img_s=f"{seen / max(time.time() - t0, 1e-9):.0f}", m=m)
        if on_step is not None:
            on_step(p.global_step)
            flags[1] = max(float(flags[1]), float(stop["signal"] is not None))
        if flags[1]:
            p.train_time += time.time() - t0
            run.save(epoch, p.step_in_epoch)
            raise TrainingInterrupted(
                f"{recipe.name}: stopped by signal at epoch {epoch + 1}, step {p.step_in_epoch}; state saved to "
                f"{run.state.path}; run the same command again to resume")
    if bar is not None:
        bar.close()
    return loss, seen, time.time() - t0


def _setup(recipe: Recipe, data_root, state_dir, parent, device, log) -> _Run:
    """The run: process group, seeds, model, data, token sampler, optimiser, scheduler, scaler, mixup, the state
    (resumed when there is one of this run)."""


    rank, world, local_rank = _dist_env()
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if world > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    torch.manual_seed(recipe.seed + rank)
    np.random.seed(recipe.seed + rank)
    random.seed(recipe.seed + rank)
    model = build_training_model(recipe, parent, log=log if is_main else (lambda *_: None)).to(device)
    teacher = None
    if recipe.task == "prune":  # the parent as it was (before any resumed state is loaded), frozen

        teacher = copy.deepcopy(model.model).eval().requires_grad_(False)
    patch, img_size, cfg, num_classes = _geometry(model)
    data = load_data(recipe, data_root, {"img_size": img_size, "mean": cfg.get("mean", (0.5,)),
                                         "std": cfg.get("std", (0.5,))})
    sampler = TokenSampler(recipe.tokens, data.image_size, patch)
    batches = EpochBatches(data, recipe, rank, world)
    optimizer = build_optimizer(model, recipe, total_steps=recipe.epochs * batches.steps_per_epoch)
    scheduler = build_scheduler(optimizer, recipe, batches.steps_per_epoch)
    hold_frozen(optimizer, 0)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.amp)
    use_amp = device.type == "cuda" and amp_dtype is not None
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    mixup = None
    if recipe.task in ("classify", "prune") and recipe.mixup.active:
        mx = recipe.mixup
        mixup = Mixup(mixup_alpha=mx.mixup_alpha, cutmix_alpha=mx.cutmix_alpha, prob=mx.prob,
                      switch_prob=mx.switch_prob, label_smoothing=recipe.label_smoothing, num_classes=num_classes)
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + rank)
    checksums = input_checksums({"parent": parent} if parent else None, data_root)  # hashed once per run
    state = ResumableState(state_dir, {"recipe": recipe_to_dict(recipe), "world": world,
                                       "inputs": {k: v["sha256"] for k, v in checksums.items()}})
    run = _Run(recipe, model, model, optimizer, scheduler, scaler, generator, sampler, data, batches, device,
               amp_dtype, mixup, world, is_main, state, checksums, Progress(), teacher)
    resumed = state.resume(run.modules, generator, rank)
    if resumed is not None:
        run.progress = resumed
        if is_main:
            log(f"resuming {recipe.name} from {state.path}: epoch {resumed.epoch + 1}, step "
                f"{resumed.step_in_epoch}/{batches.steps_per_epoch}")
    if world > 1:
        run.train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return run


def train(recipe: Recipe, *, data_root, out, state_dir, parent=None, device=None, log=print, on_step=None,
          progress: bool = True, config_source=None) -> dict:
    """Run ``recipe``; write ``out`` (safetensors) + ``out.json`` (record) + ``out.log.jsonl``; return the record.

    ``state_dir`` holds the resumable state (``state.pt``) and the live per-epoch log; an existing state of the same
    recipe is resumed. ``on_step(global_step)`` is called after every optimiser step (tests use it to send signals).
    """
    start_time = time.time()
    out = Path(out)
    run = _setup(recipe, data_root, state_dir, parent, device, log)
    p = run.progress
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for epoch in range(p.epoch, recipe.epochs):
            loss, seen, seconds = train_one_epoch(run, epoch, stop, on_step, progress)
            p.train_time += seconds
            metrics = evaluate_during_training(run.model, recipe, run.data, run.sampler, run.device, run.amp) \
                if run.is_main else {}
            entry = {"epoch": epoch + 1, "step": p.global_step, "train_loss_last": float(loss.detach()),
                     "lr": run.optimizer.param_groups[-1]["lr"], "images_per_s": seen / max(seconds, 1e-9),
                     **metrics}
            p.history.append(entry)
            p.step_in_epoch = 0
            run.save(epoch + 1, 0)
            if run.is_main:
                with open(run.state.log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                log(f"{recipe.name} epoch {epoch + 1}/{recipe.epochs}: " +
                    ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k not in ("epoch", "step")))
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    record = {}
    if run.is_main:
        record = final_record(run.model, recipe, run.state.identity["recipe"], parent, run.checksums,
                              data_root, run.data, p.history, run.device, run.world, p.images_seen, p.train_time,
                              time.time() - start_time, config_source)
        record = save_model(run.model, out, record)
        (out.with_suffix(".log.jsonl")).write_text("".join(json.dumps(h) + "\n" for h in p.history))
        log(f"wrote {out} ({record['size'] / 1e6:.1f} MB) and {out.with_suffix('.json')}")
        run.state.finish()
    if run.world > 1:
        torch.distributed.barrier()
    return record
