"""A checkpoint is loaded only if its weights are the ones its record describes (sha256): a trained checkpoint, and
an `official` record's released file."""
import json

import pytest
import torch

from spot.weights.checkpoints import load_trained, open_checkpoint
from spot.weights.backbones import create_backbone
from spot.provenance import sha256_file
from spot.train.state import save_model


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    kwargs = {"img_size": 32, "patch_size": 8, "depth": 1, "num_classes": 3}
    vit = create_backbone("vit_tiny_patch16_224", **kwargs)  # as load_trained rebuilds it from the record
    record = {"format": "timm_vit", "backbone": "vit_tiny_patch16_224", "timm_kwargs": kwargs}
    path = tmp_path / "model.safetensors"
    save_model(vit, path, record)
    return path


def test_weights_matching_their_record_load(checkpoint):
    assert open_checkpoint(checkpoint, classifier=True).model.num_classes == 3


def test_weights_changed_after_their_record_are_refused(checkpoint):
    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="changed since they were recorded"):
        load_trained(checkpoint)


def test_a_record_without_a_checksum_is_refused(checkpoint):
    record = checkpoint.with_suffix(".json")
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "sha256"}))
    with pytest.raises(ValueError, match="has no sha256"):
        open_checkpoint(checkpoint)


def test_an_official_record_checks_the_released_file(tmp_path, checkpoint):
    released = tmp_path / "spot_1k_b16.pth"
    released.write_bytes(b"not the file the record was made from")
    record = tmp_path / "cls_in1k_official.json"
    record.write_text(json.dumps({"format": "official", "path": str(released), "sha256": sha256_file(checkpoint)}))
    with pytest.raises(ValueError, match="changed since they were recorded"):
        load_trained(record)
