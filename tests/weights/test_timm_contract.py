"""The ``spot_*`` models in timm's registry keep timm's model contract: the network-free checks of timm's own
``tests/test_models.py`` (``test_model_forward``, ``test_model_backward``, ``test_model_default_cfgs_non_std``, the
ones a ViT parent passes), written here for every registered name; and each ``spot_<parent>`` defaults to the
parent's pretrained tag and config. TorchScript and FX tracing are not offered (README, "Where this deviates").
"""
import copy

import pytest
import timm
import torch

import spot.weights  # noqa: F401 — registers the spot_* models
from spot.weights.timm_models import PARENTS, SPOT_MODELS

NAMES = sorted(SPOT_MODELS)
# ViT-L is left out of the forward checks as timm's CI leaves out its largest models (its registry config is checked)
CHECKED = [n for n in NAMES if "large" not in n]
# inputs smaller than timm's (224 → 128 forward, 96 backward): a SPoT model reads any image size, and the checks are
# of shapes, gradients and names
FWD_SIZE, BWD_SIZE = 128, 96
_BUILT = {}


def _model(name, **kwargs):
    """A fresh copy of ``timm.create_model(name, **kwargs)`` (each built once per session)."""
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _BUILT:
        _BUILT[key] = timm.create_model(name, **kwargs)
    return copy.deepcopy(_BUILT[key])


def _input_size(model, target):
    c, h, w = model.default_cfg["input_size"]
    return c, min(h, target), min(w, target)


def _inputs(model, target, batch=1):
    return torch.randn((batch, *_input_size(model, target)), generator=torch.Generator().manual_seed(0))


def test_every_parent_with_tags_is_registered():
    assert {f"spot_{p}" for p in PARENTS} <= set(NAMES)
    assert set(timm.list_models("spot_*")) == set(NAMES)


@pytest.mark.parametrize("parent", PARENTS)
def test_each_spot_model_defaults_to_its_parents_pretrained_config(parent):
    ours, theirs = timm.models.get_pretrained_cfg(f"spot_{parent}"), timm.models.get_pretrained_cfg(parent)
    assert (ours.tag, ours.hf_hub_id, ours.num_classes) == (theirs.tag, theirs.hf_hub_id, theirs.num_classes)
    assert {k: v for k, v in ours.to_dict().items() if k != "architecture"} == \
           {k: v for k, v in theirs.to_dict().items() if k != "architecture"}
    assert theirs.first_conv == "patch_embed.proj"  # the built model names it as it has it (checked below)
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{parent}.*")]
    assert sorted(n.split(".", 1)[1] for n in timm.list_pretrained(f"spot_{parent}.*")) == sorted(tags)
    if "large" not in parent:
        model = _model(f"spot_{parent}")
        assert model.num_classes == theirs.num_classes and model.pretrained_cfg["tag"] == theirs.tag
        assert model.default_cfg["first_conv"] == "window_embed.proj" and "window_embed.proj.weight" in \
            model.state_dict()


@pytest.mark.parametrize("name", CHECKED)
def test_forward_and_grad_checkpointing(name):
    """timm's test_model_forward."""
    model = _model(name).eval()
    x = _inputs(model, FWD_SIZE)
    out = model(x)
    assert out.shape == (1, model.num_classes) and not out.isnan().any()
    model.set_grad_checkpointing()
    assert torch.allclose(out, model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CHECKED)
def test_backward_reaches_every_parameter(name):
    """timm's test_model_backward: a 42-class head, every parameter gets a gradient."""
    model = _model(name, num_classes=42).train()
    out = model(_inputs(model, BWD_SIZE, batch=2))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing and out.shape == (2, 42) and not out.isnan().any()


@pytest.mark.parametrize("name", CHECKED)
def test_default_cfg_features_head_and_classifier_reset(name):
    """timm's test_model_default_cfgs_non_std."""
    model = _model(name).eval()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    cfg, state = model.default_cfg, model.state_dict()
    x = _inputs(model, FWD_SIZE)
    with torch.no_grad():
        features = model.forward_features(x)
        pre = model.forward_head(features, pre_logits=True)
        assert features.shape[-1] == model.num_features and pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        pooled = model(x)
        assert pooled.shape == pre.shape and torch.allclose(pooled, pre)
        headless = _model(name, num_classes=0).eval()
        assert headless(x).shape[-1] == model.num_features
    for key in ([cfg["classifier"]] if cfg.get("num_classes") else []) + [cfg["first_conv"]]:
        assert f"{key}.weight" in state, key


def test_reset_classifier_changes_pooling_as_timm_does():
    model = _model("spot_vit_nano_patch8").eval()
    x = _inputs(model, 64)
    model.reset_classifier(0, "")
    assert model(x).shape[1:] == (1 + (64 // 8) ** 2, model.embed_dim)  # no pooling: every token
    model.reset_classifier(5, "token")
    assert model(x).shape == (1, 5)
    with pytest.raises(ValueError, match="global_pool 'mean'"):
        model.reset_classifier(0, "mean")
