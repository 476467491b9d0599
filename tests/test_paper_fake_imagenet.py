"""The paper preset's experiment path on a tiny fake ImageNet in the real layout (raw ILSVRC-2012 archives →
`spot data imagenet` → `spot evaluate | oracle | throughput` with `retrofit: official` checkpoints in the release's
key layout → Tables 3 and 5 and Figure 5): stratified subsets of a class-sorted split, the release's ImageNet
normalisation, Table 3's per-trajectory RSG, Table 5's SPoT-ON kNN and the single-panel Figure 5 with its ceiling."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from test_imagenet import LEAVES, make_devkit, make_train, make_val
from test_official import release_state, save
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from spot import paper
from spot.cli import main
from spot.data import imagenet as inet
from spot.config import load_configs

PER_CLASS = {wnid: 10 for wnid, _ in LEAVES.values()}
VAL = [1] * 4 + [2] * 4 + [3] * 4  # class-sorted, as torchvision sorts ImageNet

SMALL = {
    "saliency": {"source": "spectral_residual"},
    "evaluation": {"limit": 6, "batch_size": 4, "priors": ["isotropic", "center"], "budgets": [25, 49],
                   "extra_budgets": [], "seeds": [0], "knn": {"train_limit": 9, "k": 3},
                   "snapped": ["isotropic"], "grid_model_priors": ["isotropic"], "extra_budget_priors": []},
    "oracle": {"limit": 6, "batch_size": 4, "budgets": [25, 49], "priors": ["isotropic", "uniform"],
               "settings": [{"lr": 3.0e-3, "steps": 1}, {"lr": 1.0e-2, "steps": 2}], "trajectories": {"images": 2}},
    "throughput": {"budgets": [25, 49], "batch_size": [1, 2], "warmup": 0, "repeats": 1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_imagenet")
    raw = root / "raw"
    raw.mkdir()
    make_devkit(raw / "ILSVRC2012_devkit_t12.tar.gz", ground_truth=VAL, per_class=PER_CLASS)
    make_train(raw / "ILSVRC2012_img_train.tar", per_class=PER_CLASS)
    make_val(raw / "ILSVRC2012_img_val.tar", n_images=len(VAL))
    data = root / "imagenet"
    inet.prepare_imagenet(raw, data, verify_md5=False, log=lambda msg: None)
    weights = save(root, release_state(depth=1, D=64, k=16, classes=3), name="spot_1k_b16.pth")
    record = root / "cls_in1k_official.json"  # what the workflow writes for `retrofit: official`
    record.write_text(json.dumps({"format": "official", "path": str(weights)}))
    small = root / "small.yaml"
    small.write_text(yaml.safe_dump({**SMALL, "saliency": {**SMALL["saliency"], "cache_dir": str(root / "sal")}}))
    configs = ["--config", "config/paper.yaml", "--config", str(small)]
    out = root / "results"
    common = [*configs, "--data", str(data), "--device", "cpu"]
    model = ["--backbone", "cls_in1k", "--model", f"spot={record}"]
    assert main(["evaluate", *common, *model, "--out", str(out / "evaluation.csv")]) == 0
    assert main(["oracle", *common, *model, "--out", str(out / "oracle.csv")]) == 0
    assert main(["throughput", *configs, *model, "--device", "cpu", "--out", str(out / "throughput.csv")]) == 0
    return out, load_configs(["config/paper.yaml", small])


def test_limits_are_stratified_subsets_of_the_class_sorted_splits(run):
    out, _ = run
    meta = json.loads((out / "evaluation.json").read_text())
    val, train = meta["subsets"]["val"], meta["subsets"]["train"]
    assert (val["kind"], val["n_images"], val["split_size"], val["classes"]) == ("stratified", 6, 12, 3)
    assert (train["kind"], train["n_images"], train["split_size"], train["classes"]) == ("stratified", 9, 30, 3)
    oracle = json.loads((out / "oracle.json").read_text())["subsets"]
    assert oracle["spot:val"]["indices_sha256"] == val["indices_sha256"]  # same seed, same size: same images
    assert oracle["spot:knn_bank:train"]["indices_sha256"] == train["indices_sha256"]
    with np.load(out / "oracle.trajectories.npz") as t:
        assert sorted(VAL[i] for i in t["indices"]) == [1, 1]  # the first 2 of the subset, split indices


def test_official_checkpoints_are_normalised_as_the_release(run):
    out, _ = run
    imagenet = [list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)]
    assert json.loads((out / "evaluation.json").read_text())["normalisation"]["spot"] == imagenet
    assert json.loads((out / "oracle.json").read_text())["normalisation"]["spot"] == imagenet


def test_table3_table5_and_figure5_from_the_paper_preset(run):
    out, config = run
    results = {"evaluation": [out / "evaluation.csv"], "oracle": [out / "oracle.csv"],
               "throughput": [out / "throughput.csv"]}
    t3 = paper.build("table3", results, config)
    assert list(t3.columns) == ["Backbone", "Statistic", "25 Tok.", "49 Tok."] and len(t3) == 4
    skipped = t3.set_index("Statistic").loc["trajectories skipped, initial score 0 (%)"]
    assert 0 <= skipped["25 Tok."] <= 100
    t5 = paper.build("table5", results, config)
    on = t5[t5.Model == "SPoT-ON"].iloc[0]
    assert all(0 <= on[f"{b} Tok. {m} (%)"] <= 100 for b in (25, 49) for m in ("Acc@1", "kNN"))
    t2 = paper.build("table2", results, config)
    assert [c for c in t2.columns if c.startswith("Oracle Δ")] == [
        "Oracle Δ (points), lr 0.003 × 1 steps (§4.2)", "Oracle Δ (points), lr 0.01 × 2 steps"]
    tp = pd.read_csv(out / "throughput.csv")
    assert set(tp.method) == {"spot"} and sorted(set(tp.batch_size)) == [1, 2]  # a sweep; SPoT rows only
    assert tp.device.str.startswith("cpu").all()  # the device of every measurement
    fig = paper.build("figure5", results, config)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "ceiling (ImageNet label noise, Beyer et al. 2020)" in labels and "SPoT-ON (best backbone)" in labels
    fastest = tp[tp.metric == "images_per_s"].groupby("budget").value.max()
    assert list(fig.axes[0].lines[0].get_xdata()) == [fastest[25], fastest[49]]  # SPoT at its fastest batch
