"""``spot demo``: wrap a timm ViT with the subpixel tokenizer and classify real images at several token budgets.

Runs offline on the CPU in about a minute: scikit-learn's bundled handwritten digits (1 797 real 8×8 scans,
upsampled to 32×32) train a small grid ViT (timm, patch 8 → a 4×4 grid of 16 tokens); the trained ViT is then wrapped
with :class:`spot.SPoTViT` (no retraining) and evaluated on held-out digits with 2, 4, 8 and 16 tokens
(12.5 / 25 / 50 / 100 % of the grid, the paper's fractions) placed by several priors, next to the PatchDropout
baseline (random grid patches). It also checks grid equivalence (SPoT on the grid = the ViT).

Two SPoT models are shown: the ViT wrapped as it is (off-grid tokens are new to it, so it only works on the grid),
and a copy briefly retrofitted (a few epochs on jittered Isotropic tokens at random budgets), the idea of the paper's
50-epoch retrofitting (the real recipe is the training stage's).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..weights.backbones import create_backbone
from ..core.models import PatchDropoutViT, SPoTViT
from ..core.positions import grid_positions
from ..core.placement import sample_positions
from ..provenance import atomic_output, atomic_write_json, atomic_write_text, provenance
from ..paper.plotting import plot_positions

IMAGE_SIZE = 32


def load_digits_tensors(seed: int, test_fraction: float):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    return (x[order[n_test:]], y[order[n_test:]]), (x[order[:n_test]], y[order[:n_test]])


def fit(model, train, epochs: int, batch_size: int, lr: float, seed: int, forward, label: str, log=print):
    """AdamW + one-cycle schedule, label-smoothed cross-entropy; ``forward(model, images, generator)`` → logits."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(train[1]) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(train[1]), generator=g)
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(forward(model, train[0][idx], g), train[1][idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log(f"  {label} epoch {epoch + 1:2d}/{epochs}  train loss {total / len(perm):.3f}")
    return model.eval()


def grid_forward(vit, images, generator):
    return vit(images)


def subpixel_forward(model: SPoTViT, images, generator, max_tokens: int = 16):
    """The demo's stand-in for retrofitting: a random budget 2…max_tokens per batch, tokens on the Isotropic layout
    each jittered uniformly within ±½ of the layout spacing (1/√m), independently per image."""
    m = int(torch.randint(2, max_tokens + 1, (1,), generator=generator))
    base = sample_positions("isotropic", m, len(images), tuple(images.shape[-2:]))
    jitter = (torch.rand(base.shape, generator=generator, dtype=base.dtype) - 0.5) / m ** 0.5
    return model(images, (base + jitter).clamp(0, 1))


@torch.no_grad()
def accuracy(fn, test, batch_size: int = 250) -> float:
    correct = 0
    for i in range(0, len(test[1]), batch_size):
        correct += (fn(test[0][i:i + batch_size], i).argmax(-1) == test[1][i:i + batch_size]).sum().item()
    return 100.0 * correct / len(test[1])


def run_demo(out: Path, *, epochs: int = 15, retrofit_epochs: int = 10, seed: int = 0, threads: int | None = None, log=print) -> dict:
    start = time.time()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train, test = load_digits_tensors(seed, test_fraction=0.3)
    log(f"digits: {len(train[1])} train / {len(test[1])} test images, {IMAGE_SIZE}×{IMAGE_SIZE}, patch 8 → 16 grid tokens")
    vit = create_backbone("vit_nano_patch8", img_size=IMAGE_SIZE, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
    log(f"training a grid ViT (timm, {sum(p.numel() for p in vit.parameters()) / 1e3:.0f} k parameters) for {epochs} epochs")
    fit(vit, train, epochs, batch_size=64, lr=2e-3, seed=seed, forward=grid_forward, label="grid", log=log)

    model = SPoTViT.from_timm(vit).eval()
    log(f"retrofitting a copy with subpixel tokens for {retrofit_epochs} epochs")
    retrofitted = fit(SPoTViT.from_timm(copy.deepcopy(vit)), train, retrofit_epochs, batch_size=64, lr=5e-4,
                      seed=seed + 1, forward=subpixel_forward, label="retrofit", log=log)
    baseline = PatchDropoutViT(vit).eval()
    grid = grid_positions((IMAGE_SIZE, IMAGE_SIZE), 8)
    with torch.no_grad():
        equivalence = (vit(test[0]) - model(test[0], grid)).abs().max().item()
    rows = [{"method": "ViT (grid)", "prior": "patch grid", "num_tokens": 16,
             "acc1": accuracy(lambda x, i: vit(x), test)}]
    budgets = [2, 4, 8, 16]
    repeats = 3
    for m in budgets:
        accs = [accuracy(lambda x, i: baseline(x, m, torch.Generator().manual_seed(seed + 1000 * r + i)), test)
                for r in range(repeats)]
        rows.append({"method": "ViT + PatchDropout", "prior": "random grid patches", "num_tokens": m,
                     "acc1": sum(accs) / repeats})
        for method, net in (("SPoT, wrapped as is", model), ("SPoT, retrofitted", retrofitted)):
            for prior in ("uniform", "gaussian", "sobol", "isotropic", "center"):
                reps = 1 if prior in ("isotropic", "center") else repeats
                accs = [accuracy(lambda x, i: net(x, prior=prior, num_tokens=m,
                                                  generator=torch.Generator().manual_seed(seed + 1000 * r + i)), test)
                        for r in range(reps)]
                rows.append({"method": method, "prior": prior, "num_tokens": m, "acc1": sum(accs) / reps})

    table = ["| method | prior | " + " | ".join(f"{m} tok." for m in budgets) + " |",
             "|---|---|" + "---|" * len(budgets)]
    for method, prior in dict.fromkeys((r["method"], r["prior"]) for r in rows[1:]):
        accs = {r["num_tokens"]: r["acc1"] for r in rows if (r["method"], r["prior"]) == (method, prior)}
        table.append(f"| {method} | {prior} | " + " | ".join(f"{accs[m]:.1f}" for m in budgets) + " |")
    summary = (f"Full-grid ViT accuracy {rows[0]['acc1']:.1f} %; grid equivalence max |Δlogit| = {equivalence:.2e}\n\n"
               + "\n".join(table) + "\n")
    result = {"rows": rows, "grid_equivalence_max_abs_diff": equivalence, "wall_time_s": time.time() - start,
              "provenance": provenance({"epochs": epochs, "retrofit_epochs": retrofit_epochs, "image_size": IMAGE_SIZE, "budgets": budgets,
                                        "repeats": repeats, "data": "sklearn.datasets.load_digits"}, seed=seed)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "demo_results.json", result)
    atomic_write_text(out / "demo_results.md", summary)
    _figure(out / "demo_positions.png", test[0][0, 0], model)
    log("\n" + summary)
    log(f"wrote {out / 'demo_results.json'}, {out / 'demo_results.md'}, {out / 'demo_positions.png'} "
        f"in {time.time() - start:.0f} s")
    return result


def _figure(path: Path, image: torch.Tensor, model: SPoTViT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    size = tuple(image.shape)
    plot_positions(image, grid_positions(size, 8), 8, ax=axes[0], grid_patch=8, title="patch grid (16)")
    plot_positions(image, sample_positions("isotropic", 4, 1, size)[0], 8, ax=axes[1], grid_patch=8,
                   title="Isotropic, 4 tokens")
    plot_positions(image, sample_positions("center", 4, 1, size)[0], 8, ax=axes[2], grid_patch=8,
                   title="Center, 4 tokens")
    fig.tight_layout()
    with atomic_output(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")  # nothing clipped: titles, ticks
    plt.close(fig)
