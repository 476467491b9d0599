"""Nothing the project loads can run code (issue 28 §2): the resumable training state, weight files (.pth, the
authors' release) and fetched weights' sources — each refused with a message of ours, before any code could run."""
import json
import random

import numpy as np
import pytest
import torch

from spot.weights import checkpoints
from spot.weights.backbones import WeightSource
from spot.weights.formats import read_state_dict
from spot.provenance import sha256_file
from spot.train.state import STATE_FILE, STATE_RECORD, Progress, ResumableState


class CreatesFile:
    """Unpickling this runs ``open(path, "w")``: the file appearing means code ran while loading."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _assert_ours(err: pytest.ExceptionInfo) -> None:
    """One line of ours: torch's advice to load with weights_only=False is neither in it nor chained to it."""
    message = str(err.value)
    assert "weights_only" not in message and "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


# ------------------------------------------------------------------------------------------------ weight files

def test_a_pth_holding_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "payload": CreatesFile(marker)}, path)
    with pytest.raises(ValueError, match=r"evil\.pth' holds non-tensor objects \(.*open\) and will not be loaded") \
            as err:
        read_state_dict(path)
    _assert_ours(err)
    assert not marker.exists()


def test_a_pth_with_a_python_object_names_it_and_never_relays_torch_advice(tmp_path):
    import argparse

    path = tmp_path / "with_args.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(ValueError, match=r"holds non-tensor objects \(argparse\.Namespace\)") as err:
        read_state_dict(path)
    _assert_ours(err)


@pytest.mark.parametrize("content", [b"not a checkpoint", "truncated"])
def test_an_unreadable_pth_is_reported_without_torch_advice(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "truncated":
        torch.save({"w": torch.ones(1000)}, path)
        content = path.read_bytes()[:300]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.pth' is not a readable checkpoint.*download it again") as err:
        read_state_dict(path)
    assert "weights_only" not in str(err.value)


def test_a_release_file_holding_code_is_refused_by_load_official(tmp_path):
    from spot.weights.official import load_official

    marker = tmp_path / "ran"
    path = tmp_path / "spot_1k_b16.pth"
    torch.save({"model": {"head.weight": torch.ones(2, 2)}, "x": CreatesFile(marker)}, path)
    with pytest.raises(ValueError, match="non-tensor objects") as err:
        load_official(path)
    _assert_ours(err)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ training state

IDENTITY = {"recipe": {"name": "t", "betas": (0.9, 0.99)}, "inputs": {"checkpoint:parent": "ab" * 32}, "world": 1}


def _modules(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.99))
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    return {"model": model, "optimizer": optimizer}


def _draws(generator):
    return (torch.rand(3).tolist(), torch.rand(3, generator=generator).tolist(), np.random.rand(3).tolist(),
            np.random.randn(1).tolist(), random.random())


def _saved(tmp_path, identity=IDENTITY):
    state = ResumableState(tmp_path / "state", identity)
    generator = torch.Generator().manual_seed(7)
    np.random.randn(1)  # a cached gaussian in numpy's state: restored too
    state.save(_modules(), generator, Progress(global_step=5, history=[{"epoch": 1}]), epoch=1, step=2, world=1,
               is_main=True)
    return state, _draws(generator)


def test_state_round_trip_is_tensors_only_and_restores_every_rng(tmp_path):
    state, after_save = _saved(tmp_path)
    assert isinstance(torch.load(state.path, weights_only=True), dict)  # loads with the safe unpickler as is
    record = json.loads(state.record_path.read_text())
    assert record["sha256"] == sha256_file(state.path) and record["identity"]["recipe"]["betas"] == [0.9, 0.99]
    modules, generator = _modules(seed=1), torch.Generator()
    progress = ResumableState(tmp_path / "state", IDENTITY).resume(modules, generator, rank=0)
    assert (progress.epoch, progress.step_in_epoch, progress.global_step) == (1, 2, 5)
    assert torch.equal(modules["model"].weight, _modules()["model"].weight)
    assert _draws(generator) == after_save  # torch, the sampler's generator, numpy (with its gaussian), python
    state.finish()
    assert not state.dir.exists()


def _plant(state_dir, payload, identity=IDENTITY, with_record=True):
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    torch.save({"model": {}, "payload": payload}, path)
    if with_record:
        (state_dir / STATE_RECORD).write_text(json.dumps({"file": STATE_FILE, "size": path.stat().st_size,
                                                          "sha256": sha256_file(path), "identity": identity}))


@pytest.mark.parametrize("record, match", [("none", "has no readable record"),
                                           ("other run", "another run \\(different recipe\\)"),
                                           ("matching", "holds objects other than tensors")])
def test_a_crafted_state_never_runs_code(tmp_path, record, match):
    marker = tmp_path / "ran"
    identity = {**IDENTITY, "recipe": {"name": "other"}} if record == "other run" else IDENTITY
    _plant(tmp_path / "state", CreatesFile(marker), json.loads(json.dumps(identity)), with_record=record != "none")
    with pytest.raises(ValueError, match=match) as err:
        ResumableState(tmp_path / "state", IDENTITY).resume(_modules(), torch.Generator(), rank=0)
    assert not marker.exists()
    assert "weights_only" not in str(err.value) and str(tmp_path / "state") in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "bit flip"])
def test_a_damaged_state_is_refused_by_its_record(tmp_path, damage):
    state, _ = _saved(tmp_path)
    data = bytearray(state.path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    state.path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{STATE_FILE} does not match its record .*truncated, altered.*it is not "
                                         rf"loaded: delete .*state to restart the run from scratch") as err:
        state.resume(_modules(), torch.Generator(), rank=0)
    assert "\n" not in str(err.value) and "miniz" not in str(err.value)


def test_a_crash_between_the_state_and_its_record_leaves_a_state_that_is_refused(tmp_path, monkeypatch):
    import spot.train.state as state_module

    state, _ = _saved(tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the state was renamed into place, before its record was written

    monkeypatch.setattr(state_module, "atomic_write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        state.save(_modules(seed=3), torch.Generator(), Progress(global_step=9), epoch=2, step=0, world=1,
                   is_main=True)
    with pytest.raises(ValueError, match="does not match its record"):
        state.resume(_modules(), torch.Generator(), rank=0)
    state.record_path.unlink()  # the first save crashed the same way: no record at all
    with pytest.raises(ValueError, match="has no readable record"):
        state.resume(_modules(), torch.Generator(), rank=0)


# ------------------------------------------------------------------------------------------------ fetched weights

def _safetensors(path, value: float):
    from safetensors.torch import save_file

    save_file({"cls_token": torch.full((1, 1, 8), value)}, str(path))
    return path


def test_an_unpinned_source_is_held_to_the_sha256_recorded_at_its_first_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "_url_reachable", lambda *a: False)
    ck = tmp_path / "ck"
    ck.mkdir()
    placed = ck / "mae_pretrain_vit_base_full.pth"
    torch.save({"model": {"cls_token": torch.ones(1, 1, 8)}}, placed)
    first = checkpoints.fetch_checkpoint("mae_in1k", ck, log=lambda *_: None)
    assert checkpoints.CHECKPOINTS["mae_in1k"].sha256 is None and first["source_sha256"] == sha256_file(placed)
    target, record = checkpoints.checkpoint_paths("mae_in1k", ck)
    target.write_bytes(b"changed")  # the store no longer matches: a re-fetch, which must bring the same source
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 8)}}, placed)  # … but the source file changed
    with pytest.raises(ValueError, match=rf"expected {first['source_sha256']} \(recorded .* at its first fetch in "
                                         rf".*mae_in1k\.json; delete that record"):
        checkpoints.fetch_checkpoint("mae_in1k", ck, log=lambda *_: None)
    with pytest.raises(ValueError, match="at its first fetch"):  # by hand too
        checkpoints.fetch_checkpoint("mae_in1k", ck, source_file=placed, log=lambda *_: None)
    assert json.loads(record.read_text()) == first


def test_a_pinned_source_sha256_and_revision_are_used_for_hub_downloads(tmp_path, monkeypatch):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    good = _safetensors(snapshot / "model.safetensors", 1.0)
    calls = []

    def fake_download(repo, filename, revision=None, **kwargs):
        calls.append((repo, filename, revision))
        return str(good)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(checkpoints, "hub_reachable", lambda: True)
    source = checkpoints.CHECKPOINTS["deit_t"]
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "deit_t", WeightSource(
        source.url, source.filename, hf_repo=source.hf_repo, sha256=sha256_file(good), revision=commit))
    info = checkpoints.fetch_checkpoint("deit_t", tmp_path / "ck", log=lambda *_: None)
    assert calls == [(source.hf_repo, "model.safetensors", commit)] and info["source_revision"] == commit
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "deit_t", WeightSource(
        source.url, source.filename, hf_repo=source.hf_repo, sha256="0" * 64))
    with pytest.raises(ValueError, match=f"expected {'0' * 64} \\(pinned for "):
        checkpoints.fetch_checkpoint("deit_t", tmp_path / "ck2", log=lambda *_: None)
    assert calls[-1][2] is None  # no pinned revision: the hub's default
    assert not (tmp_path / "ck2" / "deit_t.safetensors").exists()


def test_url_downloads_are_checked_by_torch_against_the_known_sha256(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setattr(checkpoints, "_url_reachable", lambda *a: True)
    serving = {"file": tmp_path / "served.pth"}
    torch.save({"model": {"cls_token": torch.ones(1, 1, 8)}}, serving["file"])
    prefixes = []

    def fake_download(url, dst, hash_prefix=None, progress=True):  # torch.hub's contract: check, then keep
        prefixes.append(hash_prefix)
        data = serving["file"].read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if hash_prefix is not None and not digest.startswith(hash_prefix):
            raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "{digest}")')
        open(dst, "wb").write(data)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    first = checkpoints.fetch_checkpoint("mae_in1k", tmp_path / "ck", log=lambda *_: None)
    target, _ = checkpoints.checkpoint_paths("mae_in1k", tmp_path / "ck")
    target.write_bytes(b"changed")
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 8)}}, serving["file"])  # the server now sends another file
    with pytest.raises(ValueError, match=r"the download of .*mae_pretrain_vit_base_full\.pth does not have sha256 "
                                         rf"{first['source_sha256']} \(recorded"):
        checkpoints.fetch_checkpoint("mae_in1k", tmp_path / "ck", log=lambda *_: None)
    assert prefixes == [None, first["source_sha256"]]
