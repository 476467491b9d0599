"""spot.data.transforms: the paper's eval / train pre-processing, built by timm (CPU, < 1 s)."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.auto_augment import RandAugment
from torchvision import transforms as T

from spot.data.transforms import eval_transform, pretrained_cfg_of, train_transform

AUGREG_CFG = timm.models.get_pretrained_cfg("vit_base_patch16_224.augreg_in1k").to_dict()
MAE_CFG = timm.models.get_pretrained_cfg("vit_base_patch16_224.mae").to_dict()


def _image(width: int = 400, height: int = 300) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _step(transform, kind):
    steps = [t for t in transform.transforms if isinstance(t, kind)]
    return steps[0] if steps else None


def test_eval_shape_resize_and_crop():
    tf = eval_transform(AUGREG_CFG)
    out = tf(_image())
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    resize = _step(tf, T.Resize)
    assert resize.size == 256 and resize.interpolation == T.InterpolationMode.BICUBIC
    assert tuple(_step(tf, T.CenterCrop).size) == (224, 224)


def test_eval_normalisation_comes_from_the_cfg():
    augreg = _step(eval_transform(AUGREG_CFG), T.Normalize)
    mae = _step(eval_transform(MAE_CFG), T.Normalize)
    assert torch.allclose(torch.as_tensor(augreg.mean), torch.tensor([0.5] * 3))
    assert torch.allclose(torch.as_tensor(augreg.std), torch.tensor([0.5] * 3))
    assert torch.allclose(torch.as_tensor(mae.mean), torch.tensor(IMAGENET_DEFAULT_MEAN))
    assert torch.allclose(torch.as_tensor(mae.std), torch.tensor(IMAGENET_DEFAULT_STD))
    # the paper's protocol (224 / 0.875) wins over a cfg's own crop_pct (augreg's is 0.9)
    assert _step(eval_transform(AUGREG_CFG), T.Resize).size == 256
    explicit = _step(eval_transform(AUGREG_CFG, mean=(0.1, 0.2, 0.3), std=(1, 1, 1)), T.Normalize)
    assert torch.allclose(torch.as_tensor(explicit.mean), torch.tensor([0.1, 0.2, 0.3]))


def test_eval_accepts_a_model_and_model_like_objects():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    cfg_from_model = pretrained_cfg_of(model)
    assert cfg_from_model["mean"] == model.pretrained_cfg["mean"]
    assert _step(eval_transform(model), T.Normalize) is not None

    class HasCfg:  # what a SPoTViT looks like to this function: a `pretrained_cfg` dict attribute
        pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

    assert torch.allclose(torch.as_tensor(_step(eval_transform(HasCfg()), T.Normalize).mean), torch.tensor([0.5] * 3))
    with pytest.raises(ValueError, match="pretrained_cfg"):
        eval_transform(object())
    with pytest.raises(ValueError, match="crop_pct"):
        eval_transform(AUGREG_CFG, crop_pct=1.5)


def test_train_transform_randaug_and_rrc_only():
    tf = train_transform(mean=(0.5,) * 3, std=(0.5,) * 3)
    names = [type(t).__name__ for t in tf.transforms]
    assert "RandomResizedCropAndInterpolation" in names and "RandomHorizontalFlip" in names
    rand_aug = _step(tf, RandAugment)
    assert rand_aug is not None and {op.magnitude for op in rand_aug.ops} == {15}
    assert {op.magnitude_std for op in rand_aug.ops} == {0.5}
    assert not any("ColorJitter" in n or "Erasing" in n for n in names)
    rrc = tf.transforms[names.index("RandomResizedCropAndInterpolation")]
    assert rrc.scale == (0.08, 1.0) and rrc.size == (224, 224)
    torch.manual_seed(0)
    assert tf(_image()).shape == (3, 224, 224)

    rrc_only = train_transform(mean=(0.5,) * 3, std=(0.5,) * 3, randaug=None)
    assert _step(rrc_only, RandAugment) is None
    assert [type(t).__name__ for t in rrc_only.transforms][0] == "RandomResizedCropAndInterpolation"


def test_squash_crop_mode_resizes_both_sides():
    wide = Image.fromarray(np.zeros((100, 400, 3), np.uint8))
    center, squash = eval_transform(AUGREG_CFG), eval_transform(AUGREG_CFG, crop_mode="squash")
    assert _step(center, T.Resize).size == 256 and _step(squash, T.Resize).size == (256, 256)
    assert center(wide).shape == squash(wide).shape == (3, 224, 224)
    with pytest.raises(ValueError, match="crop_mode"):
        eval_transform(AUGREG_CFG, crop_mode="border")


def test_random_erasing_is_the_last_step_when_asked_for():
    from timm.data.random_erasing import RandomErasing

    tf = train_transform(mean=(0.5,) * 3, std=(0.5,) * 3, random_erasing=0.25)
    erasing = tf.transforms[-1]
    assert isinstance(erasing, RandomErasing) and erasing.probability == 0.25 and erasing.max_count == 1
    assert _step(train_transform(mean=(0.5,) * 3, std=(0.5,) * 3), RandomErasing) is None
