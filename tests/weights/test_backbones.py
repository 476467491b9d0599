import time

import huggingface_hub.constants as hf
import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

import spot


def test_small_backbones_and_wrapping():
    model = spot.create_model("vit_nano_patch8")
    assert isinstance(model, spot.SPoTViT) and model.in_chans == 1 and model.num_classes == 10
    vit = spot.create_model("vit_nano_patch8", wrap=False, num_classes=3, img_size=32)
    assert isinstance(vit, VisionTransformer) and vit.num_classes == 3 and vit.patch_embed.img_size == (32, 32)


def test_paper_backbones_resolve_by_key_timm_name_and_label():
    for key in ("cls_in1k", "vit_base_patch16_224.augreg_in1k", "CLS-IN1k"):
        assert spot.weights.backbones._resolve(key).timm_name == "vit_base_patch16_224.augreg_in1k"
    assert spot.weights.backbones._resolve("mae_in1k").kwargs["global_pool"] == "avg"
    with pytest.raises(ValueError, match="unknown backbone"):
        spot.create_model("resnet50")


def test_missing_hub_weights_fail_fast_with_what_to_provide(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    create_model, missing = spot.create_model, spot.MissingWeightsError  # spot's model stack imported before timing
    start = time.time()
    with pytest.raises(missing) as err:
        create_model("cls_in21k", pretrained=True)
    assert time.time() - start < 10
    msg = str(err.value)
    assert "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k" in msg and "checkpoint=FILE" in msg
    assert "spot checkpoints fetch cls_in21k --from FILE" in msg and "--checkpoint" not in msg
    from spot.app.cli import build_parser  # the command the message names exists, with that flag

    args = build_parser().parse_args(["checkpoints", "fetch", "cls_in21k", "--from", "FILE"])
    assert (args.name, args.source_file) == ("cls_in21k", "FILE")


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_local_checkpoint_roundtrip(tmp_path, fmt):
    vit = spot.create_model("vit_nano_patch8", wrap=False)
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / f"weights.{fmt}"
    state = {k: v.contiguous() for k, v in vit.state_dict().items()}
    save_file(state, path) if fmt == "safetensors" else torch.save({"model": state}, path)
    loaded = spot.create_model("vit_nano_patch8", checkpoint=path, wrap=False).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), vit.eval()(x))


def test_wrong_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(spot.MissingWeightsError, match="does not exist"):
        spot.create_model("vit_nano_patch8", checkpoint=tmp_path / "nope.safetensors")
    other = spot.create_model("vit_micro_patch8", wrap=False)
    path = tmp_path / "other.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match="does not match the architecture"):
        spot.create_model("vit_micro_patch8", checkpoint=path, depth=2)
