"""The data of a training run: the images (canvas in memory, ImageNet through DataLoader workers), the canvas
augmentation, and the deterministic batches of an epoch (so a resumed run skips exactly the batches done)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.subsets import stratified_subset
from .recipes import Recipe
from ..data.imagenet import imagenet_dataset
from ..data.transforms import eval_transform, train_transform
from ..data.fmnist import load_split

__all__ = ["TrainingData", "load_data", "augment", "EpochBatches"]


@dataclass
class TrainingData:
    train_len: int
    val_images: torch.Tensor | None  # fmnist: in memory (normalised)
    val_labels: torch.Tensor | None
    manifest: dict
    image_size: tuple[int, int]
    train_images: torch.Tensor | None = None
    train_labels: torch.Tensor | None = None
    train_set: object = None  # imagenet datasets
    val_set: object = None


def load_data(recipe: Recipe, root, model_cfg: dict) -> TrainingData:
    root = Path(root)
    d = recipe.data
    if d.kind == "fmnist":
        mean = torch.tensor(d.mean).view(1, -1, 1, 1)
        std = torch.tensor(d.std).view(1, -1, 1, 1)
        xtr, ytr = load_split(root, d.train_split).tensors()
        xva, yva = load_split(root, d.val_split).tensors()
        if d.limit:
            keep = torch.from_numpy(stratified_subset(ytr.numpy(), d.limit, recipe.seed))
            xtr, ytr = xtr[keep], ytr[keep]
        manifest = json.loads((root / "manifest.json").read_text())
        return TrainingData(len(ytr), (xva - mean) / std, yva, manifest, tuple(xtr.shape[-2:]),
                     train_images=(xtr - mean) / std, train_labels=ytr)

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
    return TrainingData(len(train_set), None, None, manifest, (size, size), train_set=train_set, val_set=val_set)


def augment(x: torch.Tensor, d, generator) -> torch.Tensor:
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


class EpochBatches:
    """Deterministic batches of an epoch for one rank: the order is a permutation seeded by (seed, epoch), so a
    resumed run skips exactly the batches already done."""

    def __init__(self, data: TrainingData, recipe: Recipe, rank: int, world: int):
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


