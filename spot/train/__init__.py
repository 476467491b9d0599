"""``spot train``: run a recipe (spot/train/recipes.py) — ViT pre-training, SPoT retrofitting, its grid control, MAE.

The package, one unit per concern (as MAE separates ``main_pretrain`` from ``engine_pretrain``): :mod:`.loop` — one
step, one epoch, the run; :mod:`.tokens` — the token positions of a batch; :mod:`.data` — the images, augmentation
and deterministic epoch batches; :mod:`.build` — model, optimiser, scheduler; :mod:`.state` — the resumable state,
the finished model and its record.

Data path of one step: images → token positions (the recipe's sampler: grid, subpixel, or a grid subset) → model
(timm ViT, :class:`~spot.core.models.SPoTViT` or :class:`~spot.core.mae.SubpixelMAE`) → loss → AdamW with layer-wise lr decay
(timm's optimiser factory) under timm's per-step scheduler.

Robustness: the full training state (model, optimiser, scheduler, grad scaler, every RNG, the position in the epoch)
is saved atomically at the end of every epoch and when SIGTERM/SIGINT arrives, under ``state_dir`` — not a workflow
output, so Snakemake's cleanup of a failed job does not delete it. Running the same command again resumes and
produces the same weights as an uninterrupted run. A non-finite loss stops the run with
:class:`NonFiniteLossError` and leaves the last good state in place.

Under ``torchrun`` the same command uses DistributedDataParallel (world size from the environment): the global
batch is split over the processes, each process draws its own token positions, rank 0 writes every file.
"""
from .._lazy import lazy_exports

# the names load their module on first use: spot.train.recipes (the workflow reads it) imports without torch
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".build": ("build_optimizer", "build_scheduler", "build_training_model", "timm_kwargs"),
    ".loop": ("NonFiniteLossError", "TrainingInterrupted", "evaluate_during_training", "train", "train_one_epoch"),
    ".state": ("save_model",),
    ".tokens": ("TokenSampler",),
})
