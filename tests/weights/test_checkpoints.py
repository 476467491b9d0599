import json
import time

import pytest
import torch

from spot.weights import checkpoints
from spot.weights.backbones import MissingWeightsError


def _fake_mae(path):
    state = {"cls_token": torch.randn(1, 1, 8), "decoder_pred.weight": torch.randn(12, 8)}
    torch.save({"model": state}, path)
    return state


def test_from_file_then_reused_offline(tmp_path, monkeypatch):
    state = _fake_mae(tmp_path / "dl.pth")
    info = checkpoints.fetch_checkpoint("mae_in1k", tmp_path / "ck", source_file=tmp_path / "dl.pth", log=lambda *_: None)
    target, record = checkpoints.checkpoint_paths("mae_in1k", tmp_path / "ck")
    from safetensors.torch import load_file
    assert torch.equal(load_file(str(target))["decoder_pred.weight"], state["decoder_pred.weight"])
    rec = json.loads(record.read_text())
    assert rec["sha256"] == info["sha256"] and rec["size"] == target.stat().st_size and "mae_pretrain" in rec["source"]
    monkeypatch.setattr(checkpoints, "hub_reachable", lambda: pytest.fail("network must not be needed"))
    monkeypatch.setattr(checkpoints, "_url_reachable", lambda *a: pytest.fail("network must not be needed"))
    assert checkpoints.fetch_checkpoint("mae_in1k", tmp_path / "ck", log=lambda *_: None) == rec


def test_file_placed_under_its_source_name_is_used_and_a_changed_store_refetched(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "_url_reachable", lambda *a: False)
    ck = tmp_path / "ck"
    ck.mkdir()
    _fake_mae(ck / "mae_pretrain_vit_base_full.pth")
    first = checkpoints.fetch_checkpoint("mae_in1k", ck, log=lambda *_: None)
    target, _ = checkpoints.checkpoint_paths("mae_in1k", ck)
    target.write_bytes(target.read_bytes()[:-4] + b"xxxx")  # the stored file no longer matches its record
    again = checkpoints.fetch_checkpoint("mae_in1k", ck, log=lambda *_: None)
    assert again["sha256"] == first["sha256"]


def test_offline_without_file_fails_fast_naming_what_to_place(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "_url_reachable", lambda *a: False)
    monkeypatch.setattr(checkpoints, "hub_reachable", lambda: False)
    start = time.time()
    with pytest.raises(MissingWeightsError) as err:
        checkpoints.fetch_checkpoint("cls_in1k", tmp_path, log=lambda *_: None)
    assert time.time() - start < 5
    assert "vit_base_patch16_224.augreg_in1k" in str(err.value) and str(tmp_path / "model.safetensors") in str(err.value)
    with pytest.raises(ValueError, match="unknown checkpoint"):
        checkpoints.fetch_checkpoint("resnet", tmp_path)


def test_bad_source_file(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        checkpoints.fetch_checkpoint("mae_in1k", tmp_path / "ck", source_file=tmp_path / "junk.pth")
    assert not (tmp_path / "ck" / "mae_in1k.safetensors").exists()


def test_a_checkpoint_format_is_one_registered_loader(tmp_path):
    """load_trained dispatches on the record's format through the FORMATS registry: a new format is one loader;
    an unknown one is an error listing the accepted formats."""
    import json

    from safetensors.torch import save_file

    from spot.weights.checkpoints import FORMATS, load_trained, register_format
    from spot.provenance import sha256_file

    path = tmp_path / "w.safetensors"
    save_file({"weight": torch.ones(2, 3)}, str(path))
    record = {"format": "linear_test", "sha256": sha256_file(path), "backbone": "none"}
    path.with_suffix(".json").write_text(json.dumps(record))

    @register_format("linear_test", "a bare nn.Linear (test)")
    def _load(saved):
        layer = torch.nn.Linear(3, 2, bias=False)
        layer.load_state_dict({"weight": torch.ones(2, 3)})
        return layer

    try:
        assert load_trained(path)(torch.ones(1, 3)).tolist() == [[3.0, 3.0]]
    finally:
        del FORMATS["linear_test"]
    with pytest.raises(ValueError, match="unknown format 'linear_test'; accepted: timm_vit, spot_vit, mae"):
        load_trained(path)
