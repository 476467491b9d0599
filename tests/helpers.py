"""Shared test helpers: prerequisites that CI must have, Fashion-MNIST IDX files and small canvas datasets."""
import gzip
import os

import numpy as np
import pytest

from spot.data import fmnist
from spot.data.fmnist import CanvasConfig, build_canvas_dataset


def require(available: bool, what: str, fix: str) -> None:
    """Skip a test whose prerequisite ``what`` is missing — except under CI (``CI`` set), where the README's test
    command installs every prerequisite, so a missing one is an install step that failed: the test fails, naming
    ``fix``."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing on a CI machine, where the test command installs it: {fix}")
    pytest.skip(f"{what} is missing ({fix})")


def real_fmnist_installed() -> bool:
    try:
        fmnist.find_fmnist()
        return True
    except fmnist.FashionMNISTNotFound:
        return False


FMNIST_FIX = "python3 spot/data/fmnist_files.py --install (apt-get install dataset-fashion-mnist)"


def write_idx(path, array):
    """An IDX file (the Fashion-MNIST format), gzipped."""
    array = np.asarray(array)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_block_fmnist(directory, counts=(("train", 600), ("t10k", 100))):
    """Fashion-MNIST-shaped IDX files in ``directory`` whose articles are bright 12×16 blocks at rows 8–19, columns
    6–21 (so their footprint is known); labels cycle 0…9."""
    rng = np.random.default_rng(0)
    for prefix, n in counts:
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 8:20, 6:22] = rng.integers(100, 256, size=(n, 12, 16))
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return directory


def make_canvas(tmp_path_factory, n_train: int, n_test: int, config: CanvasConfig) -> tuple:
    """A small canvas dataset from the first images of the real Fashion-MNIST when installed, else from class-shaped
    stand-in articles (bars whose length encodes the class). Returns (folder, description of the source)."""
    src = tmp_path_factory.mktemp("fmnist_src")
    real = real_fmnist_installed()
    if not real and os.environ.get("CI"):  # CI must test on the real articles
        pytest.fail(f"real Fashion-MNIST is missing on a CI machine: {FMNIST_FIX}")
    if real:
        splits, _ = fmnist.load_fmnist()
        source = "real Fashion-MNIST"
        parts = {"train": tuple(a[:n_train] for a in splits["train"]),
                 "t10k": tuple(a[:n_test] for a in splits["test"])}
    else:
        source = "synthetic stand-in articles"
        parts = {}
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            labels = np.arange(n) % 10
            images = np.zeros((n, 28, 28), np.uint8)
            for i, c in enumerate(labels):
                images[i, 4:24, 12:16] = 200
                images[i, 4:6 + 2 * c, 4:24] = 255
            parts[prefix] = (images, labels)
    for prefix, (images, labels) in parts.items():
        write_idx(src / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(src / f"{prefix}-labels-idx1-ubyte.gz", labels)
    out = tmp_path_factory.mktemp("canvas") / "c"
    build_canvas_dataset(out, config, seed=0, fmnist_dir=src, log=lambda *_: None)
    return out, source


def copy_workflow(root, dest):
    """The workflow's files (Snakefile, presets, rules, notebooks) copied from the repository ``root`` into ``dest``,
    so that a test's runs never touch the repository's results."""
    import shutil

    for name in ("Snakefile", "config.yaml"):
        shutil.copy(root / name, dest / name)
    for name in ("workflow", "config", "notebooks"):
        shutil.copytree(root / name, dest / name)
    return dest


def spot_command(*argv):
    """Parse ``spot ARGV…`` with the command line's own parser and run it; its errors propagate (``spot.app.cli.main``
    turns a ValueError into exit status 2)."""
    from spot.app.cli import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    return args.func(args)


RETROFIT = dict(init="parent", epochs=1, tokens=dict(mode="subpixel", min_tokens=4, max_tokens=36))  # tiny_recipe's
# changes that retrofit a trained tiny grid ViT into a SPoT model (4 … 36 tokens)


def tiny_recipe(**changes) -> dict:
    """A recipe for a tiny grid ViT-N/8 (32 dims, 2 blocks) on 400 canvases: seconds to train; ``changes`` replace
    whole top-level keys."""
    base = dict(task="classify", init="scratch",
                model=dict(backbone="vit_nano_patch8", img_size=48,
                           timm_kwargs=dict(embed_dim=32, depth=2, num_heads=2)),
                data=dict(kind="fmnist", mean=[0.1], std=[0.25], limit=400), tokens=dict(mode="grid"), epochs=2,
                batch_size=50, optimizer=dict(lr=2e-3, betas=[0.9, 0.99], weight_decay=0.05),
                schedule=dict(warmup_epochs=0.5, min_lr=1e-5), label_smoothing=0.1, eval_batch_size=100)
    base.update(changes)
    return base
