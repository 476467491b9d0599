"""The oracle tests' canvases and checkpoints, made once for the folder (session scope: every module reuses them)."""
import json
import shutil

import pytest
from helpers import make_canvas

from spot.data.evaluation import EvalData
from spot.data.fmnist import CanvasConfig
from spot.train.recipes import recipe_from_dict
from spot.train import train

from .common import MEAN, SIZE, STD


@pytest.fixture(scope="session")
def canvas(tmp_path_factory):
    """32×32 canvases of real Fashion-MNIST articles when installed: 350 train, 50 val, 100 test."""
    return make_canvas(tmp_path_factory, 400, 100,
                       CanvasConfig(canvas_size=SIZE, placement_std=1.0, max_offset=2.0, val_size=50))[0]


@pytest.fixture(scope="session")
def checkpoints(canvas, tmp_path_factory):
    """Two tiny SPoT classifiers really trained by `spot.train` (1 epoch, subpixel tokens) + an MAE-format file."""
    d = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, seed in (("a", 0), ("b", 1)):
        recipe = recipe_from_dict(dict(
            task="classify", init="scratch", seed=seed,
            model=dict(backbone="vit_nano_patch8", img_size=SIZE, timm_kwargs=dict(embed_dim=32, depth=2, num_heads=2)),
            data=dict(kind="fmnist", mean=MEAN, std=STD, limit=200),
            tokens=dict(mode="subpixel", min_tokens=4, max_tokens=16),
            epochs=1, batch_size=50, optimizer=dict(lr=3e-3, weight_decay=0.05), eval_batch_size=100,
            eval_budgets=[4]), name)
        train(recipe, data_root=canvas, out=d / f"{name}.safetensors", state_dir=d / f"state_{name}",
              log=lambda *_: None, progress=False)
        paths[name] = d / f"{name}.safetensors"
    shutil.copy(paths["a"], d / "mae.safetensors")
    record = json.loads(paths["a"].with_suffix(".json").read_text())
    (d / "mae.json").write_text(json.dumps({**record, "format": "mae"}))
    paths["mae"] = d / "mae.safetensors"
    return paths


@pytest.fixture(scope="session")
def batch(canvas):
    data = EvalData.open(canvas, "test", mean=MEAN, std=STD, limit=16)
    images, labels, _ = next(data.batches(16))
    return images, labels
