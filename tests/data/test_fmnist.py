import gzip
import json

import numpy as np
import pytest
import torch
from helpers import FMNIST_FIX, real_fmnist_installed, require, write_block_fmnist

from spot.data import fmnist
from spot.data.fmnist import CanvasConfig, FashionMNISTNotFound, build_canvas_dataset, build_plain_dataset, load_split


@pytest.fixture(scope="module")
def fake_fmnist(tmp_path_factory):
    """Fashion-MNIST-shaped IDX files: articles are bright 12×16 blocks (so their footprint is known)."""
    return write_block_fmnist(tmp_path_factory.mktemp("fmnist"))


def test_builds_splits_with_manifest_and_heldout_validation(fake_fmnist, tmp_path):
    cfg = CanvasConfig(val_size=100)
    manifest = build_canvas_dataset(tmp_path / "c", cfg, seed=0, fmnist_dir=fake_fmnist, log=lambda *_: None)
    assert {k: v["n"] for k, v in manifest["splits"].items()} == {"train": 500, "val": 100, "test": 100}
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["splits"] == manifest["splits"]
    train = np.load(tmp_path / "c" / "train.npz")
    val = np.load(tmp_path / "c" / "val.npz")
    assert train["images"].shape == (500, 48, 48) and train["images"].dtype == np.uint8
    assert set(train["source_index"]).isdisjoint(val["source_index"])
    assert len(set(train["source_index"]) | set(val["source_index"])) == 600
    assert sum(manifest["splits"]["train"]["per_class"]) == 500
    assert len(manifest["sources"]) == 4 and "provenance" in manifest
    ds = load_split(tmp_path / "c", "val")
    x, y = ds[3]
    assert x.shape == (1, 48, 48) and 0 <= x.min() and x.max() <= 1 and y == val["labels"][3]
    assert not list(tmp_path.glob(".*partial*"))


def test_deterministic_from_the_seed(fake_fmnist, tmp_path):
    quiet = dict(fmnist_dir=fake_fmnist, log=lambda *_: None)
    cfg = CanvasConfig(val_size=100)
    build_canvas_dataset(tmp_path / "a", cfg, seed=4, **quiet)
    build_canvas_dataset(tmp_path / "b", cfg, seed=4, **quiet)
    build_canvas_dataset(tmp_path / "c", cfg, seed=5, **quiet)
    a, b, c = (np.load(tmp_path / k / "test.npz") for k in "abc")
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["top_left"], b["top_left"])
    assert not np.array_equal(a["images"], c["images"])


def test_placement_is_centre_biased_subpixel_and_whole(fake_fmnist, tmp_path):
    cfg = CanvasConfig(val_size=0, fragments=0)
    build_canvas_dataset(tmp_path / "c", cfg, seed=0, fmnist_dir=fake_fmnist, log=lambda *_: None)
    d = np.load(tmp_path / "c" / "train.npz")
    offset = d["top_left"] - (48 - 28) / 2
    assert np.abs(offset).max() <= cfg.max_offset + 1e-5  # the article always stays whole on the canvas
    assert 3.5 < offset.std() < 5.5  # N(0, 5²) truncated at ±10 px: std ≈ 4.4
    frac = d["top_left"] % 1
    assert (np.minimum(frac, 1 - frac) > 0.01).mean() > 0.9  # subpixel, not grid- or pixel-aligned
    # no clutter: the canvas mass equals the article's (bilinear pasting preserves the sum up to rounding)
    src = fmnist.load_fmnist(fake_fmnist)[0]["train"][0][d["source_index"]]
    assert np.allclose(d["images"].reshape(600, -1).sum(1), src.reshape(600, -1).sum(1), rtol=0.02)
    # the article mask (the embedded saliency) covers the bright block
    masks = fmnist.article_masks(d["top_left"][:5], src[:5], 48)
    assert masks.shape == (5, 48, 48) and np.allclose(masks.sum((1, 2)), 12 * 16, rtol=1e-4)


def test_optional_clutter_adds_faint_fragments_outside_the_article(fake_fmnist, tmp_path):
    quiet = dict(fmnist_dir=fake_fmnist, log=lambda *_: None)
    assert CanvasConfig().fragments == 0  # the embedded default is clean
    build_canvas_dataset(tmp_path / "f", CanvasConfig(val_size=0, fragments=2, fragment_size=10,
                                                      fragment_intensity=0.4), seed=0, **quiet)
    d = np.load(tmp_path / "f" / "train.npz")
    src = fmnist.load_fmnist(fake_fmnist)[0]["train"][0][d["source_index"]]
    outside = fmnist.article_masks(d["top_left"], src, 48) == 0
    stray = np.where(outside, d["images"], 0)
    assert (stray.reshape(600, -1).max(1) > 0).mean() > 0.5  # most canvases carry clutter off the article
    assert stray.max() <= round(0.4 * 255) + 1  # at 40 % intensity


def test_integer_paste_is_an_exact_copy():
    art = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 28, 28) % 251
    out = fmnist._paste(art, torch.tensor([[7.0, 3.0]], dtype=torch.float64), 48, 28)
    # exact up to grid_sample's float32 coordinate rounding, far below the uint8 quantisation of stored canvases
    torch.testing.assert_close(out[0, 7:35, 3:31], art[0], rtol=0, atol=1e-3)
    assert out[0, :7].abs().max() < 1e-3 and out[0, 35:].abs().max() < 1e-3


def test_plain_variant(fake_fmnist, tmp_path):
    m = build_plain_dataset(tmp_path / "p", val_size=50, fmnist_dir=fake_fmnist, log=lambda *_: None)
    assert m["kind"] == "plain" and load_split(tmp_path / "p", "train").images.shape == (550, 28, 28)


def test_errors(fake_fmnist, tmp_path):
    with pytest.raises(FashionMNISTNotFound, match="apt-get install -y dataset-fashion-mnist"):
        build_canvas_dataset(tmp_path / "x", fmnist_dir=tmp_path / "empty")
    assert not (tmp_path / "x").exists() or not (tmp_path / "x" / "manifest.json").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in fake_fmnist.iterdir():
        bad.joinpath(f.name).write_bytes(f.read_bytes())
    raw = gzip.decompress((bad / "train-images-idx3-ubyte.gz").read_bytes())
    (bad / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(ValueError, match="truncated"):
        build_canvas_dataset(tmp_path / "y", fmnist_dir=bad, log=lambda *_: None)
    build_canvas_dataset(tmp_path / "z", CanvasConfig(val_size=10), fmnist_dir=fake_fmnist, log=lambda *_: None)
    with pytest.raises(ValueError, match="different build"):
        build_canvas_dataset(tmp_path / "z", CanvasConfig(val_size=20), fmnist_dir=fake_fmnist)
    npz = tmp_path / "z" / "test.npz"
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        load_split(tmp_path / "z", "test")
    with pytest.raises(ValueError, match="max_offset"):
        build_canvas_dataset(tmp_path / "w", CanvasConfig(max_offset=30), fmnist_dir=fake_fmnist)


def test_an_interrupted_build_is_redone(fake_fmnist, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = fmnist.render_canvases

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(fmnist, "render_canvases", failing)
    with pytest.raises(KeyboardInterrupt):
        build_canvas_dataset(tmp_path / "c", CanvasConfig(val_size=10), fmnist_dir=fake_fmnist, log=lambda *_: None)
    assert not (tmp_path / "c").exists()  # nothing at the final path
    monkeypatch.setattr(fmnist, "render_canvases", real)
    m = build_canvas_dataset(tmp_path / "c", CanvasConfig(val_size=10), fmnist_dir=fake_fmnist, log=lambda *_: None)
    assert m["splits"]["test"]["n"] == 100


def test_real_fashion_mnist_reads():
    require(real_fmnist_installed(), "Debian's dataset-fashion-mnist", FMNIST_FIX)
    splits, checksums = fmnist.load_fmnist()
    assert splits["train"][0].shape == (60000, 28, 28) and splits["test"][0].shape == (10000, 28, 28)
    assert np.bincount(splits["test"][1]).tolist() == [1000] * 10
