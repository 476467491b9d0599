"""SPoT models in timm's registry (spot/weights/timm_models.py) and torch.hub entry points (hubconf.py), offline."""
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from weights.test_official import release_state

import spot
from spot.weights import backbones as factory
from spot.weights.backbones import MissingWeightsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setattr(factory, "hub_reachable", lambda timeout=3.0: False)


def nano_weights(tmp_path, **kwargs):
    """A grid ViT-N/8 as `spot train` stores one (timm key names), with random weights and a 10-class head."""
    vit = factory.create_backbone("vit_nano_patch8", img_size=48, **kwargs)
    torch.nn.init.normal_(vit.pos_embed, std=0.5)
    path = tmp_path / "nano.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    return vit.eval(), path


def test_registered_names_and_tags():
    names = timm.list_models("spot_*")
    assert {"spot_vit_base_patch16_224", "spot_deit_small_patch16_224", "spot_deit_tiny_patch16_224",
            "spot_vit_nano_patch8", "spot_vit_micro_patch8", "spot_vit_mini_patch8"} <= set(names)
    tagged = set(timm.list_pretrained("spot_vit_base_patch16_224.*"))
    assert {f"spot_vit_base_patch16_224.{t}" for t in ("augreg_in1k", "augreg2_in21k_ft_in1k", "mae")} <= tagged
    assert tagged == {f"spot_{n}" for n in timm.list_pretrained("vit_base_patch16_224.*")}


def test_create_model_returns_spot_with_the_parents_config():
    model = timm.create_model("spot_vit_base_patch16_224.augreg_in1k", pretrained=False)
    assert isinstance(model, spot.SPoTViT)
    cfg = model.pretrained_cfg
    parent = timm.models.get_pretrained_cfg("vit_base_patch16_224.augreg_in1k")
    assert cfg["architecture"] == "spot_vit_base_patch16_224" and cfg["tag"] == "augreg_in1k"
    assert cfg["hf_hub_id"] == parent.hf_hub_id and cfg["mean"] == parent.mean == (0.5, 0.5, 0.5)
    deit = timm.create_model("spot_deit_tiny_patch16_224")
    assert timm.data.resolve_data_config({}, model=deit)["mean"] == (0.485, 0.456, 0.406)


def test_file_weights_load_into_the_parent_and_grid_positions_reproduce_it(tmp_path, one_thread):
    vit, path = nano_weights(tmp_path)
    model = timm.create_model("spot_vit_nano_patch8", pretrained=True, img_size=48,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    images = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(images, model.grid_positions()), vit(images), atol=1e-5, rtol=0)
        assert model(images, prior="isotropic", num_tokens=9).shape == (3, 10)


def test_wrapper_and_timm_keywords_are_routed(tmp_path):
    model = timm.create_model("spot_vit_nano_patch8", img_size=48, num_classes=4, window=4, pe_sigma=0.25)
    assert model.window == (4, 4) and model.num_classes == 4
    assert model.pos_embed.sigma == 0.25
    assert model(torch.randn(2, 1, 48, 48), prior="center", num_tokens=5).shape == (2, 4)


def test_offline_pretrained_fails_at_once_naming_the_file(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"timm/vit_base_patch16_224\.augreg_in1k"):
        timm.create_model("spot_vit_base_patch16_224.augreg_in1k", pretrained=True)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        timm.create_model("spot_vit_nano_patch8", pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "absent.safetensors")))


def test_unknown_names_and_tags_are_timms_errors():
    with pytest.raises(RuntimeError, match="Unknown model"):
        timm.create_model("spot_vit_nope")
    with pytest.raises(RuntimeError, match="Invalid pretrained tag.*Accepted: .*spot_vit_base_patch16_224.augreg_in1k"):
        timm.create_model("spot_vit_base_patch16_224.nope")


def test_torch_hub_loads_the_release_and_lists_the_registry(tmp_path, one_thread):
    path = tmp_path / "spot_1k_b16.pth"
    torch.save(release_state(depth=2, D=128, k=16, classes=10), path)
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")}  # torch.hub.list's
    assert {"spot_official", "spot_vit_base_patch16_224", "spot_deit_small_patch16_224"} <= entries
    hub = torch.hub.load(str(ROOT), "spot_official", source="local", path=str(path), prior="isotropic",
                         num_tokens=9)
    direct = spot.load_official(path, prior="isotropic", num_tokens=9)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(hub(images), direct(images), atol=0, rtol=0)
    nano = torch.hub.load(str(ROOT), "spot_vit_nano_patch8", source="local", img_size=48)
    assert isinstance(nano, spot.SPoTViT)
