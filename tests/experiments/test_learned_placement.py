"""spot learned_placement: the learned placement's rows, its controls and costs, on tiny models trained here on
real Fashion-MNIST canvases."""
import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from helpers import spot_command, tiny_recipe

import spot
from spot.data.evaluation import EvalData
from spot.experiments.evaluate import EvaluationSettings, KnnSettings, evaluate_models
from spot.experiments.learned_placement import bracket, forward_costs
from spot.stats import decode_outcomes
from spot.weights.checkpoints import load_trained

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(train_tiny, tiny_spot):
    """The shared SPoT retrofit, a policy for it (frozen) and a jointly tuned one."""
    spot = tiny_spot["spot"]
    place = dict(task="place", init="parent", tokens=dict(mode="subpixel", budget="choices", choices=[4, 9]),
                 optimizer=dict(lr=2e-2, weight_decay=0.0), place=dict(policy=dict(glance=12, channels=[4, 8])))
    policy = train_tiny("policy", tiny_recipe(**{"epochs": 1, **place}), spot)
    joint = train_tiny("joint", tiny_recipe(**{"epochs": 1, **place, "place": dict(place["place"], tune="joint")}),
                       spot)
    control = dict(place["place"], tune="joint", policy=dict(place["place"]["policy"], floor=0.999))
    joint_control = train_tiny("joint_control", tiny_recipe(**{"epochs": 1, **place, "place": control}), spot)
    return dict(spot=spot, policy=policy, joint=joint, joint_control=joint_control, parent=tiny_spot["vit"],
                grid_control=tiny_spot["ctrl"])


def _config(tmp_path):
    config = {"learned_placement": dict(budgets=[4, 9], limit=60, batch_size=30, probe_images=200,
                                        relevance=[{"name": "relevance", "coarse": 4}], timing_batch=8, repeats=2,
                                        warmup=0, seeds=[0, 1]),
              "saliency": {"source": "article_mask"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_every_row_with_its_cost_and_outcomes(tmp_path, canvas, models):
    out = tmp_path / "lp.csv"
    spot_command("learned_placement", "--config", _config(tmp_path), "--backbone", "cls_in1k",
                 "--model", f"spot={models['spot']}", "--model", f"policy={models['policy']}",
                 "--model", f"joint={models['joint']}", "--model", f"joint_control={models['joint_control']}",
                 "--model", f"policy@other={models['policy']}",
                 "--model", f"parent={models['parent']}", "--model", f"grid_control={models['grid_control']}",
                 "--data", canvas, "--out", out)
    rows = pd.read_csv(out)
    acc = rows[rows.metric == "acc1"]
    assert set(acc.placement) >= {"learned", "learned_shuffled", "learned@other", "learned_joint",
                                  "learned_joint_control", "isotropic",
                                  "center", "uniform", "salient", "relevance(coarse=4)", "glance_probe"}
    assert (acc.n_images == 60).all() and acc.value.between(0, 100).all()
    blank = acc[acc.placement.str.endswith("_blank")]  # the model on blank images at each policy's positions
    assert set(blank.placement) == {"learned_blank", "learned@other_blank", "learned_joint_blank",
                                    "learned_joint_control_blank"} and len(blank) == 4 * 2
    probes = acc[acc.placement == "positions_probe"]  # the positions alone, per policy and budget
    assert set(zip(probes.variant, probes.budget)) == {(v, m) for v in ("spot", "joint", "joint_control") for m in (4, 9)}
    for _, r in acc.iterrows():  # the value is the mean of the row's own per-image outcomes
        assert r.value == pytest.approx(100 * decode_outcomes(r.outcomes, 60).mean())
    learned = acc[acc.placement == "learned"].set_index("budget")
    assert (learned.placement_gflops > 0).all() and (learned.gflops > learned.placement_gflops).all()
    iso = acc[acc.placement == "isotropic"].set_index("budget")
    # each learned cost is bracketed by two measured budgets of every prior, which cost no more than the forward
    for m, r in learned.iterrows():
        below, above = iso[iso.gflops <= r.gflops], iso[iso.gflops > r.gflops]
        assert len(below) and len(above)
    assert acc[acc.placement == "salient"].reads_true_mask.all()
    assert not acc[acc.placement == "center"].reads_true_mask.any()
    assert set(acc[acc.placement == "uniform"].seed) == {0, 1} and acc[acc.placement == "isotropic"].seed.isna().all()
    assert rows[(rows.metric == "images_per_s")].value.gt(0).all()
    full = rows[rows.metric == "forward_gflops"]  # the SPoT forward on the full 6×6 grid: the glance's yardstick
    assert list(full.budget) == [36] and full.value.iloc[0] > iso.gflops.max()
    # PatchDropout is the grid ViT on random patches (it embeds every patch before dropping: its own cost), the grid
    # control the SPoT forward; both at the budgets bracketing the learned costs, every seed
    dropout = acc[acc.method == "patchdropout"].groupby("budget").gflops.first()
    control = acc[acc.variant == "grid_control"].groupby("budget").gflops.first()
    assert set(acc[acc.method == "patchdropout"].placement) == {"grid_random"} and len(dropout) >= 2
    common = dropout.index.intersection(control.index)
    assert len(common) and all(dropout[m] != control[m] for m in common) and dropout.is_monotonic_increasing
    assert control.to_dict() == iso.gflops.reindex(control.index).to_dict()
    _same_as_evaluate(acc, canvas, models)
    _positions_and_figures(out, canvas)


def _positions_and_figures(out, canvas):
    """The example positions beside the table (the first test image of every class), and both figures drawn."""
    from spot import paper

    store = np.load(out.with_suffix(".positions.npz"))
    labels = store["labels"]
    assert sorted(labels) == sorted(set(labels)) and store["m4"].shape == (len(labels), 4, 2)
    assert store["m9"].shape == (len(labels), 9, 2) and ((store["m9"] >= 0) & (store["m9"] <= 1)).all()
    inputs = {"learned_placement": [str(out)], "learned_positions": [str(out.with_suffix(".positions.npz"))],
              "data": [str(canvas / "manifest.json")], "pruning": []}
    for name in ("figure_learned_placement", "figure_learned_positions"):
        fig = paper.build(name, inputs, {})
        assert len(fig.axes) >= 1 and any(ax.lines or ax.images for ax in fig.axes), name
    assert json.loads(out.with_suffix(".json").read_text())["provenance"]["config"]["learned_placement"]["budgets"] == [4, 9]


def _same_as_evaluate(acc, canvas, models):
    """The PatchDropout and grid-control rows are the evaluation's own (the same images, seeds and placements)."""
    rows = pd.DataFrame(evaluate_models(
        {"parent": models["parent"], "grid_control": models["grid_control"]}, canvas,
        EvaluationSettings(split="test", limit=60, priors=["isotropic"], budgets=[4, 9], seeds=[0, 1],
                           knn=KnnSettings(k=5, train_limit=60),
                           patchdropout=True, grid_placements=["grid_random"]), device="cpu", log=lambda *_: None))
    compared = 0
    for variant, method in (("parent", "patchdropout"), ("grid_control", "spot")):
        ours = acc[(acc.variant == variant) & (acc.method == method)]
        theirs = rows[(rows.variant == variant) & (rows.method == method) & (rows.metric == "acc1")
                      & (rows.placement == "grid_random")]
        for (m, seed), r in theirs.set_index(["budget", "seed"]).iterrows():
            mine = ours[(ours.budget == m) & (ours.seed == seed)]
            if len(mine):
                assert mine.outcomes.iloc[0] == r.outcomes, (variant, m, seed)
                compared += 1
    assert compared >= 8  # 2 methods × (at least) budgets 4, 9 × seeds 0, 1


def test_the_joint_control_holds_the_tokens_at_the_isotropic_layout(models):
    """The joint variant's control trains the model as the joint one does, with a policy whose floor (0.999) leaves
    it no mass to move: its positions stay within a hair of the Isotropic layout."""
    from spot.core.policy import load_policy

    x = torch.rand(3, 1, 48, 48)
    iso = spot.isotropic_layout(9, (48, 48)).double()
    control = load_policy(models["joint_control"])
    assert control.settings.floor == 0.999  # the recipe's override reached the policy
    assert torch.allclose(control.positions(x, 9), iso.expand(3, -1, -1), atol=2e-3)


def test_the_policy_rows_are_the_policys_own_positions(tmp_path, canvas, models):
    """The learned row's outcomes are those of the stored model run at its policy's positions (recomputed here)."""
    out = tmp_path / "lp.csv"
    spot_command("learned_placement", "--config", _config(tmp_path), "--backbone", "b", "--model",
                 f"spot={models['spot']}", "--model", f"policy={models['policy']}", "--data", canvas, "--out", out)
    rows = pd.read_csv(out)
    placed = load_trained(models["policy"])
    data = EvalData.open(canvas, "test", mean=(0.1,), std=(0.25,), limit=60, img_size=48)
    x, y, _ = next(data.batches(60))
    with torch.no_grad():
        expected = (placed(x, num_tokens=9).argmax(-1) == y).numpy()
        blank = (placed.model(torch.zeros_like(x), placed.policy.positions(x, 9)).argmax(-1) == y).numpy()
    for placement, want in (("learned", expected), ("learned_blank", blank)):
        r = rows[(rows.placement == placement) & (rows.budget == 9)].iloc[0]
        assert np.array_equal(decode_outcomes(r.outcomes, 60).astype(bool), want), placement


def test_costs_and_brackets():
    costs = {1: 1.0, 2: 2.0, 3: 3.0}
    assert bracket(costs, 2.5) == (2, 3) and bracket(costs, 2.0) == (2, 3) and bracket(costs, 0.5) == (1, 2)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=48, patch_size=8, in_chans=1, num_classes=10,
                            embed_dim=32, depth=2, num_heads=2)
    model = spot.SPoTViT.from_timm(vit).eval()
    c = forward_costs(model, (1, 48, 48), 6)  # the forward's cost grows with m
    assert all(c[m] < c[m + 1] for m in range(1, 6))
    # costed on until a budget costs more than a total: every learned total is bracketed, however large its glance
    assert forward_costs(model, (1, 48, 48), 2, above=c[5]) == pytest.approx({m: c[m] for m in range(1, 7)})


def test_the_models_it_needs_are_named(tmp_path, canvas, models):
    with pytest.raises(ValueError, match="needs --model spot=PATH"):
        spot_command("learned_placement", "--config", _config(tmp_path), "--model", f"spot={models['spot']}",
                     "--data", canvas, "--out", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="accepted names"):
        spot_command("learned_placement", "--config", _config(tmp_path), "--model", f"spot={models['spot']}",
                     "--model", f"policy={models['policy']}", "--model", f"other={models['spot']}",
                     "--data", canvas, "--out", tmp_path / "x.csv")
