"""A ``limit`` is a seeded subset stratified by class (spot.data.subsets), never the first N images of a split."""
import numpy as np
import pytest
import torch
from helpers import make_canvas

from spot.data.evaluation import EvalData
from spot.data.fmnist import CanvasConfig
from spot.data.subsets import stratified_subset, subset_record


def test_a_class_sorted_split_keeps_every_class_in_proportion():
    # like torchvision's ImageNet: sorted by class, unequal class sizes
    labels = np.repeat(np.arange(20), np.arange(20) + 30)
    for n in (20, 57, 200, 311):
        idx = stratified_subset(labels, n, seed=3)
        assert len(idx) == n and len(np.unique(idx)) == n and np.all(np.diff(idx) > 0)  # sorted, distinct
        counts = np.bincount(labels[idx], minlength=20)
        share = n * np.bincount(labels) / len(labels)
        assert np.all(np.abs(counts - share) < 1)  # every class within one image of its share
    first = labels[:200]
    assert len(np.unique(first)) <= 7 and len(np.unique(labels[stratified_subset(labels, 200, 0)])) == 20


def test_seeded_nested_and_whole():
    labels = np.random.default_rng(0).integers(0, 7, size=1000)
    a, b = stratified_subset(labels, 300, seed=1), stratified_subset(labels, 300, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, stratified_subset(labels, 300, seed=2))
    small = stratified_subset(labels, 100, seed=1)
    assert set(small) <= set(a)  # the same seed: a smaller subset lies inside a larger one
    assert np.array_equal(stratified_subset(labels, None, 5), np.arange(1000))
    assert np.array_equal(stratified_subset(labels, 5000, 5), np.arange(1000))
    with pytest.raises(ValueError, match="int ≥ 1"):
        stratified_subset(labels, 0, 0)


def test_record_names_the_draw():
    labels = np.repeat(np.arange(4), 10)
    idx = stratified_subset(labels, 8, seed=0)
    r = subset_record(idx, labels, 0, 40)
    assert r["kind"] == "stratified" and r["seed"] == 0 and r["n_images"] == 8 and r["classes"] == 4
    assert r["indices_sha256"] != subset_record(stratified_subset(labels, 8, 1), labels, 1, 40)["indices_sha256"]
    assert subset_record(np.arange(40), labels, 0, 40)["kind"] == "whole split"


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    return make_canvas(tmp_path_factory, 300, 120, CanvasConfig(canvas_size=32, placement_std=1.0, max_offset=2.0, val_size=20))[0]


def test_evaldata_limit_is_a_stratified_subset_indexed_by_split(canvas):
    whole = EvalData.open(canvas, "test")
    part = EvalData.open(canvas, "test", limit=30, subset_seed=4)
    assert whole.n == 120 and whole.subset["kind"] == "whole split" and part.subset["kind"] == "stratified"
    assert part.n == 30 and torch.equal(part.index, torch.from_numpy(stratified_subset(whole.labels.numpy(), 30, 4)))
    assert torch.equal(part.labels, whole.labels[part.index]) and torch.equal(part.images, whole.images[part.index])
    # batches carry split indices, so per-image draws and saliency maps do not depend on the subset
    got = torch.cat([i for _, _, i in part.batches(7)])
    assert torch.equal(got, part.index)
    assert torch.equal(part.take(part.index[3:5]), whole.images[part.index[3:5]])
    missing = int(np.setdiff1d(np.arange(120), part.index.numpy())[0])
    with pytest.raises(IndexError, match="not among"):
        part.take([missing])
    given = EvalData.open(canvas, "test", indices=[5, 2])
    assert given.index.tolist() == [2, 5] and given.subset["kind"] == "given indices"
    with pytest.raises(ValueError, match="not both"):
        EvalData.open(canvas, "test", limit=3, indices=[1])
