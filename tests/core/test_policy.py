"""The learned placement (spot/core/policy.py, spot/core/placement/learned.py) and the training-free relevance
placement (spot/core/placement/relevance.py)."""
import json

import pytest
import timm
import torch
from safetensors.torch import save_file

import spot
from spot.core.placement import ImageBatch, isotropic_layout, make_placement, place, transport_layout
from spot.core.placement.learned import POLICY_PREFIX, PolicySettings
from spot.core.placement.relevance import splat, token_relevance
from spot.core.policy import GlancePolicy, load_policy, policy_record
from spot.provenance import sha256_file

SIZE = (48, 48)


def _blob_images(n, seed=0, size=SIZE, side=12):
    """Dark canvases with one bright square each, at a random place: (images, centres (n, 2) in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, *size)
    corners = torch.randint(0, size[0] - side, (n, 2), generator=g)
    for i, (y, x) in enumerate(corners.tolist()):
        images[i, 0, y:y + side, x:x + side] = 1.0
    return images, (corners.double() + side / 2) / size[0]


@pytest.mark.parametrize("m", [1, 4, 9, 18, 36])
def test_an_untrained_policy_gives_the_isotropic_layout(m):
    policy = GlancePolicy(PolicySettings(in_chans=1))
    images, _ = _blob_images(3)
    positions = policy.positions(images, m)
    assert positions.shape == (3, m, 2) and positions.dtype == torch.float64
    assert torch.allclose(positions, isotropic_layout(m, SIZE).expand(3, -1, -1), atol=1e-12)


def test_positions_are_differentiable_in_the_policy():
    policy = GlancePolicy(PolicySettings(in_chans=1))
    images, centres = _blob_images(4)
    loss = (policy.positions(images, 9) - centres[:, None]).pow(2).sum()
    loss.backward()
    assert policy.head.weight.grad is not None and policy.head.weight.grad.abs().sum() > 0


def test_a_policy_learns_to_place_tokens_on_what_it_glances_at():
    """Trained to put its 9 tokens near a bright square, the policy moves them there on images it has not seen: the
    glance carries where the object is, and the gradient reaches the policy through the transport."""
    torch.manual_seed(0)
    policy = GlancePolicy(PolicySettings(in_chans=1, floor=0.05))
    opt = torch.optim.Adam(policy.parameters(), lr=0.05)
    for step in range(60):
        images, centres = _blob_images(32, seed=step)
        loss = (policy.positions(images, 9) - centres[:, None]).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    images, centres = _blob_images(64, seed=999)
    with torch.no_grad():
        learned = (policy.positions(images, 9) - centres[:, None]).norm(dim=-1).mean()
    isotropic = (isotropic_layout(9, SIZE)[None] - centres[:, None]).norm(dim=-1).mean()
    assert learned < 0.6 * isotropic, (float(learned), float(isotropic))


def _save(policy, path, extra=None):
    state = {POLICY_PREFIX + k: v.contiguous() for k, v in policy.state_dict().items()}
    state.update(extra or {})
    save_file(state, str(path))
    path.with_suffix(".json").write_text(json.dumps({**policy_record(policy), "sha256": sha256_file(path)}))


def test_a_saved_policy_is_the_learned_placement(tmp_path):
    policy = GlancePolicy(PolicySettings(in_chans=1, glance=8, channels=[4, 6]))
    torch.nn.init.normal_(policy.head.weight, std=1.0)  # away from the uniform map
    path = tmp_path / "policy.safetensors"
    _save(policy, path, extra={"model.some_weight": torch.zeros(2)})  # the SPoT model's keys are ignored
    images, _ = _blob_images(5)
    expected = policy.positions(images, 9).detach()
    assert torch.equal(load_policy(path).positions(images, 9), expected)
    batch = ImageBatch(SIZE, 5, images=images)
    assert torch.equal(place(f"learned:{path}", 9, batch), expected)
    assert torch.equal(place({"name": "learned", "checkpoint": str(path)}, 9, batch), expected)
    assert not make_placement(f"learned:{path}").random
    with pytest.raises(ValueError, match="looks at the images"):
        place(f"learned:{path}", 9, ImageBatch(SIZE, 5))


def test_a_changed_policy_file_is_refused(tmp_path):
    policy = GlancePolicy(PolicySettings(in_chans=1))
    path = tmp_path / "policy.safetensors"
    _save(policy, path)
    record = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**record, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="does not match its record"):
        load_policy(path)
    with pytest.raises(FileNotFoundError, match="no policy checkpoint"):
        load_policy(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("bad,match", [({"glance": 1}, "glance"), ({"channels": [4]}, "channels"),
                                       ({"floor": 1.0}, "floor"), ({"in_chans": 0}, "in_chans")])
def test_policy_settings_are_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        PolicySettings(**bad).validate()


def test_the_learned_placement_needs_its_checkpoint():
    with pytest.raises(ValueError, match="checkpoint"):
        make_placement("learned")
    with pytest.raises(ValueError, match="only learned take a value"):
        make_placement("center:0.3")


def _tiny_spot(**kw):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=48, patch_size=8, in_chans=1,
                            num_classes=10, embed_dim=48, depth=2, num_heads=3, **kw)
    torch.manual_seed(0)
    return spot.SPoTViT.from_timm(vit).eval()


def test_token_relevance_is_the_last_blocks_attention():
    """Checked against timm's own attention: the post-softmax map timm's last block computes (captured at its
    attention dropout, the unfused path) gives the same class-token row and mean received attention."""
    model = _tiny_spot()
    images, _ = _blob_images(2)
    coarse = isotropic_layout(9, SIZE)[None].expand(2, -1, -1)
    captured = {}
    last = model.blocks[-1].attn
    last.fused_attn = False
    handle = last.attn_drop.register_forward_hook(lambda mod, inp, out: captured.update(probs=inp[0]))
    with torch.no_grad():
        model.forward_features(images, coarse)
        cls = token_relevance(model, images, coarse, "cls")
        received = token_relevance(model, images, coarse, "received")
    handle.remove()
    probs = captured["probs"].mean(dim=1)
    assert torch.allclose(cls, probs[:, 0, 1:], atol=1e-6)
    assert torch.allclose(received, probs[:, :, 1:].mean(dim=1), atol=1e-6)


def test_splat_puts_the_mass_where_the_weight_is():
    positions = torch.tensor([[[0.1, 0.1], [0.8, 0.62]]], dtype=torch.float64)
    maps = splat(positions, torch.tensor([[0.0, 1.0]]), 10, 0.05)
    assert divmod(int(maps[0].argmax()), 10) == (8, 6)


def test_the_relevance_placement_transports_the_isotropic_layout_through_its_map():
    model = _tiny_spot()
    images, _ = _blob_images(3)
    p = make_placement({"name": "relevance", "coarse": 9, "floor": 0.2})
    batch = ImageBatch(SIZE, 3, images=images, model=model)
    positions = place(p, 18, batch)
    assert positions.shape == (3, 18, 2) and ((positions >= 0) & (positions <= 1)).all()
    assert torch.equal(positions, place(p, 18, batch))  # deterministic per image
    maps = p.relevance_maps(batch)
    assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(positions, transport_layout(isotropic_layout(18, SIZE), maps))
    with pytest.raises(ValueError, match="searches with a model"):
        place(p, 18, ImageBatch(SIZE, 3, images=images))


def test_the_class_token_source_needs_a_class_token():
    model = _tiny_spot(class_token=False, global_pool="avg")
    images, _ = _blob_images(1)
    with pytest.raises(ValueError, match="class token"):
        place({"name": "relevance", "source": "cls"}, 4, ImageBatch(SIZE, 1, images=images, model=model))


@pytest.mark.parametrize("bad,match", [({"coarse": 0}, "coarse"), ({"source": "map"}, "source"),
                                       ({"width": 0}, "width"), ({"floor": -0.1}, "floor"),
                                       ({"resolution": 1}, "resolution")])
def test_relevance_settings_are_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        make_placement({"name": "relevance", **bad})
