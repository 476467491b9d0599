import pytest
import timm
import torch

import spot
from spot import PatchDropoutViT, SPoTViT

# (timm architecture, keyword config): class-token and global-pool heads, square and non-square inputs,
# other patch sizes and widths, LayerScale, register tokens, attention pooling, one grey channel
CONFIGS = {
    "vit_b16_cls": ("vit_base_patch16_224", dict()),
    "vit_b16_gap_fcnorm": ("vit_base_patch16_224", dict(global_pool="avg", fc_norm=True, depth=4)),
    "small_nonsquare": ("vit_small_patch16_224", dict(img_size=(160, 224), depth=3)),
    "tiny_no_cls_gap": ("vit_tiny_patch16_224", dict(global_pool="avg", class_token=False, depth=3)),
    "layerscale_reg_no_embed_class": ("vit_small_patch16_224", dict(reg_tokens=2, no_embed_class=True,
                                                                    init_values=0.1, depth=3)),
    "patch8_grey_attnpool": ("vit_tiny_patch16_224", dict(img_size=(48, 64), patch_size=8, in_chans=1,
                                                          global_pool="map", depth=2)),
    "patch32_wide": ("vit_base_patch32_224", dict(img_size=(96, 160), depth=2, embed_dim=384, num_heads=6)),
}


def _random_vit(arch, kw, seed=0):
    torch.manual_seed(seed)
    vit = timm.create_model(arch, num_classes=11, **kw).eval()
    with torch.no_grad():  # perturb every parameter, so zero-initialised heads/biases/tokens are random too
        for p in vit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return vit


@pytest.mark.parametrize("name", list(CONFIGS))
def test_grid_equivalence(name):
    vit = _random_vit(*CONFIGS[name])
    H, W = vit.patch_embed.img_size
    images = torch.randn(2, vit.patch_embed.proj.in_channels, H, W)
    model = SPoTViT.from_timm(vit).eval()
    positions = spot.grid_positions((H, W), vit.patch_embed.patch_size)
    with torch.no_grad():
        expected = vit(images)
        assert (model(images, positions) - expected).abs().max().item() <= 1e-5
        assert (model(images) - expected).abs().max().item() <= 1e-5  # no positions: the full grid
        features = model.forward_features(images, positions)
        assert (features - vit.forward_features(images)).abs().max().item() <= 1e-4
        pooled = model.pooled_features(images, positions)
        assert pooled.shape == (2, vit.num_features)
        assert (pooled - vit.forward_head(vit.forward_features(images), pre_logits=True)).abs().max() <= 1e-4


def test_modules_are_shared_not_copied():
    vit = _random_vit(*CONFIGS["layerscale_reg_no_embed_class"])
    model = SPoTViT.from_timm(vit)
    assert model.blocks is vit.blocks and model.norm is vit.norm and model.head is vit.head
    assert model.window_embed.proj is vit.patch_embed.proj
    assert model.cls_token is vit.cls_token and model.reg_token is vit.reg_token
    with torch.no_grad():
        vit.head.bias.add_(1.0)
    assert torch.equal(model.head.bias, vit.head.bias)
    # the only new parameters are the kernelized PE (and the prefix-token PE where timm has one)
    new = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in vit.parameters())
    assert new == model.pos_embed.weight.numel() - vit.pos_embed.numel()


def test_sampling_positions_inside_the_model_is_deterministic():
    vit = _random_vit(*CONFIGS["patch8_grey_attnpool"])
    model = SPoTViT.from_timm(vit).eval()
    images = torch.randn(3, 1, 48, 64)
    with torch.no_grad():
        a = model(images, prior="center", num_tokens=5, generator=torch.Generator().manual_seed(0))
        b = model(images, prior="center", num_tokens=5, generator=torch.Generator().manual_seed(0))
        c = model(images, spot.sample_positions("center", 5, 3, (48, 64)))
        u1 = model(images, prior="uniform", num_tokens=5, generator=torch.Generator().manual_seed(0))
        u2 = model(images, prior="uniform", num_tokens=5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 11) and torch.equal(a, b) and torch.allclose(a, c, atol=1e-6)
    assert not torch.allclose(u1, u2)
    tokens = model.forward_features(images, prior="sobol", num_tokens=7, generator=torch.Generator())
    assert tokens.shape == (3, model.num_prefix_tokens + 7, vit.embed_dim)


def test_gradients_reach_the_positions():
    vit = _random_vit(*CONFIGS["tiny_no_cls_gap"])
    model = SPoTViT.from_timm(vit).eval()
    images = torch.randn(2, 3, 224, 224)
    positions = spot.sample_positions("isotropic", 9, 2, (224, 224)).clone().requires_grad_()
    model(images, positions).logsumexp(-1).sum().backward()
    assert positions.grad is not None and positions.grad.abs().sum() > 0 and torch.isfinite(positions.grad).all()


def test_other_window_size_resamples_the_projection():
    vit = _random_vit(*CONFIGS["small_nonsquare"])
    model = SPoTViT.from_timm(vit, window=24).eval()
    assert model.window == (24, 24) and model.window_embed.proj is not vit.patch_embed.proj
    with torch.no_grad():
        out = model(torch.randn(2, 3, 160, 224), prior="isotropic", num_tokens=20)
    assert out.shape == (2, 11) and torch.isfinite(out).all()


def test_any_image_size_works_with_normalised_positions():
    vit = _random_vit(*CONFIGS["tiny_no_cls_gap"])
    model = SPoTViT.from_timm(vit).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 100, 300), prior="isotropic", num_tokens=12)
    assert out.shape == (1, 11)


def test_patch_dropout_baseline():
    vit = _random_vit(*CONFIGS["small_nonsquare"])
    baseline = PatchDropoutViT(vit).eval()
    model = SPoTViT.from_timm(vit).eval()
    images = torch.randn(2, 3, 160, 224)
    with torch.no_grad():
        assert torch.equal(baseline(images), vit(images))  # all patches: the ViT itself
        a = baseline(images, 30, torch.Generator().manual_seed(3))
        b = baseline(images, 30, torch.Generator().manual_seed(3))
        c = baseline(images, 30, torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.allclose(a, c)
        # the same kept patches as SPoT tokens at those grid centres give the same logits
        keep = spot.random_patch_subset(2, baseline.num_patches, 30, torch.Generator().manual_seed(3))
        positions = spot.grid_positions((160, 224), 16)[keep]
        assert (model(images, positions) - a).abs().max().item() <= 1e-5
    keep = spot.random_patch_subset(4, 140, 30, torch.Generator().manual_seed(0))
    assert keep.shape == (4, 30) and all(len(set(k.tolist())) == 30 for k in keep)
    with pytest.raises(ValueError, match="num_tokens must be ≤ 140"):
        baseline(images, 141)
    with pytest.raises(ValueError, match="num_tokens"):
        baseline(images, 0)


@pytest.mark.parametrize("call,match", [
    (lambda m, x: m(x[:, :2]), "channels"),
    (lambda m, x: m(x, torch.rand(2, 4, 2), prior="center", num_tokens=4), "either positions"),
    (lambda m, x: m(x, prior="center"), "both prior= and num_tokens="),
    (lambda m, x: m(x, prior="bogus", num_tokens=4), "unknown prior"),
    (lambda m, x: m(x, prior="center", num_tokens=0), "num_tokens"),
    (lambda m, x: m(x, torch.rand(2, 4, 3)), "shape"),
    (lambda m, x: m(x, torch.full((2, 4, 2), float("inf"))), "finite"),
])
def test_bad_input(call, match):
    model = SPoTViT.from_timm(_random_vit(*CONFIGS["tiny_no_cls_gap"])).eval()
    with pytest.raises(ValueError, match=match):
        call(model, torch.randn(2, 3, 224, 224))


def test_rejects_non_vit():
    with pytest.raises(ValueError, match="VisionTransformer"):
        SPoTViT.from_timm(torch.nn.Linear(2, 2))


def test_positional_embedding_of_a_reused_layout_is_computed_once_while_nothing_changes():
    model = SPoTViT.from_timm(_random_vit(*CONFIGS["tiny_no_cls_gap"])).eval()
    calls = []
    model.pos_embed.register_forward_hook(lambda *a: calls.append(1))
    images, layout = torch.randn(2, 3, 224, 224), spot.isotropic_layout(10, (224, 224))[None]
    with torch.no_grad():
        first = model(images, layout)
        assert torch.equal(model(images, layout), first) and len(calls) == 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(images, layout)  # another autocast mode: computed again
        assert len(calls) == 2
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    model(images, layout).square().mean().backward()  # training: not memoised, gradients reach the embedding
    assert model.pos_embed.weight.grad.abs().sum() > 0 and len(calls) == 3
    opt.step()  # in place: the next evaluation sees the new embedding
    model.eval()
    with torch.no_grad():
        after = model(images, layout)
        assert torch.equal(after, model(images, layout.clone())) and not torch.equal(after, first)
    assert len(calls) == 5


def test_a_reused_layout_is_checked_and_moved_once_and_checked_again_after_a_change(monkeypatch):
    model = SPoTViT.from_timm(_random_vit(*CONFIGS["tiny_no_cls_gap"])).eval()
    checks = []
    check = spot._checks.positions_tensor
    monkeypatch.setattr(spot._checks, "positions_tensor", lambda *a, **k: checks.append(1) or check(*a, **k))
    images, layout = torch.randn(2, 3, 224, 224), spot.isotropic_layout(10, (224, 224))
    with torch.no_grad():
        first = model.resolve_positions(images, layout)
        assert model.resolve_positions(images, layout) is first and len(checks) == 1  # one tensor: memos hit
        assert first.shape == (1, 10, 2)
        assert model.resolve_positions(images[:1], layout) is first  # a shared layout fits any batch
        model.resolve_positions(images, layout.clone())
        assert len(checks) == 2  # another tensor: checked
        layout[3, 1] = float("nan")  # in place: checked again, so the bad value is caught
        with pytest.raises(ValueError, match="finite"):
            model(images, layout)
        per_image = torch.rand(2, 10, 2)
        model.resolve_positions(images, per_image), model.resolve_positions(images, per_image)
        assert len(checks) == 5  # per-image positions: checked every call, never held
