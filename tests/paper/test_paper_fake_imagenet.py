"""The paper preset's experiment path on a tiny fake ImageNet in the real layout (raw ILSVRC-2012 archives →
`spot data imagenet` → `spot evaluate | oracle | throughput` with `retrofit: official` checkpoints in the release's
key layout → Tables 3 and 5 and Figure 5): stratified subsets of a class-sorted split, the release's ImageNet
normalisation, Table 3's per-trajectory RSG, Table 5's SPoT-ON kNN and the single-panel Figure 5 with its ceiling."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from data.test_imagenet import LEAVES, make_devkit, make_train, make_val
from weights.test_official import release_state, save
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from spot import paper
from spot.app.cli import main
from spot.provenance import sha256_file
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
    "transfer": {"budgets": [25, 49]},
    "throughput": {"budgets": [25, 49], "batch_size": [1, 2], "warmup": 0, "repeats": 1},
    "pruning": {"sweep": [0.5, 0.7], "combined_budgets": [196]},
}


def fake_imagenet(root):
    """The three raw ILSVRC-2012 archives in miniature (VAL, PER_CLASS), prepared as `spot data imagenet` does."""
    raw = root / "raw"
    raw.mkdir()
    make_devkit(raw / "ILSVRC2012_devkit_t12.tar.gz", ground_truth=VAL, per_class=PER_CLASS)
    make_train(raw / "ILSVRC2012_img_train.tar", per_class=PER_CLASS)
    make_val(raw / "ILSVRC2012_img_val.tar", n_images=len(VAL))
    data = root / "imagenet"
    inet.prepare_imagenet(raw, data, verify_md5=False, log=lambda msg: None)
    return data


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_imagenet")
    data = fake_imagenet(root)
    weights = save(root, release_state(depth=1, D=64, k=16, classes=3), name="spot_1k_b16.pth")
    record = root / "cls_in1k_official.json"  # what the workflow writes for `retrofit: official`
    record.write_text(json.dumps({"format": "official", "path": str(weights), "sha256": sha256_file(weights)}))
    small = root / "small.yaml"
    small.write_text(yaml.safe_dump({**SMALL, "saliency": {**SMALL["saliency"], "cache_dir": str(root / "sal")}}))
    configs = ["--config", "config/paper.yaml", "--config", str(small)]
    out = root / "results"
    common = [*configs, "--data", str(data), "--device", "cpu"]
    model = ["--backbone", "cls_in1k", "--model", f"spot={record}"]
    assert main(["evaluate", *common, *model, "--out", str(out / "evaluation.csv")]) == 0
    assert main(["oracle", *common, *model, "--out", str(out / "oracle.csv")]) == 0
    # the cross-model controls need two models: the release's checkpoint under two backbone names
    assert main(["transfer", *common, "--model", f"cls_in1k={record}", "--model", f"cls_in21k={record}",
                 "--out", str(out / "transfer.csv")]) == 0
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
               "throughput": [out / "throughput.csv"], "transfer": [out / "transfer.csv"]}
    t3 = paper.build("table3", results, config)
    assert [c for c in t3.columns if "95% CI" not in c] == ["Backbone", "Statistic", "25 Tok.", "49 Tok."]
    assert len(t3) == 4 and t3["25 Tok. 95% CI low"].iloc[0] <= t3["25 Tok."].iloc[0]  # each mean with its interval
    skipped = t3.set_index("Statistic").loc["trajectories skipped, initial score 0 (%)"]
    assert 0 <= skipped["25 Tok."] <= 100
    t5 = paper.build("table5", results, config)
    on = t5[t5.Model == "SPoT-ON"].iloc[0]
    assert all(0 <= on[f"{b} Tok. {m} (%)"] <= 100 for b in (25, 49) for m in ("Acc@1", "kNN"))
    t2 = paper.build("table2", results, config)
    assert [c for c in t2.columns if c.startswith("Oracle Δ") and "95% CI" not in c] == [
        "Oracle Δ (points), lr 0.003 × 1 steps (§4.2)", "Oracle Δ (points), lr 0.01 × 2 steps"]
    tp = pd.read_csv(out / "throughput.csv")
    assert set(tp.method) == {"spot"} and sorted(set(tp.batch_size)) == [1, 2]  # a sweep; SPoT rows only
    assert tp.device.str.startswith("cpu").all()  # the device of every measurement
    controls = paper.build("oracle_controls", results, config).set_index("Measure")
    # the same checkpoint twice: positions searched on one steer the other exactly as they steer it
    steered = controls.loc["SPoT-ON towards a random wrong label: label output (%)", "49 Tok."]
    assert controls.loc["random-wrong-label positions from CLS-IN21k: label output (%)", "49 Tok."] == steered
    assert 0 <= controls.loc["SPoT-ON on blank images Acc@1 (%)", "25 Tok."] <= 100  # the paper preset's blank: mean
    # the paper preset chooses Figure 5's prior on val, the split it reports (ImageNet has no other labelled one):
    # prior_selection's candidates are measured like the evaluation, here the evaluation's own rows stand in
    fig = paper.build("figure5", {**results, "prior_selection": [out / "evaluation.csv"]}, config)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "ceiling (ImageNet label noise, Beyer et al. 2020)" in labels and "SPoT-ON (SPoT's backbone)" in labels
    fastest = tp[tp.metric == "images_per_s"].groupby("budget").value.max()
    assert list(fig.axes[0].lines[0].get_xdata()) == [fastest[25], fastest[49]]  # SPoT at its fastest batch


@pytest.fixture(scope="module")
def pruning_run(tmp_path_factory, run):
    """The paper preset's token pruning on the fake ImageNet: a DeiT-T (random weights, stored as `spot checkpoints
    fetch` stores the hub's) fine-tuned with the paper's SPOT-AD recipe for one short epoch, then `spot pruning` and
    `spot throughput` for the backbone, as the workflow's rules call them."""
    import timm
    from safetensors.torch import save_file

    out, config = run
    root = out.parent
    vit = timm.create_model("deit_tiny_patch16_224")
    downloaded = root / "deit_tiny_model.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(downloaded))
    assert main(["checkpoints", "fetch", "deit_t", "--dir", str(root / "checkpoints"), "--from", str(downloaded)]) == 0
    parent = root / "checkpoints" / "deit_t.safetensors"
    configs = ["--config", "config/paper.yaml", "--config", str(root / "small.yaml")]
    pruned = root / "models" / "deit_t_prune_spot_ad.safetensors"
    assert main(["train", *configs, "--recipe", "prune_spot_ad_deit", "--data", str(root / "imagenet"), "--out",
                 str(pruned), "--parent", str(parent), "--state-dir", str(root / "state"), "--device", "cpu",
                 "--no-progress", "--set", "epochs=1", "--set", "batch_size=6", "--set", "eval_batch_size=6",
                 "--set", "data.workers=0"]) == 0
    models = ["--backbone", "deit_t", "--model", f"parent={parent}", "--model", f"spot_ad={pruned}"]
    assert main(["pruning", *configs, "--data", str(root / "imagenet"), "--device", "cpu", *models,
                 "--out", str(out / "pruning.csv")]) == 0
    assert main(["throughput", *configs, "--backbone", "deit_t", "--model", f"parent={parent}", "--device", "cpu",
                 "--out", str(out / "throughput_deit_t.csv")]) == 0
    return out, config, pruned


def test_paper_pruning_recipe_fine_tunes_deit_and_records_it(pruning_run):
    _, _, pruned = pruning_run
    record = json.loads(pruned.with_suffix(".json").read_text())
    assert record["format"] == "pruned_vit" and record["backbone"] == "deit_t"
    assert record["prune"] == {"method": "spot_ad", "keep_ratio": 0.7, "stages": [3, 6, 9], "base_format": "timm_vit",
                               "settings": {"d_remap": 192, "statistics": ["mean", "variance"], "dynamics": True,
                                            "heads": "per_head", "shared": False, "attention": True}}
    assert record["recipe"]["prune"]["rate_weight"] == 2.0 and record["recipe"]["optimizer"]["lr"] == 1e-3


def test_paper_pruning_tables_from_the_fake_imagenet(pruning_run):
    out, config, _ = pruning_run
    rows = pd.read_csv(out / "pruning.csv")
    assert set(rows.backbone) == {"deit_t"} and (rows.n_images == 6).all()
    assert set(rows.keep_ratio.dropna()) == {0.5, 0.7, 1.0}  # the sweep and the dense model
    assert "spot" not in set(rows.variant)  # DeiT has no SPoT model: no sampling rows
    tp = pd.read_csv(out / "throughput_deit_t.csv")
    timed = tp[(tp.metric == "gflops_per_image") & (tp.setting == "spot_ad") & np.isclose(tp.keep_ratio, 0.7)]
    assert 2 * 0.84 == pytest.approx(timed["value"].iloc[0], abs=0.01)  # DeiT-T + SPOT-AD: 0.84 GMACs (2 FLOPs each)
    results = {"pruning": [out / "pruning.csv"], "throughput": [out / "throughput_deit_t.csv"]}
    t1 = paper.build("pruning_table1", results, config)
    assert list(t1["Method"][:2]) == ["Baseline (dense)", "SPOT-AD"] and set(t1["Model"]) == {"DeiT-T"}
    assert t1.set_index("Method").loc["SPOT-AD", "GFLOPs Δ (%)"] == pytest.approx(100 * (0.844 / 1.254 - 1), abs=0.5)
