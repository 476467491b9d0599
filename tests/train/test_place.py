"""``task: place``: a glance policy trained through the differentiable tokenizer with the SPoT model's loss
(spot/train, spot/core/policy.py), stored as a checkpoint the ``learned`` placement and ``spot.load_trained`` read."""
import pytest
import torch
from safetensors.torch import load_file

from spot.core.placement import ImageBatch, isotropic_layout, place
from spot.core.policy import PlacedSPoT, load_policy
from spot.train import build_optimizer, build_training_model
from spot.train.recipes import recipe_from_dict
from spot.weights.checkpoints import load_trained

from train.test_train import canvas, run, tiny  # noqa: F401  (the module's canvas fixture)


@pytest.fixture(scope="module")
def retrofit(tmp_path_factory, canvas):  # noqa: F811
    """A tiny SPoT retrofit (the parent a policy places tokens for)."""
    tmp = tmp_path_factory.mktemp("place")
    run(tmp, "parent", tiny(epochs=1), canvas)
    run(tmp, "retro", tiny(init="parent", epochs=1, tokens=dict(mode="subpixel", min_tokens=4, max_tokens=36)),
        canvas, parent=tmp / "parent.safetensors")
    return tmp / "retro.safetensors"


def _place(**changes):
    base = dict(task="place", init="parent", epochs=1, eval_budgets=[4, 9],
                tokens=dict(mode="subpixel", budget="choices", choices=[4, 9, 18]),
                optimizer=dict(lr=2e-2, weight_decay=0.0), label_smoothing=0.0,
                place=dict(policy=dict(glance=12, channels=[4, 8], floor=0.1)))
    for key, value in changes.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return tiny(**base)


def test_a_frozen_model_keeps_its_weights_while_the_policy_learns(tmp_path, canvas, retrofit):  # noqa: F811
    record = run(tmp_path, "policy", _place(), canvas, parent=retrofit)
    assert record["format"] == "placed_spot" and record["policy"]["glance"] == 12
    assert {"val_acc1@4", "val_acc1@9"} <= set(record["final"])
    saved, parent = load_file(str(tmp_path / "policy.safetensors")), load_file(str(retrofit))
    assert all(torch.equal(saved[f"model.{k}"], v) for k, v in parent.items())  # the SPoT model untouched
    assert saved["policy.head.weight"].abs().sum() > 0  # the head left its zero start: the policy moved
    policy = load_policy(tmp_path / "policy.safetensors")
    images = torch.randn(3, 1, 48, 48)
    positions = place(f"learned:{tmp_path / 'policy.safetensors'}", 9, ImageBatch((48, 48), 3, images=images))
    assert torch.equal(positions, policy.positions(images, 9))
    assert not torch.allclose(positions, isotropic_layout(9, (48, 48)).expand(3, -1, -1))
    model = load_trained(tmp_path / "policy.safetensors")
    assert isinstance(model, PlacedSPoT) and not model.training
    assert model(images, num_tokens=9).shape == (3, 10)


def test_joint_tuning_trains_the_model_at_its_scaled_rate(tmp_path, retrofit):
    model = build_training_model(recipe_from_dict(_place(place=dict(tune="joint", model_lr_scale=0.25)), "joint"),
                                 retrofit, log=lambda *_: None)
    assert all(p.requires_grad for p in model.model.parameters())
    optimizer = build_optimizer(model, recipe_from_dict(_place(place=dict(tune="joint", model_lr_scale=0.25)), "j"))
    policy_params = {id(p) for p in model.policy.parameters()}
    scales = {("policy" if id(g["params"][0]) in policy_params else "model"): g.get("lr_scale", 1.0)
              for g in optimizer.param_groups}
    assert scales["policy"] == 1.0 and 0 < scales["model"] <= 0.25
    frozen = build_training_model(recipe_from_dict(_place(), "frozen"), retrofit, log=lambda *_: None)
    assert not any(p.requires_grad for p in frozen.model.parameters())
    assert len(build_optimizer(frozen, recipe_from_dict(_place(), "frozen")).param_groups) == 2


@pytest.mark.parametrize("changes,match", [
    (dict(place=dict(tune="both")), "place.tune"),
    (dict(place=dict(policy=dict(glance=1))), "glance must be"),
    (dict(tokens=dict(mode="grid")), "tokens.mode"),
    (dict(init="scratch"), "init"),
])
def test_place_recipes_are_checked(changes, match):
    with pytest.raises(ValueError, match=match):
        recipe_from_dict(_place(**changes), "bad")
