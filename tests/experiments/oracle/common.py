"""What the oracle's tests share: tiny models, the constants of their canvas, helpers reading result rows."""
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from spot import create_backbone
from spot.weights.checkpoints import open_checkpoint
from spot.data.evaluation import EvalData
from spot.core.models import SPoTViT
from spot.experiments.oracle import OracleSettings
from spot.stats import decode_outcomes

TRANSFER_PROPORTIONS = ("oracle_acc1", "original_acc1", "transfer_acc1", "random_target_rate",
                        "random_target_rate_init")


def load_classifier(path):
    """(model, (mean, std)) of a classifier checkpoint, as the oracle opens it."""
    checkpoint = open_checkpoint(path, classifier=True)
    return checkpoint.model.eval(), checkpoint.normalisation


SIZE = 32
MEAN, STD = [0.1], [0.25]


def tiny_model(seed=0) -> SPoTViT:
    torch.manual_seed(seed)
    vit = create_backbone("vit_nano_patch8", img_size=SIZE, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    return SPoTViT.from_timm(vit).eval()


def _loss(model, images, labels, positions):
    with torch.no_grad():
        return F.cross_entropy(model(images, positions), labels).item()


SMALL = dict(split="test", limit=24, batch_size=10, sparse_budget=4, budgets=[4, 16],
             settings=[{"lr": 1e-2, "steps": 2}, {"lr": 3e-2, "steps": 3}], main_setting=1,
             priors=["uniform", "isotropic", "salient"], trajectories={"images": 3}, saliency_window=8, seed=0)


def _settings(**changes) -> OracleSettings:
    from spot.train.recipes import settings_from_dict

    return settings_from_dict(OracleSettings, {**SMALL, **changes}, "oracle").validate()


def _value(rows, **match):
    hits = [r["value"] for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


def _check_proportions(rows, proportions) -> set:
    """Every proportion row's outcomes add up to its n_correct, value and interval; the other rows leave count and
    outcomes empty and carry an interval around their value (none: the median). Returns the proportion metrics
    seen."""
    seen = set()
    for r in rows:
        if r["metric"] not in proportions:
            assert pd.isna(r["n_correct"]) and pd.isna(r["outcomes"]), r
            if r["metric"] == "rsg_median":
                assert pd.isna(r["ci_low"]) and pd.isna(r["ci_high"]), r
            else:
                assert r["ci_low"] <= r["value"] <= r["ci_high"], r
            continue
        bits = decode_outcomes(r["outcomes"], int(r["n_images"]))
        assert bits.sum() == r["n_correct"], r
        assert r["value"] == 100 * r["n_correct"] / r["n_images"], r
        assert r["ci_low"] <= r["value"] <= r["ci_high"], r
        assert r["ci_high"] - r["ci_low"] > 1.0, r  # a real interval: 12–24 images pin no share to a point
        seen.add(r["metric"])
    return seen


def _outcomes(rows, **match) -> np.ndarray:
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, len(hits))
    return decode_outcomes(hits[0]["outcomes"], hits[0]["n_images"])


class PositionsOnly(torch.nn.Module):
    """A toy classifier whose output depends on the token positions only (the image is ignored): the centroid of
    the tokens, read by 4 classes pointing right, left, down, up — fully steerable by construction."""

    num_classes, patch_size, image_size = 4, 8, (SIZE, SIZE)

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(400.0))

    def forward(self, images, positions):
        c = positions.float().mean(1) - 0.5  # (B, 2): (y, x) of the centroid, 0 at the Isotropic start
        return self.gain * torch.stack([c[:, 1], -c[:, 1], c[:, 0], -c[:, 0]], dim=1)


class ImageOnly(torch.nn.Module):
    """A toy classifier that ignores the positions (its output is a function of the image alone)."""

    num_classes, patch_size, image_size = 4, 8, (SIZE, SIZE)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(SIZE * SIZE, 4)

    def forward(self, images, positions):
        return self.head(images.flatten(1)) + 0.0 * positions.float().sum((1, 2))[:, None]


def _four_class_data(canvas):
    data = EvalData.open(canvas, "test", mean=MEAN, std=STD, limit=24)
    data.labels = data.labels % 4
    return data


CONTROLS = dict(budgets=[4, 9], priors=["isotropic"], trajectories={"images": 0})
