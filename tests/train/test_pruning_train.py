"""Pruning fine-tunes (task: prune): Eq. 15, predictor learning rate, resume, records and reloading."""
import os
import signal

import pytest
import torch
from helpers import make_canvas

from spot.data.fmnist import CanvasConfig
from spot.core.pruning import PrunedViT
from spot.core.pruning.loss import rate_loss
from spot.train.recipes import recipe_from_dict
from spot.train import TrainingInterrupted, build_optimizer, build_training_model, train
from spot.train.build import build_scheduler, hold_frozen

QUIET = dict(log=lambda *_: None, progress=False)


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    out, _ = make_canvas(tmp_path_factory, 1200, 200, CanvasConfig(val_size=200))
    return out


def tiny(**changes) -> dict:
    base = dict(task="classify", init="scratch",
                model=dict(backbone="vit_nano_patch8", img_size=48,
                           timm_kwargs=dict(embed_dim=32, depth=4, num_heads=2)),
                data=dict(kind="fmnist", mean=[0.1], std=[0.25], limit=400),
                tokens=dict(mode="grid"), epochs=1, batch_size=50,
                optimizer=dict(lr=2e-3, betas=[0.9, 0.99], weight_decay=0.05),
                schedule=dict(warmup_epochs=0.2, min_lr=1e-5), eval_batch_size=100)
    for key, value in changes.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


def pruning(method="spot_ad", keep_ratio=0.8, prune=None, **changes) -> dict:
    changes = {"optimizer": dict(lr=5e-4), "init": "parent", **changes}
    return tiny(task="prune", prune=dict(method=method, keep_ratio=keep_ratio, **(prune or {})), **changes)


def run(tmp_path, name, recipe, canvas, **kw):
    return train(recipe_from_dict(recipe, name), data_root=canvas, out=tmp_path / f"{name}.safetensors",
                 state_dir=tmp_path / f"state_{name}", **QUIET, **kw)


@pytest.fixture(scope="module")
def parent(tmp_path_factory, canvas):
    d = tmp_path_factory.mktemp("parent")
    run(d, "parent", tiny(epochs=2), canvas)
    return d / "parent.safetensors"


def _expected_rate(model, images, keep_ratio, draws=20):
    """Eq. 12 averaged over Gumbel draws on fixed images (training-mode masks)."""
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        values = []
        for _ in range(draws):
            model(images)
            values.append(float(rate_loss(model.state.decisions, keep_ratio, model.state.num_patches)))
    return sum(values) / draws


def test_recipe_validation_names_the_bad_pruning_value():
    with pytest.raises(ValueError, match="unknown pruning method 'dropall'; accepted: spot_ad"):
        recipe_from_dict(pruning(method="dropall"))
    with pytest.raises(ValueError, match="prune.keep_ratio"):
        recipe_from_dict(pruning(keep_ratio=0))
    with pytest.raises(ValueError, match="accepts settings \\['fuse'\\], got \\['d_remap'\\]"):
        recipe_from_dict(pruning(method="evit", prune=dict(settings=dict(d_remap=8))))
    with pytest.raises(ValueError, match="init"):
        recipe_from_dict(pruning(init="scratch"))


def _scheduled_rates(model, recipe, step, total_steps=8):
    """(predictor group lrs, backbone group lrs) at global step ``step``, as the training loop sets them."""
    opt = build_optimizer(model, recipe, total_steps=total_steps)
    sched = build_scheduler(opt, recipe, total_steps)
    sched.step_update(num_updates=step)
    hold_frozen(opt, step)
    method_params = {id(p) for p in model.method.parameters()}
    predictors = [g for g in opt.param_groups if {id(p) for p in g["params"]} & method_params]
    assert sum(len(g["params"]) for g in predictors) == len(method_params)
    return [g["lr"] for g in predictors], [g["lr"] for g in opt.param_groups if g not in predictors]


def test_predictors_get_their_own_learning_rate(parent):
    recipe = recipe_from_dict(pruning(optimizer=dict(lr=1e-3, layer_decay=0.75), schedule=dict(warmup_epochs=0)),
                              "p")
    model = build_training_model(recipe, parent, log=lambda *_: None)
    assert isinstance(model, PrunedViT)
    predictors, backbone = _scheduled_rates(model, recipe, step=0)
    assert predictors and all(lr == pytest.approx(1e-2) for lr in predictors)  # the seed's 1e-2 against 1e-3
    assert max(backbone) == pytest.approx(1e-3) and min(backbone) < 1e-3  # layer decay below the head


def test_dynamicvit_trains_as_its_authors(parent):
    """The authors' get_parameter_groups: predictors at the base lr, the backbone at 0.01× and at 0 for its first
    fix_step epochs (here: the first half of 8 steps), class token and position embedding left out."""
    recipe = recipe_from_dict(pruning(method="dynamicvit", optimizer=dict(lr=1e-3), schedule=dict(warmup_epochs=0),
                                      prune=dict(predictor_lr_scale=1.0, backbone_lr_scale=0.01,
                                                 backbone_frozen_share=0.5, freeze=["cls_token", "pos_embed"])), "d")
    model = build_training_model(recipe, parent, log=lambda *_: None)
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert id(model.model.cls_token) not in trained and id(model.model.pos_embed) not in trained
    assert id(model.model.blocks[0].attn.qkv.weight) in trained
    opt = build_optimizer(model, recipe, total_steps=8)
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.model.cls_token) not in in_groups and id(model.model.pos_embed) not in in_groups
    for step in (0, 3):
        predictors, backbone = _scheduled_rates(model, recipe, step)
        assert min(predictors) > 0 and max(backbone) == 0.0, step
    predictors, backbone = _scheduled_rates(model, recipe, step=4)
    assert backbone == [pytest.approx(0.01 * predictors[0])] * len(backbone) and predictors[0] > 1e-4


def test_a_held_backbone_does_not_move_while_the_predictors_learn(tmp_path, canvas, parent):
    """A real run of 8 steps, the first 7 held: stopped after step 7, the saved backbone equals the parent and the
    predictors have moved; resumed to the end, the backbone moves in step 8; the frozen position embedding never."""
    from safetensors.torch import load_file

    recipe = pruning(method="dynamicvit", optimizer=dict(lr=1e-3),
                     prune=dict(predictor_lr_scale=1.0, backbone_lr_scale=0.01, backbone_frozen_share=0.9,
                                freeze=["pos_embed"]))
    start = load_file(parent)

    def stop(step):
        if step == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        run(tmp_path, "held", recipe, canvas, parent=parent, on_step=stop)
    held = torch.load(tmp_path / "state_held" / "state.pt", weights_only=True)["model"]
    assert held["model.blocks.0.attn.qkv.weight"].equal(start["blocks.0.attn.qkv.weight"])
    assert held["model.head.weight"].equal(start["head.weight"])
    fresh = build_training_model(recipe_from_dict(recipe, "held"), parent, log=lambda *_: None).state_dict()
    moved = [k for k in held if k.startswith("method.") and not held[k].equal(fresh[k])]
    assert moved  # the predictors learned in the held steps (from the same seeded initialisation)
    run(tmp_path, "held", recipe, canvas, parent=parent)
    final = load_file(tmp_path / "held.safetensors")
    assert not final["model.blocks.0.attn.qkv.weight"].equal(start["blocks.0.attn.qkv.weight"])
    assert final["model.pos_embed"].equal(start["pos_embed"])


def test_dynamicvit_predictors_start_as_its_authors_initialise_them(parent):
    """trunc_normal(0.02) weights and zero biases (DynamicViT's _init_weights); SPOT-AD keeps PyTorch's default."""
    def linears(method):
        recipe = recipe_from_dict(pruning(method=method), method)
        model = build_training_model(recipe, parent, log=lambda *_: None)
        return [m for m in model.method.modules() if isinstance(m, torch.nn.Linear)]

    dyn = linears("dynamicvit")
    weights = torch.cat([m.weight.flatten() for m in dyn])
    assert weights.std().item() == pytest.approx(0.02, rel=0.15) and all(not m.bias.any() for m in dyn)
    spot_ad = linears("spot_ad")
    assert torch.cat([m.weight.flatten() for m in spot_ad]).std().item() > 0.05 and spot_ad[0].bias.any()


def test_token_mse_is_dynamicvits_distillation():
    """DistillDiffPruningLoss_dynamic's token term, written from the authors' losses.py: the (B·N, C) tokens
    selected by the final keep mask > 0.5, squared error averaged over all of them."""
    from types import SimpleNamespace

    from spot.core.pruning.loss import token_loss

    g = torch.Generator().manual_seed(0)
    B, N, C = 3, 10, 8
    student, teacher = torch.randn(B, 1 + N, C, generator=g), torch.randn(B, 1 + N, C, generator=g)
    mask = (torch.rand(B, N, generator=g) > 0.4).float()
    state = SimpleNamespace(prefix=1, index=torch.arange(N).expand(B, N), size=None, patch_policy=mask)
    bool_mask = mask.reshape(B * N) > 0.5
    pred, target = student[:, 1:].reshape(B * N, C)[bool_mask], teacher[:, 1:].reshape(B * N, C)[bool_mask]
    authors = torch.pow(pred - target, 2).mean()
    assert token_loss(student, teacher, state, "mse").item() == pytest.approx(authors.item(), rel=1e-6)
    assert token_loss(student, teacher, state, "cosine").item() != pytest.approx(authors.item(), rel=1e-2)


def test_evit_fine_tunes_in_eval_mode_as_its_authors(tmp_path, canvas, parent):
    """eval_mode: no drop-path while training, so a drop-path rate cannot change the fine-tune; in train mode it
    does."""
    from safetensors.torch import load_file

    def weights(name, drop_path, eval_mode):
        recipe = pruning(method="evit", model=dict(drop_path=drop_path), prune=dict(eval_mode=eval_mode),
                         data=dict(limit=150))
        run(tmp_path, name, recipe, canvas, parent=parent)
        return load_file(tmp_path / f"{name}.safetensors")

    plain, dropped = weights("e0", 0.0, True), weights("e5", 0.5, True)
    assert all(plain[k].equal(dropped[k]) for k in plain)
    trained = weights("t5", 0.5, False)
    assert any(not plain[k].equal(trained[k]) for k in plain)


def test_pruning_recipe_names_a_bad_training_setting(parent):
    with pytest.raises(ValueError, match="prune.eval_mode = True is not valid; accepted: false for dynamicvit"):
        recipe_from_dict(pruning(method="dynamicvit", prune=dict(eval_mode=True)))
    with pytest.raises(ValueError, match="prune.token_loss = 'l1'"):
        recipe_from_dict(pruning(prune=dict(token_loss="l1")))
    with pytest.raises(ValueError, match="prune.backbone_frozen_share = 1"):
        recipe_from_dict(pruning(prune=dict(backbone_frozen_share=1)))
    with pytest.raises(ValueError, match="prune.backbone_lr_scale = 0"):
        recipe_from_dict(pruning(prune=dict(backbone_lr_scale=0)))
    recipe = recipe_from_dict(pruning(prune=dict(freeze=["dist_token"])), "f")
    with pytest.raises(ValueError, match="no parameter 'dist_token'; its parameters: blocks, cls_token, .*pos_embed"):
        build_training_model(recipe, parent, log=lambda *_: None)


def test_a_tiny_fine_tune_brings_the_keep_rate_toward_its_target(tmp_path, canvas, parent):
    from spot.train.data import load_data

    data = load_data(recipe_from_dict(pruning(), "p"), canvas, {"img_size": 48, "mean": (0.1,), "std": (0.25,)})
    images = data.val_images[:64]
    recipe = pruning(keep_ratio=0.8, epochs=3, data=dict(limit=600))
    start = build_training_model(recipe_from_dict(recipe, "p"), parent, log=lambda *_: None)
    before = _expected_rate(start, images, 0.8)
    record = run(tmp_path, "rate", recipe, canvas, parent=parent)
    from spot import load_trained

    after = _expected_rate(load_trained(tmp_path / "rate.safetensors"), images, 0.8)
    assert after < 0.5 * before, (before, after)
    assert record["format"] == "pruned_vit" and record["prune"]["method"] == "spot_ad"
    assert record["prune"]["base_format"] == "timm_vit" and record["prune"]["stages"] == [1, 2, 3]


def test_resume_mid_run_equals_the_uninterrupted_fine_tune(tmp_path, canvas, parent):
    recipe = pruning(keep_ratio=0.7, epochs=2, prune=dict(token_weight=0.5))
    full = run(tmp_path, "full", recipe, canvas, parent=parent)

    def kill(step):
        if step == 11:  # mid second epoch (8 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        run(tmp_path, "cut", recipe, canvas, parent=parent, on_step=kill)
    resumed = run(tmp_path, "cut", recipe, canvas, parent=parent)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full.safetensors"), load_file(tmp_path / "cut.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("method.predictors.") for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert [h["val_acc1"] for h in full["history"]] == [h["val_acc1"] for h in resumed["history"]]


@pytest.mark.parametrize("method", ["evit", "heuristic", "dynamicvit"])
def test_every_method_fine_tunes_and_reloads_as_recorded(tmp_path, canvas, parent, method):
    record = run(tmp_path, method, pruning(method=method, keep_ratio=0.7), canvas, parent=parent)
    from spot import load_trained

    model = load_trained(tmp_path / f"{method}.safetensors")
    assert isinstance(model, PrunedViT) and model.method.name == method
    images = torch.randn(4, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(images)
    # stages 1, 2, 3 of 4 blocks, 36 patches: ⌈ρ^k·36⌉ = 26, 18 after the stage's attention (EViT compounds over
    # the tokens present, its fused token included: 26 + 1, then ⌈0.7·27⌉ + 1 = 20); DynamicViT keeps int(ρ^k·36)
    # = 25, 17, 12 before each stage block
    expected = {"evit": [37, 37, 28, 21], "heuristic": [37, 37, 27, 19], "dynamicvit": [37, 26, 18, 13]}
    assert model.token_counts == expected[method]
    assert record["final"]["val_acc1"] >= 0


def test_sampling_and_pruning_combine_in_a_fine_tune(tmp_path, canvas, parent):
    spot_parent = tmp_path / "spot.safetensors"
    run(tmp_path, "spot", tiny(init="parent", tokens=dict(mode="subpixel", min_tokens=9, max_tokens=36)), canvas,
        parent=parent)
    recipe = pruning(tokens=dict(mode="subpixel", min_tokens=9, max_tokens=36), eval_budgets=[18])
    record = run(tmp_path, "spot_pruned", recipe, canvas, parent=spot_parent)
    assert record["prune"]["base_format"] == "spot_vit" and "val_acc1@18" in record["final"]
    from spot import load_trained

    model = load_trained(tmp_path / "spot_pruned.safetensors")
    with torch.no_grad():
        model(torch.randn(2, 1, 48, 48), prior="isotropic", num_tokens=18)
    assert model.token_counts[0] == 19 and model.token_counts[-1] < 19


def test_pruning_experiment_measures_every_model_tome_and_sampling_at_equal_cost(tmp_path, canvas, parent):
    from spot.experiments.evaluate import EvaluationSettings
    from spot.experiments.pruning import PruningSettings, evaluate_pruning

    run(tmp_path, "spot", tiny(init="parent", tokens=dict(mode="subpixel", min_tokens=9, max_tokens=36)), canvas,
        parent=parent)
    run(tmp_path, "ctrl", tiny(init="parent", tokens=dict(mode="grid_subset", min_tokens=9, max_tokens=36)), canvas,
        parent=parent)
    run(tmp_path, "evit", pruning(method="evit", keep_ratio=0.7), canvas, parent=parent)
    models = {"parent": parent, "spot": tmp_path / "spot.safetensors", "grid_control": tmp_path / "ctrl.safetensors",
              "evit": tmp_path / "evit.safetensors"}
    settings = PruningSettings(models={"evit": "prune_evit"}, sweep=[0.5, 0.9], equal_cost="evit",
                               equal_cost_priors=["isotropic", "uniform"])
    evaluation = EvaluationSettings(limit=60, priors=["isotropic", "uniform", "center"], seeds=[0, 1]).validate()
    rows = evaluate_pruning(models, canvas, settings, evaluation, backbone="tiny", log=lambda *_: None)
    import pandas as pd

    f = pd.DataFrame(rows)
    assert set(f["experiment"]) == {"pruning"} and (f["n_images"] == 60).all()
    g = f[f.metric == "gflops"]
    dense = float(g[g.method == "vit"]["value"].iloc[0])
    evit = g[g.setting == "evit"].set_index("keep_ratio")["value"]
    assert evit[0.5] < evit[0.9] < dense  # fewer tokens, fewer FLOPs
    assert (f[(f.setting == "evit")]["trained_keep_ratio"] == 0.7).all()
    tome = f[(f.method == "tome") & (f.metric == "acc1")]
    assert len(tome) == 2 and tome["r"].notna().all()
    # sampling at the cost of each EViT point: SPoT (both priors, the stochastic one per seed), PatchDropout, grid
    # control, each at the budget whose GFLOPs are closest
    sampled = f[(f.setting.fillna("") == "") & f.method.isin(["spot", "patchdropout"])]
    assert set(sampled["variant"]) == {"spot", "parent", "grid_control"}
    spot_g = sampled[(sampled.variant == "spot") & (sampled.metric == "gflops")].groupby("budget")["value"].mean()
    for rho in (0.5, 0.9):
        closest = min(spot_g.index, key=lambda m: abs(spot_g[m] - evit[rho]))
        assert abs(spot_g[closest] - evit[rho]) / evit[rho] < 0.15
    uniform = sampled[(sampled.placement == "uniform") & (sampled.metric == "acc1")]
    assert set(uniform["seed"]) == {0, 1}
    # only pruning.equal_cost_priors, not every prior of the evaluation
    assert set(sampled[sampled.variant == "spot"]["placement"]) == {"isotropic", "uniform"}


def test_pruning_settings_name_the_bad_value():
    from spot.experiments.pruning import PruningSettings

    with pytest.raises(ValueError, match="pruning.equal_cost_priors.*isotropic"):
        PruningSettings(models={"evit": "prune_evit"}, equal_cost="evit", equal_cost_priors=["isotropc"]).validate()
    with pytest.raises(ValueError, match="pruning.sweep"):
        PruningSettings(models={"evit": "prune_evit"}, equal_cost="evit", sweep=[0.0, 0.5]).validate()
