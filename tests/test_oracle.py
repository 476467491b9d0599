"""SPoT-ON (spot.oracle): the search itself, the table runners, the CLI, transfer, and the errors."""
import argparse
import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import make_canvas

from spot import create_backbone, grid_positions, sample_positions, snap_to_grid
from spot.checkpoints import open_checkpoint
from spot.data.evaluation import EvalData
from spot.data.fmnist import CanvasConfig
from spot.models import SPoTViT
from spot.oracle import (
    OracleSettings,
    TransferSettings,
    configure_parser,
    configure_transfer_parser,
    oracle_experiments,
    oracle_search,
    phase_scrambled,
    relative_saliency_gain,
    run_from_args,
    run_transfer_from_args,
    saliency_scores,
    transfer,
)
from spot.oracle.tables import BLANK_STREAM, OUTCOME_COLUMNS, PROPORTIONS, _Tally
from spot.placement import ImageStreams
from spot.recipes import recipe_from_dict
from spot.stats import decode_outcomes
from spot.train import train

TRANSFER_PROPORTIONS = ("oracle_acc1", "original_acc1", "transfer_acc1", "random_target_rate",
                        "random_target_rate_init")


def load_classifier(path):
    """(model, (mean, std)) of a classifier checkpoint, as the oracle opens it."""
    checkpoint = open_checkpoint(path, classifier=True)
    return checkpoint.model.eval(), checkpoint.normalisation

SIZE = 32
MEAN, STD = [0.1], [0.25]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed=0) -> SPoTViT:
    torch.manual_seed(seed)
    vit = create_backbone("vit_nano_patch8", img_size=SIZE, in_chans=1, embed_dim=32, depth=2, num_heads=2)
    return SPoTViT.from_timm(vit).eval()


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    """32×32 canvases of real Fashion-MNIST articles when installed: 350 train, 50 val, 100 test."""
    return make_canvas(tmp_path_factory, 400, 100,
                       CanvasConfig(canvas_size=SIZE, placement_std=1.0, max_offset=2.0, val_size=50))[0]


@pytest.fixture(scope="module")
def checkpoints(canvas, tmp_path_factory):
    """Two tiny SPoT classifiers really trained by `spot.train` (1 epoch, subpixel tokens) + an MAE-format file."""
    d = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, seed in (("a", 0), ("b", 1)):
        recipe = recipe_from_dict(dict(
            task="classify", init="scratch", seed=seed,
            model=dict(backbone="vit_nano_patch8", img_size=SIZE, timm_kwargs=dict(embed_dim=32, depth=2, num_heads=2)),
            data=dict(kind="fmnist", mean=MEAN, std=STD, limit=200),
            tokens=dict(mode="subpixel", min_tokens=4, max_tokens=16),
            epochs=1, batch_size=50, optimizer=dict(lr=3e-3, weight_decay=0.05), eval_batch_size=100,
            eval_budgets=[4]), name)
        train(recipe, data_root=canvas, out=d / f"{name}.safetensors", state_dir=d / f"state_{name}",
              log=lambda *_: None, progress=False)
        paths[name] = d / f"{name}.safetensors"
    shutil.copy(paths["a"], d / "mae.safetensors")
    record = json.loads(paths["a"].with_suffix(".json").read_text())
    (d / "mae.json").write_text(json.dumps({**record, "format": "mae"}))
    paths["mae"] = d / "mae.safetensors"
    return paths


@pytest.fixture(scope="module")
def batch(canvas):
    data = EvalData.open(canvas, "test", mean=MEAN, std=STD, limit=16)
    images, labels, _ = next(data.batches(16))
    return images, labels


def _loss(model, images, labels, positions):
    with torch.no_grad():
        return F.cross_entropy(model(images, positions), labels).item()


# ------------------------------------------------------------------------------------------------ the search

def test_oracle_lowers_the_loss_and_ascent_raises_it(checkpoints, batch):
    model, _ = load_classifier(checkpoints["a"])
    images, labels = batch
    init = sample_positions("isotropic", 4, len(labels), (SIZE, SIZE))
    before = _loss(model, images, labels, init)
    down = oracle_search(model, images, labels, init, lr=3e-2, steps=10)
    up = oracle_search(model, images, labels, init, lr=3e-2, steps=10, ascent=True)
    # (a 1-epoch model: mean loss 2.23 → 2.14 descending, → 2.47 ascending)
    assert _loss(model, images, labels, down) < before - 0.04
    assert _loss(model, images, labels, up) > before + 0.1
    assert down.dtype == torch.float64 and down.shape == (len(labels), 4, 2) and not down.requires_grad
    assert 0 <= down.min() and down.max() <= 1 and 0 <= up.min() and up.max() <= 1
    # each image is its own problem: the batched search equals the search of every image alone
    alone = torch.cat([oracle_search(model, images[i:i + 1], labels[i:i + 1], init[:1], 3e-2, 10) for i in range(4)])
    assert torch.allclose(down[:4], alone, atol=1e-6)


def test_only_the_positions_change(batch):
    model = tiny_model().train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    flags["blocks.0.attn.qkv.weight"] = False
    model.get_parameter("blocks.0.attn.qkv.weight").requires_grad_(False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    images, labels = batch
    init = sample_positions("uniform", 5, len(labels), (SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    init_copy = init.clone()
    final = oracle_search(model, images, labels, init, lr=3e-2, steps=3)
    assert not torch.equal(final, init)  # the positions moved …
    assert torch.equal(init, init_copy)  # … as a copy: the caller's init is untouched
    for n, p in model.named_parameters():  # … and nothing else did
        assert torch.equal(p, before[n]), n
        assert p.grad is None, n
        assert p.requires_grad == flags[n], n  # the caller's requires_grad flags are restored
    assert model.training  # and the caller's mode


def test_trajectory_has_every_step_and_starts_at_the_init(batch):
    model = tiny_model()
    images, labels = batch
    init = sample_positions("isotropic", 4, 1, (SIZE, SIZE))[0]  # (m, 2): shared by every image
    final, traj = oracle_search(model, images, labels, init, lr=1e-2, steps=7, record_trajectory=True)
    assert traj.shape == (8, len(labels), 4, 2)
    assert torch.equal(traj[0], init.expand(len(labels), -1, -1))
    assert torch.equal(traj[-1], final)
    assert (traj[1:] != traj[:-1]).any(dim=(1, 2, 3)).all()  # every step moves something
    assert torch.equal(final, oracle_search(model, images, labels, init, lr=1e-2, steps=7))


# ------------------------------------------------------------------------------------------------ saliency gain

def test_saliency_score_and_rsg_by_hand():
    maps = torch.zeros(1, SIZE, SIZE)
    maps[..., SIZE // 2:] = 1.0  # salient right half
    init = torch.tensor([[[0.5, 0.25], [0.5, 0.75]]], dtype=torch.float64)  # one token on 0, one on 1
    final = torch.tensor([[[0.5, 0.75], [0.5, 0.75]]], dtype=torch.float64)  # both on 1
    s0, s1 = saliency_scores(maps, init, 8), saliency_scores(maps, final, 8)
    assert torch.allclose(s0, torch.tensor([[0.0, 1.0]])) and torch.allclose(s1, torch.ones(1, 2))
    assert relative_saliency_gain(s0.mean().item(), s1.mean().item()) == pytest.approx(100.0)
    # per trajectory (Eq. 5 for each token): the token starting at 0 has no relative gain (NaN), the other 0 %
    per_token = relative_saliency_gain(s0, s1)
    assert torch.isnan(per_token[0, 0]) and per_token[0, 1].item() == pytest.approx(0.0)
    # a 8×8 window at the straddling x = 0.5 reads half of each side; at a corner only a quarter of the image
    assert saliency_scores(maps, torch.tensor([[[0.5, 0.5]]], dtype=torch.float64), 8).item() == pytest.approx(0.5)
    ones = torch.ones(SIZE, SIZE)
    assert saliency_scores(ones, torch.tensor([[[0.0, 0.0]]], dtype=torch.float64), 8).item() == pytest.approx(0.25)
    assert np.isnan(relative_saliency_gain(0.0, 0.5))


# ------------------------------------------------------------------------------------------------ the tables

SMALL = dict(split="test", limit=24, batch_size=10, sparse_budget=4, budgets=[4, 16],
             settings=[{"lr": 1e-2, "steps": 2}, {"lr": 3e-2, "steps": 3}], main_setting=1,
             priors=["uniform", "isotropic", "salient"], trajectories={"images": 3}, saliency_window=8, seed=0)


def _settings(**changes) -> OracleSettings:
    from spot.recipes import settings_from_dict

    return settings_from_dict(OracleSettings, {**SMALL, **changes}, "oracle").validate()


def _value(rows, **match):
    hits = [r["value"] for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


def _check_proportions(rows, proportions) -> set:
    """Every proportion row's outcomes add up to its n_correct, value and interval; the other rows leave count and
    outcomes empty and carry an interval around their value (none: the median). Returns the proportion metrics
    seen."""
    seen = set()
    for r in rows:
        if r["metric"] not in proportions:
            assert pd.isna(r["n_correct"]) and pd.isna(r["outcomes"]), r
            if r["metric"] == "rsg_median":
                assert pd.isna(r["ci_low"]) and pd.isna(r["ci_high"]), r
            else:
                assert r["ci_low"] <= r["value"] <= r["ci_high"], r
            continue
        bits = decode_outcomes(r["outcomes"], int(r["n_images"]))
        assert bits.sum() == r["n_correct"], r
        assert r["value"] == 100 * r["n_correct"] / r["n_images"], r
        assert r["ci_low"] <= r["value"] <= r["ci_high"], r
        assert r["ci_high"] - r["ci_low"] > 1.0, r  # a real interval: 12–24 images pin no share to a point
        seen.add(r["metric"])
    return seen


def _outcomes(rows, **match) -> np.ndarray:
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, len(hits))
    return decode_outcomes(hits[0]["outcomes"], hits[0]["n_images"])


def test_tally_keeps_per_image_outcomes_in_batch_order():
    t = _Tally(is_proportion=lambda key: key == "p")
    t.add("p", torch.tensor([True, False]))
    t.add("p", torch.tensor([1.0, 1.0, 0.0]))
    t.add("x", torch.tensor([[0.5, 1.5]]))  # per token: a mean, no outcomes, one image: no interval
    p = t.columns("p")
    assert decode_outcomes(p["outcomes"], 5).tolist() == [True, False, True, True, False]
    assert (p["value"], p["n_images"], p["n_correct"]) == (60.0, 5, 3) and p["ci_low"] < 60.0 < p["ci_high"]
    x = t.columns("x")
    assert (x["value"], x["n_images"], x["n_correct"], x["outcomes"]) == (1.0, 1, None, None)
    assert np.isnan(x["ci_low"]) and np.isnan(x["ci_high"])
    # per token with NaN left out: the mean over the kept tokens, its interval over images (clustered), not tokens
    t.add("y", torch.tensor([[1.0, 1.0, float("nan")], [3.0, float("nan"), float("nan")], [2.0, 4.0, 6.0]]))
    y = t.columns("y")
    assert y["value"] == pytest.approx(17 / 6) and y["n_images"] == 3
    from spot.stats import Z
    sums, counts = np.array([2.0, 3.0, 12.0]), np.array([2, 1, 3])
    half = Z * np.sqrt(3 / 2 * ((sums - 17 / 6 * counts) ** 2).sum()) / 6
    assert (y["ci_low"], y["ci_high"]) == pytest.approx((17 / 6 - half, 17 / 6 + half))
    assert half > Z * np.std([1, 1, 3, 2, 4, 6], ddof=1) / np.sqrt(6)  # wider than if the 6 tokens were independent
    with pytest.raises(ValueError, match="one 0/1 value per image"):
        t.add("p", torch.ones(2, 3))
    with pytest.raises(ValueError, match="one 0/1 value per image"):
        t.add("p", torch.tensor([0.5]))


def test_tables_match_hand_computations(checkpoints, canvas):
    model, (mean, std) = load_classifier(checkpoints["a"])
    assert [list(mean), list(std)] == [MEAN, STD]  # the record's normalisation
    s = _settings()
    data = EvalData.open(canvas, "test", mean=mean, std=std, limit=s.limit)
    rows, traj = oracle_experiments(model, data, s, backbone="a")
    assert {r["experiment"] for r in rows} == {"table1", "table2", "table3", "table5", "table6", "controls"}
    assert all(r["n_images"] == 24 for r in rows)

    # Table 1 by hand: oracle from Isotropic at 4 tokens, accuracy at the subpixel and at the snapped positions
    x, y = data.images, data.labels
    init = sample_positions("isotropic", 4, len(y), (SIZE, SIZE))
    grid = grid_positions((SIZE, SIZE), 8)
    for st in s.search_settings():
        final = torch.cat([oracle_search(model, x[i:i + 10], y[i:i + 10], init[:1], st.lr, st.steps)
                           for i in range(0, 24, 10)])
        snapped = snap_to_grid(final, (SIZE, SIZE), 8)
        assert (snapped[..., None, :] == grid).all(-1).any(-1).all()  # snapped tokens sit on grid-cell centres
        with torch.no_grad():
            acc = 100 * (model(x, final).argmax(-1) == y).double().mean().item()
            acc_snap = 100 * (model(x, snapped).argmax(-1) == y).double().mean().item()
        key = dict(experiment="table1", placement="spot_on", setting=st.label, metric="acc1")
        assert _value(rows, positions="placed", **key) == pytest.approx(acc)
        with torch.no_grad():  # the outcomes are each image's, in the subset's order
            hits = (model(x, final).argmax(-1) == y).numpy()
        assert np.array_equal(_outcomes(rows, positions="placed", **key), hits)
        assert _value(rows, positions="snapped", **key) == pytest.approx(acc_snap)
        move = ((final - init) * SIZE).norm(dim=-1).mean().item()
        assert _value(rows, experiment="table1", setting=st.label, metric="displacement_px") == pytest.approx(move)

    # every proportion row carries its per-image outcomes (the blank images' too), no other row does
    assert _check_proportions(rows, PROPORTIONS) == {"acc1", "blank_acc1", "target_rate", "target_rate_init"}

    # derived metrics are what they say; Table 2 has an oracle gain for every setting
    for prior in SMALL["priors"]:
        spot = _value(rows, experiment="table2", placement=prior, init="", metric="acc1")
        for st in s.search_settings():
            on = _value(rows, experiment="table2", placement="spot_on", init=prior, setting=st.label, metric="acc1")
            assert _value(rows, experiment="table2", init=prior, setting=st.label,
                          metric="oracle_delta") == pytest.approx(on - spot)
    assert [r["seed"] for r in rows if r["experiment"] == "table2" and r["metric"] == "acc1"
            and r["init"] == ""] == [0, None, None]  # seeds on the stochastic priors' rows only (Salient: none)
    assert {r["backbone"] for r in rows} == {"a"} and {r["variant"] for r in rows} == {"spot"}
    # Table 3 by hand: Eq. 5 per trajectory (token), averaged over those with an initial score > 0
    from spot.saliency import SaliencySettings, saliency_maps

    maps = saliency_maps(data, data.index, SaliencySettings())
    main = s.search_settings()[s.main_setting]
    for b in SMALL["budgets"]:
        start = sample_positions("isotropic", b, 1, (SIZE, SIZE))
        final = torch.cat([oracle_search(model, x[i:i + 10], y[i:i + 10], start, main.lr, main.steps)
                           for i in range(0, 24, 10)])
        before, after = saliency_scores(maps, start.expand_as(final), 8), saliency_scores(maps, final, 8)
        kept = before > 0
        gains = 100 * (after[kept] - before[kept]) / before[kept]
        s0 = _value(rows, experiment="table3", budget=b, metric="saliency_init")
        s1 = _value(rows, experiment="table3", budget=b, metric="saliency_final")
        assert s0 == pytest.approx(before.double().mean().item()) and 0 < s0 < 1
        assert _value(rows, experiment="table3", budget=b, metric="rsg") == pytest.approx(gains.double().mean().item())
        assert _value(rows, experiment="table3", budget=b, metric="rsg_median") == \
            pytest.approx(float(np.median(gains.double().numpy())))
        assert _value(rows, experiment="table3", budget=b, metric="rsg_ratio_of_means") == \
            pytest.approx(100 * (s1 - s0) / s0)
        assert _value(rows, experiment="table3", budget=b, metric="rsg_zero_init") == \
            pytest.approx(100 * (~kept).double().mean().item())
        assert (~kept).any() and kept.any()  # background tokens are skipped, article tokens counted
    iso = _value(rows, experiment="table6", placement="isotropic", metric="acc1")
    assert iso == _value(rows, experiment="table1", placement="isotropic", positions="placed", metric="acc1")
    for placement, start in (("spot_on_ascent", "isotropic"), ("spot_on_random_label", "isotropic"),
                             ("background", ""), ("boundary", "")):
        acc = _value(rows, experiment="table6", placement=placement, init=start, metric="acc1")
        assert _value(rows, experiment="table6", placement=placement, init=start,
                      metric="drop_vs_isotropic") == pytest.approx(iso - acc)
    # Table 5's SPoT-ON at the sparse budget is Table 1's main setting
    assert _value(rows, experiment="table5", placement="spot_on", budget=4, metric="acc1") == \
        _value(rows, experiment="table1", placement="spot_on", positions="placed", setting="lr=0.03,steps=3",
               metric="acc1")

    # Figure 4: the first 3 images, every step, starting at the Isotropic init
    assert traj["positions"].shape == (4, 3, 4, 2) and traj["positions"].dtype == np.float32
    assert np.array_equal(traj["indices"], data.index[:3].numpy()) and np.array_equal(traj["labels"], y[:3].numpy())
    assert np.allclose(traj["positions"][0], init[:3].numpy())


def test_cli_run_with_limit_reproduces_its_numbers(checkpoints, canvas, tmp_path):
    import yaml

    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({"oracle": SMALL}))
    p = argparse.ArgumentParser()
    configure_parser(p)
    outs = []
    for run in (1, 2):
        out = tmp_path / f"run{run}" / "oracle.csv"
        args = p.parse_args(["--config", "config.yaml", "--config", str(small), "--backbone", "a",
                             "--model", f"spot={checkpoints['a']}",
                             "--data", str(canvas), "--out", str(out), "--limit", "20", "--tables", "1,2,6",
                             "--device", "cpu"])
        assert run_from_args(args) == 0
        outs.append(out)
    first, second = pd.read_csv(outs[0]), pd.read_csv(outs[1])
    pd.testing.assert_frame_equal(first, second)
    assert set(first.experiment) == {"table1", "table2", "table6"} and (first.n_images == 20).all()
    assert list(first.columns) == ["experiment", "backbone", "variant", "method", "placement", "init", "positions",
                                   "budget", "setting", "seed", "metric", "value", "n_images", "n_correct",
                                   "ci_low", "ci_high", "outcomes"]
    meta = json.loads(outs[0].with_suffix(".json").read_text())
    assert meta["provenance"]["config"]["oracle"]["limit"] == 20
    assert {"checkpoint:spot", "data:manifest"} <= set(meta["provenance"]["inputs"])
    assert meta["normalisation"]["spot"] == [MEAN, STD]
    assert meta["subsets"]["spot:test"]["kind"] == "stratified" and meta["subsets"]["spot:test"]["n_images"] == 20
    with np.load(outs[0].with_suffix(".trajectories.npz")) as t:
        assert t["positions"].shape == (1, 4, 3, 4, 2) and list(t["models"]) == ["a"]  # named by the backbone
        assert int(t["steps"]) == 3 and float(t["lr"]) == pytest.approx(3e-2)


def test_transfer_covers_every_ordered_pair(checkpoints, canvas, tmp_path):
    import yaml

    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({"oracle": SMALL, "transfer": {"budget": 4, "prior": "isotropic", "budgets": [4]}}))
    p = argparse.ArgumentParser()
    configure_transfer_parser(p)
    out = tmp_path / "transfer.csv"
    args = p.parse_args(["--config", "config.yaml", "--config", str(small), "--model", f"a={checkpoints['a']}",
                         "--model", f"b={checkpoints['b']}", "--model", f"c={checkpoints['a']}", "--data", str(canvas),
                         "--out", str(out), "--limit", "12"])
    assert run_transfer_from_args(args) == 0
    rows = pd.read_csv(out)
    assert _check_proportions(rows.to_dict("records"), TRANSFER_PROPORTIONS) == set(TRANSFER_PROPORTIONS)
    delta = rows[rows.metric == "transfer_delta"]
    assert sorted(zip(delta.source, delta.target)) == sorted(itertools.permutations("abc", 2))
    for (src, tgt), g in rows[rows.source != rows.target].groupby(["source", "target"]):
        v = dict(zip(g.metric, g.value))
        assert v["transfer_delta"] == pytest.approx(v["transfer_acc1"] - v["original_acc1"])
    # c is a copy of a: a's positions on c score a's own oracle accuracy; the original accuracy depends on the target
    own = rows[(rows.metric == "oracle_acc1")].set_index("source").value
    assert rows[(rows.source == "a") & (rows.target == "c") & (rows.metric == "transfer_acc1")].value.item() == own["a"]
    assert rows[rows.metric == "original_acc1"].groupby("target").value.nunique().eq(1).all()
    assert (rows.n_images == 12).all()


# ------------------------------------------------------------------------------------------------ errors

def test_shipped_config_sections_parse():
    from spot.recipes import load_config, settings_from_dict

    for file in ("config.yaml", "config/paper.yaml"):
        config = load_config(file)
        o = settings_from_dict(OracleSettings, config["oracle"], "oracle").validate()
        t = settings_from_dict(TransferSettings, config["transfer"], "transfer").validate()
        assert [s.label for s in o.search_settings()] == ["lr=0.003,steps=5", "lr=0.01,steps=10"]
        assert o.main.label == "lr=0.01,steps=10" and t.budget == o.sparse_budget
    assert o.sparse_budget == 25 and o.saliency_window == 16 and o.limit is None



def test_clear_errors(checkpoints, canvas, batch, tmp_path):
    model = tiny_model()
    images, labels = batch
    init = sample_positions("isotropic", 4, len(labels), (SIZE, SIZE))
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        oracle_search(model, images, labels, init, lr=0.0, steps=3)
    with pytest.raises(ValueError, match="steps must be an int ≥ 1"):
        oracle_search(model, images, labels, init, lr=1e-2, steps=0)
    with pytest.raises(ValueError, match="oracle.priors: unknown placement 'nope'"):
        _settings(priors=["isotropic", "nope"])
    with pytest.raises(ValueError, match="unknown placement"):
        TransferSettings(prior="nope").validate()
    with pytest.raises(ValueError, match="token budget must be an int ≥ 1"):
        _settings(sparse_budget=0)
    with pytest.raises(ValueError, match="token budget must be an int ≥ 1"):
        _settings(budgets=[4, 0])
    with pytest.raises(ValueError, match="token budget must be an int ≥ 1"):
        TransferSettings(budget=0).validate()
    with pytest.raises(ValueError, match=r"oracle.settings\[1\]: lr must be"):
        _settings(settings=[{"lr": 1e-2, "steps": 2}, {"lr": -1, "steps": 2}])
    with pytest.raises(ValueError, match=r"oracle.settings\[0\]: steps must be"):
        _settings(settings=[{"lr": 1e-2, "steps": 0}], main_setting=0)
    with pytest.raises(ValueError, match="unknown key"):
        _settings(settings=[{"lr": 1e-2, "step": 2}], main_setting=0)
    with pytest.raises(ValueError, match="main_setting"):
        _settings(main_setting=2)
    with pytest.raises(ValueError, match="MAE checkpoint"):
        load_classifier(checkpoints["mae"])
    with pytest.raises(ValueError, match="at least 2 models"):
        transfer({"a": model}, None, TransferSettings(), OracleSettings())
    p = argparse.ArgumentParser()
    configure_transfer_parser(p)
    args = p.parse_args(["--config", "config.yaml", "--model", f"a={checkpoints['a']}", "--data", str(canvas),
                         "--out", str(tmp_path / "t.csv")])
    with pytest.raises(ValueError, match="at least 2 models"):
        run_transfer_from_args(args)
    p = argparse.ArgumentParser()
    configure_parser(p)
    base = ["--config", "config.yaml", "--data", str(canvas), "--out", str(tmp_path / "o.csv")]
    with pytest.raises(ValueError, match="MAE checkpoint"):
        run_from_args(p.parse_args(base + ["--model", f"m={checkpoints['mae']}"]))
    with pytest.raises(ValueError, match="=PATH"):
        run_from_args(p.parse_args(base + ["--model", str(checkpoints["a"])]))
    with pytest.raises(ValueError, match="unknown table"):
        run_from_args(p.parse_args(base + ["--model", f"a={checkpoints['a']}", "--tables", "1,4"]))
    assert not (tmp_path / "o.csv").exists()


def test_table5_knn_classifies_final_positions_against_the_isotropic_bank(checkpoints, canvas):
    """Table 5's SPoT-ON kNN (our procedure): pooled features at the oracle's final positions against the bank of
    evaluation.knn encoded at the Isotropic positions of the same budget; the start's kNN beside it."""
    from spot.evaluate import KnnSettings, knn_classify
    from spot.oracle import KnnBank

    model, (mean, std) = load_classifier(checkpoints["a"])
    s = _settings(budgets=[4], priors=["isotropic"], trajectories={"images": 0})
    data = EvalData.open(canvas, "test", mean=mean, std=std, limit=s.limit)
    knn = KnnSettings(k=5, temperature=0.07, train_split="train", train_limit=60, chunk_size=7)
    bank_data = EvalData.open(canvas, "train", mean=mean, std=std, limit=60)
    assert bank_data.subset["kind"] == "stratified" and bank_data.n == 60
    rows, _ = oracle_experiments(model, data, s, tables=("5",), knn_bank=KnnBank(bank_data, knn, batch_size=25))

    start = sample_positions("isotropic", 4, 1, (SIZE, SIZE))
    main = s.search_settings()[s.main_setting]
    final = torch.cat([oracle_search(model, data.images[i:i + 10], data.labels[i:i + 10], start, main.lr, main.steps)
                       for i in range(0, 24, 10)])
    with torch.no_grad():
        bank = model.pooled_features(bank_data.images, start)
        for placement, positions in (("isotropic", start), ("spot_on", final)):
            queries = model.pooled_features(data.images, positions)
            preds = knn_classify(bank, bank_data.labels, queries, k=5, temperature=0.07, num_classes=10)
            expected = 100 * (preds == data.labels).double().mean().item()
            assert _value(rows, experiment="table5", placement=placement, metric="knn") == pytest.approx(expected)
    # without a bank there are no kNN rows
    rows, _ = oracle_experiments(model, data, s, tables=("5",))
    assert {r["metric"] for r in rows} == {"acc1"}


# ------------------------------------------------------------------------------------------------ the controls

class PositionsOnly(torch.nn.Module):
    """A toy classifier whose output depends on the token positions only (the image is ignored): the centroid of
    the tokens, read by 4 classes pointing right, left, down, up — fully steerable by construction."""

    num_classes, patch_size, image_size = 4, 8, (SIZE, SIZE)

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(400.0))

    def forward(self, images, positions):
        c = positions.float().mean(1) - 0.5  # (B, 2): (y, x) of the centroid, 0 at the Isotropic start
        return self.gain * torch.stack([c[:, 1], -c[:, 1], c[:, 0], -c[:, 0]], dim=1)


class ImageOnly(torch.nn.Module):
    """A toy classifier that ignores the positions (its output is a function of the image alone)."""

    num_classes, patch_size, image_size = 4, 8, (SIZE, SIZE)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(SIZE * SIZE, 4)

    def forward(self, images, positions):
        return self.head(images.flatten(1)) + 0.0 * positions.float().sum((1, 2))[:, None]


def _four_class_data(canvas):
    data = EvalData.open(canvas, "test", mean=MEAN, std=STD, limit=24)
    data.labels = data.labels % 4
    return data


CONTROLS = dict(budgets=[4, 9], priors=["isotropic"], trajectories={"images": 0})


def test_controls_a_positions_only_model_is_fully_steerable(canvas):
    data = _four_class_data(canvas)
    rows, _ = oracle_experiments(PositionsOnly(), data, _settings(**CONTROLS), tables=("controls",))
    assert {r["experiment"] for r in rows} == {"controls"}
    for b in (4, 9):
        def v(placement, metric):
            return _value(rows, placement=placement, budget=b, metric=metric)

        assert v("spot_on_random_target", "target_rate") == 100.0  # every random target reached …
        assert v("spot_on_random_target", "target_rate_init") <= 40.0  # … from one class for all at the start
        assert v("spot_on_random_target", "acc1") == 0.0  # a wrong label reached means the true one is lost
        assert v("spot_on", "acc1") == 100.0  # the oracle "finds" every true label …
        assert v("spot_on", "blank_acc1") == 100.0  # … on blank images as well: no evidence needed
        assert _outcomes(rows, placement="spot_on", budget=b, metric="blank_acc1").all()  # (each image's)
        assert v("isotropic", "blank_acc1") == v("isotropic", "acc1")  # (the start ignores the image too)
        assert v("spot_on_label_free", "acc1") < 50.0  # the label-free search cannot know the label
    seeds = {r["placement"]: r["seed"] for r in rows}
    assert seeds["spot_on_random_target"] == 0 and seeds["spot_on"] is None and seeds["spot_on_label_free"] is None


def test_controls_a_model_that_ignores_positions_is_not_steerable(canvas):
    data = _four_class_data(canvas)
    model = ImageOnly()
    canvas_blank = dict(CONTROLS, controls={"blank": "background"})
    rows, _ = oracle_experiments(model, data, _settings(**canvas_blank), tables=("controls",))
    with torch.no_grad():
        pred = model(data.images, torch.zeros(1, 4, 2)).argmax(-1)
        blank_pred = model(torch.full_like(data.images[:1], -MEAN[0] / STD[0]), torch.zeros(1, 4, 2)).argmax(-1)
    acc = 100 * (pred == data.labels).double().mean().item()
    for b in (4, 9):
        def v(placement, metric):
            return _value(rows, placement=placement, budget=b, metric=metric)

        assert v("spot_on_random_target", "target_rate") == v("spot_on_random_target", "target_rate_init") < 100.0
        assert v("spot_on", "acc1") == v("spot_on_label_free", "acc1") == v("isotropic", "acc1") == \
            pytest.approx(acc)
        # blank images: the background canvas, one prediction for all, right for the images of that class only
        expected = 100 * (data.labels == blank_pred).double().mean().item()
        assert v("spot_on", "blank_acc1") == v("isotropic", "blank_acc1") == pytest.approx(expected)
    # the random targets are never the true label, and the draw is the image's own (independent of the batch size)
    from spot.oracle import random_other_labels

    labels = torch.arange(4).repeat(50)
    draws = random_other_labels(labels, 4, torch.Generator().manual_seed(0))
    assert (draws != labels).all() and set(draws.tolist()) == {0, 1, 2, 3}
    again, _ = oracle_experiments(model, data, _settings(**canvas_blank, batch_size=7), tables=("controls",))
    assert again == rows


def test_scrambled_blank_images_keep_the_spectrum_and_lose_the_object(canvas):
    data = EvalData.open(canvas, "test", mean=MEAN, std=STD, limit=12)
    images, streams = data.images, ImageStreams(BLANK_STREAM, 0, "test")
    blank = phase_scrambled(images, data.index, streams)
    assert blank.shape == images.shape and blank.dtype == images.dtype
    # each image keeps its per-channel mean and amplitude spectrum (float32 rounding) …
    assert torch.allclose(blank.mean((-2, -1)), images.mean((-2, -1)), atol=1e-5)
    spectrum = torch.fft.fft2(images.double()).abs()
    assert torch.allclose(torch.fft.fft2(blank.double()).abs(), spectrum, atol=1e-3 * spectrum.max().item())
    # … and loses the object: it is uncorrelated with its original, and the blank images all differ
    flat, original = blank.flatten(1).double(), images.flatten(1).double()
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(flat.numpy(), original.numpy())]
    assert max(abs(c) for c in corr) < 0.5
    others = ~torch.eye(len(flat), dtype=torch.bool)  # two independent scrambles lie ≈ √2·σ·√pixels apart
    assert torch.cdist(flat, flat)[others].min() > 0.5 * flat.std(dim=1).min() * flat.shape[1] ** 0.5
    # the image's own stream: the same blank image whatever the batch it is in
    parts = [phase_scrambled(images[i:i + 5], data.index[i:i + 5], streams) for i in range(0, 12, 5)]
    assert torch.equal(torch.cat(parts), blank)
    assert not torch.equal(phase_scrambled(images, data.index, ImageStreams(BLANK_STREAM, 1, "test")), blank)


def test_scrambled_blank_control_classifies_each_images_own_blank(canvas):
    """The default blank control: every image its own phase-scrambled version, so the blank rows are a real
    sample of per-image outcomes (a model ignoring positions: its prediction on each scrambled image)."""
    data = _four_class_data(canvas)
    model, s = ImageOnly(), _settings(**CONTROLS)
    assert s.controls.blank == "scrambled"
    rows, _ = oracle_experiments(model, data, s, tables=("controls",))
    blank = phase_scrambled(data.images, data.index, ImageStreams(BLANK_STREAM, s.seed, data.split))
    with torch.no_grad():
        hits = (model(blank, torch.zeros(1, 4, 2)).argmax(-1) == data.labels).numpy()
    assert 0 < hits.sum() < len(hits)
    for b in (4, 9):
        for placement in ("isotropic", "spot_on"):
            assert np.array_equal(_outcomes(rows, placement=placement, budget=b, metric="blank_acc1"), hits)
    assert _check_proportions(rows, PROPORTIONS) == {"acc1", "blank_acc1", "target_rate", "target_rate_init"}


def test_cross_model_controls(canvas):
    """Positions searched towards random targets on a positions-only model carry the targets to its copy, and do
    nothing to a model that ignores positions; Table 4's rows are the transfer budget's, the others are controls."""
    data = _four_class_data(canvas)
    models = {"a": PositionsOnly(), "b": PositionsOnly(), "c": ImageOnly()}
    settings = TransferSettings(budget=4, budgets=[4, 9], random_target=True)
    records = transfer(models, data, settings, _settings(**CONTROLS))
    assert _check_proportions(records, TRANSFER_PROPORTIONS) == set(TRANSFER_PROPORTIONS)
    rows = pd.DataFrame(records)
    assert set(rows[rows.experiment == "table4"].budget) == {4}
    assert set(rows[rows.placement == "spot_on_random_target"].experiment) == {"controls"}
    assert set(rows[(rows.experiment == "controls") & (rows.placement == "spot_on")].budget) == {9}

    def v(src, tgt, metric, budget=9):
        return rows[(rows.source == src) & (rows.target == tgt) & (rows.metric == metric) &
                    (rows.budget == budget)].value.item()

    for budget in (4, 9):
        assert v("a", "a", "random_target_rate", budget) == v("a", "b", "random_target_rate", budget) == 100.0
        assert v("a", "c", "random_target_rate", budget) == v("a", "c", "random_target_rate_init", budget)
        assert v("a", "b", "transfer_acc1", budget) == 100.0 and v("b", "a", "transfer_acc1", budget) == 100.0
        assert v("a", "c", "transfer_delta", budget) == 0.0
    # without random targets: Table 4's rows and the cross-model oracle at the other budgets only
    plain = pd.DataFrame(transfer(models, data, TransferSettings(budget=4, budgets=[9]), _settings(**CONTROLS)))
    assert "spot_on_random_target" not in set(plain.placement)
    common = ["source", "target", "metric", "budget", "value"]
    merged = plain[common].merge(rows[common], on=common[:-1], suffixes=("", "_rt"))
    assert len(merged) == len(plain) and (merged.value == merged.value_rt).all()


def test_settings_name_the_searches_the_oracle_registers():
    """spot.settings.oracle.SEARCHES (torch-free: what a config naming a search is checked against while the DAG is
    built) are exactly the placements spot.oracle.search registers; the settings classes are the oracle's own."""
    import spot.oracle.search
    from spot.placement import PLACEMENTS
    from spot.pruning.experiment import PruningSettings
    from spot.settings import oracle as settings

    registered = [name for name, cls in PLACEMENTS.items() if cls.__module__ == spot.oracle.search.__name__]
    assert sorted(registered) == sorted(settings.SEARCHES) and len(set(settings.SEARCHES)) == len(settings.SEARCHES)
    assert OracleSettings is settings.OracleSettings and TransferSettings is settings.TransferSettings
    assert spot.oracle.search.SearchSetting is settings.SearchSetting
    assert PruningSettings(models={"evit": "prune_evit"}, equal_cost="evit",
                           equal_cost_priors=list(settings.SEARCHES)).validate()


def test_control_settings_errors():
    with pytest.raises(ValueError, match="oracle.controls.blank must be one of scrambled, background, mean"):
        _settings(controls={"blank": "white"})
    with pytest.raises(ValueError, match="oracle.controls.random_target must be true or false"):
        _settings(controls={"random_target": "yes"})
    with pytest.raises(ValueError, match="unknown key"):
        _settings(controls={"steer": True})
    with pytest.raises(ValueError, match="transfer.budgets"):
        TransferSettings(budgets=[4, 0]).validate()
    with pytest.raises(ValueError, match="objective must be one of"):
        oracle_search(PositionsOnly(), torch.zeros(1, 1, SIZE, SIZE), torch.zeros(1, dtype=torch.long),
                      torch.full((4, 2), 0.5), 1e-2, 2, objective="hinge")
    assert _settings(controls={"blank": None, "random_target": False, "label_free": False}).controls.any is False
