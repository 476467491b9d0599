"""Fixtures shared by the experiment tests: one canvas dataset and the tiny models trained on it once per session."""
import pytest
import torch
from helpers import RETROFIT, make_canvas, tiny_recipe

from spot.data.fmnist import CanvasConfig
from spot.train import train
from spot.train.recipes import recipe_from_dict

QUIET = dict(log=lambda *_: None, progress=False)


@pytest.fixture(scope="session")
def canvas(tmp_path_factory):
    """A few hundred 48×48 canvases (real Fashion-MNIST articles when installed)."""
    return make_canvas(tmp_path_factory, 500, 120, CanvasConfig(val_size=100))[0]


@pytest.fixture(scope="session")
def train_tiny(tmp_path_factory, canvas):
    """``train_tiny(name, recipe, parent=None)`` → the checkpoint of ``recipe`` trained on ``canvas`` (one thread)."""
    d = tmp_path_factory.mktemp("models")

    def run(name, recipe, parent=None):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(recipe_from_dict(recipe, name), data_root=canvas, out=d / f"{name}.safetensors",
                  state_dir=d / f"state_{name}", parent=parent, **QUIET)
        finally:
            torch.set_num_threads(before)
        return d / f"{name}.safetensors"

    return run


@pytest.fixture(scope="session")
def tiny_spot(train_tiny):
    """A grid ViT-N/8 trained on ``canvas``, its SPoT retrofit and its grid control (a SPoT model trained on grid-patch
    subsets): {"vit": path, "spot": path, "ctrl": path}."""
    vit = train_tiny("vit", tiny_recipe())
    control = dict(RETROFIT, tokens=dict(mode="grid_subset", min_tokens=4, max_tokens=36))
    return {"vit": vit, "spot": train_tiny("spot", tiny_recipe(**RETROFIT), parent=vit),
            "ctrl": train_tiny("ctrl", tiny_recipe(**control), parent=vit)}
