"""Loading the authors' release checkpoints: key layout, window geometry, heat-map PE and the whole forward pass,
each checked against a direct, independent computation of the release's formulas (random weights in its layout)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import spot
from spot.core.embedding import ReleaseHeatmapEmbedding
from spot.weights.official import load_official
from spot.core.tokenizer import extract_windows


def release_state(depth=2, D=128, k=16, classes=10, mae=False, mlp=4, seed=0, logprior=False):
    """A random state dict with exactly the release's keys (shapes of ViT-B/16 when D=768, depth=12, k=16)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.1 * torch.randn(*s, generator=g)  # noqa: E731
    st = {"tokenizer._n_sigma": torch.tensor([math.log(math.e - 1)]) + r(1),  # n_sigma ≈ 1
          "embedder.cls_token": r(1, 1, D), "embedder.emb.weight": r(D, 4 * k * k), "embedder.emb.bias": r(D)}
    for i in range(depth):
        b = f"blocks.{i}."
        st |= {b + "norm1.weight": 1 + r(D), b + "norm1.bias": r(D), b + "norm2.weight": 1 + r(D),
               b + "norm2.bias": r(D), b + "ls1.lambda_": 0.5 + r(D), b + "ls2.lambda_": 0.5 + r(D),
               b + "att.qkv.weight": r(3 * D, D), b + "att.qkv.bias": r(3 * D),
               b + "att.proj.weight": r(D, D), b + "att.proj.bias": r(D),
               b + "mlp.L1.weight": r(mlp * D, D), b + "mlp.L1.bias": r(mlp * D),
               b + "mlp.L2.weight": r(D, mlp * D), b + "mlp.L2.bias": r(D)}
    st |= {"fc_norm.weight": 1 + r(D), "fc_norm.bias": r(D)} if mae else {"norm.weight": 1 + r(D), "norm.bias": r(D)}
    st |= {"head.weight": r(classes, D), "head.bias": r(classes)}
    if logprior:
        st["tokenizer.logprior"] = r(224, 224)
    return st


def save(tmp_path, state, under_model=False, name="ckpt.pth"):
    path = tmp_path / name
    torch.save({"model": state, "epoch": 3} if under_model else state, path)
    return path


# ---- direct re-implementations of the release's formulas (numpy / plain torch, loops) ----

def direct_windows(img, mu, k):
    """img (C, H, W) numpy float64, mu (y, x) → (C, k, k), per sample: linspace coords, clamped floor, hard cut."""
    C, H, W = img.shape
    s = k / (H + W)
    offs = np.linspace(-s, s, k)
    out = np.zeros((C, k, k))
    for i in range(k):
        for j in range(k):
            cy, cx = (mu[0] + offs[i]) * H, (mu[1] + offs[j]) * W
            if not (0 <= cy < H - 1 and 0 <= cx < W - 1):
                continue  # hard cut: exactly 0
            y0, x0 = int(math.floor(cy)), int(math.floor(cx))
            y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
            ay, ax = cy - y0, cx - x0
            out[:, i, j] = ((1 - ay) * (1 - ax) * img[:, y0, x0] + (1 - ay) * ax * img[:, y0, x1]
                            + ay * (1 - ax) * img[:, y1, x0] + ay * ax * img[:, y1, x1])
    return out


def direct_heat(mu_all, k, n_sigma, H, W):
    """mu_all (B, m, 2) numpy → (B, m, k*k) heat maps divided by the batch's single largest value."""
    sigma = k * n_sigma / (H + W)
    g = np.linspace(0, 1, k)
    B, m, _ = mu_all.shape
    heat = np.zeros((B, m, k, k))
    for b in range(B):
        for t in range(m):
            for i in range(k):
                for j in range(k):
                    d2 = (g[i] - mu_all[b, t, 0]) ** 2 + (g[j] - mu_all[b, t, 1]) ** 2
                    heat[b, t, i, j] = math.exp(-d2 / (2 * sigma ** 2))
    return (heat / heat.max()).reshape(B, m, k * k)


def release_forward(st, images, positions, heads, mae):
    """The release's forward from the raw state dict: windows ⊕ heat channel → emb → CLS → blocks → norm → head."""
    B, C, H, W = images.shape
    D, n_in = st["embedder.emb.weight"].shape
    k = int(round(math.sqrt(n_in / 4)))
    pos = positions.expand(B, -1, -1)
    m = pos.shape[1]
    win = torch.stack([torch.stack([torch.from_numpy(direct_windows(images[b].double().numpy(), pos[b, t].tolist(), k))
                                    for t in range(m)]) for b in range(B)]).float()  # (B, m, 3, k, k)
    n_sigma = F.softplus(st["tokenizer._n_sigma"]).item()
    heat = torch.from_numpy(direct_heat(pos.double().numpy(), k, n_sigma, H, W)).float().view(B, m, 1, k, k)
    x = torch.cat([win, heat], dim=2).flatten(2) @ st["embedder.emb.weight"].t() + st["embedder.emb.bias"]
    x = torch.cat([st["embedder.cls_token"].expand(B, -1, -1), x], dim=1)
    depth = 1 + max(int(key.split(".")[1]) for key in st if key.startswith("blocks."))
    hd = D // heads
    for i in range(depth):
        p = lambda n: st[f"blocks.{i}.{n}"]  # noqa: E731
        h = F.layer_norm(x, (D,), p("norm1.weight"), p("norm1.bias"), eps=1e-6)
        q, kk, v = (h @ p("att.qkv.weight").t() + p("att.qkv.bias")).view(B, -1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ kk.transpose(-1, -2) * hd ** -0.5, dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, -1, D) @ p("att.proj.weight").t() + p("att.proj.bias")
        x = x + p("ls1.lambda_") * o
        h = F.layer_norm(x, (D,), p("norm2.weight"), p("norm2.bias"), eps=1e-6)
        h = F.gelu(h @ p("mlp.L1.weight").t() + p("mlp.L1.bias")) @ p("mlp.L2.weight").t() + p("mlp.L2.bias")
        x = x + p("ls2.lambda_") * h
    if mae:
        f = F.layer_norm(x[:, 1:].mean(1), (D,), st["fc_norm.weight"], st["fc_norm.bias"], eps=1e-6)
    else:
        f = F.layer_norm(x, (D,), st["norm.weight"], st["norm.bias"], eps=1e-6)[:, 0]
    return f @ st["head.weight"].t() + st["head.bias"]


# positions incl. near and across the border (hard cut on one or both axes), and an exact-integer coordinate
EDGE_POSITIONS = torch.tensor([[0.5, 0.5], [0.0, 0.3], [0.02, 0.98], [1.0, 1.0], [0.999, 0.01], [0.25, 0.75],
                               [-0.03, 0.5], [0.6, 1.02], [0.123456, 0.987654]], dtype=torch.float64)


@pytest.mark.parametrize("size", [(224, 224), (40, 56)])
def test_release_window_geometry_matches_direct_formula(size):
    H, W = size
    torch.manual_seed(0)
    images = torch.rand(2, 3, H, W)
    k = 16 if H == 224 else 6
    pos = torch.stack([EDGE_POSITIONS, torch.rand(9, 2, dtype=torch.float64)])
    got = extract_windows(images, pos, k, geometry="release")
    assert got.shape == (2, 9, 3, k, k)
    for b in range(2):
        for t in range(9):
            want = direct_windows(images[b].double().numpy(), pos[b, t].tolist(), k)
            np.testing.assert_allclose(got[b, t].numpy(), want, atol=1e-6, rtol=0)
    # the hard cut is exact: a window centred on the bottom-right corner keeps only its upper-left quarter
    corner = got[0, 3]
    assert corner[:, k // 2:, :].abs().max() == 0 and corner[:, :, k // 2:].abs().max() == 0


def test_release_windows_differentiable_and_default_unchanged():
    images = torch.rand(1, 3, 32, 32)
    pos = torch.tensor([[[0.4, 0.6], [0.1, 0.9]]], dtype=torch.float64, requires_grad=True)
    extract_windows(images, pos, 4, geometry="release").sum().backward()
    assert pos.grad is not None and torch.isfinite(pos.grad).all() and pos.grad.abs().sum() > 0
    grid = spot.grid_positions((32, 32), 4)
    assert torch.equal(extract_windows(images, grid, 4), extract_windows(images, grid, 4, geometry="spot"))
    with pytest.raises(ValueError, match="geometry"):
        extract_windows(images, grid, 4, geometry="nope")


def test_heatmap_embedding_matches_direct_formula():
    torch.manual_seed(0)
    pe = ReleaseHeatmapEmbedding(32, window=8, n_sigma=1.3)
    pos = torch.rand(3, 5, 2, dtype=torch.float64) * 1.2 - 0.1
    H, W = 96, 64
    heat = pe.heatmap(pos, (H, W)).detach()
    want = direct_heat(pos.numpy(), 8, 1.3, H, W)
    np.testing.assert_allclose(heat.numpy(), want, atol=1e-9, rtol=1e-6)  # n_sigma is a float32 parameter
    assert heat.max().item() == 1.0
    out = pe(pos.float(), image_size=(H, W))
    np.testing.assert_allclose(out.detach().numpy(), want @ pe.weight.detach().double().numpy(), atol=1e-5)
    # the batch-wide normalisation: a token's term depends on the rest of the batch (the release's behaviour)
    far = torch.tensor([[[-0.3, -0.3]]], dtype=torch.float64)
    assert pe.heatmap(far, (H, W)).max().item() == 1.0
    assert pe.heatmap(torch.cat([far, torch.tensor([[[0.0, 0.0]]], dtype=torch.float64)]), (H, W))[0].max() < 1e-3
    with pytest.raises(ValueError, match="image_size"):
        pe(pos.float())


@pytest.mark.parametrize("mae", [False, True])
def test_load_official_end_to_end_matches_release_forward(tmp_path, mae):
    st = release_state(depth=2, D=128, k=16, classes=10, mae=mae, seed=1)
    model = load_official(save(tmp_path, st, under_model=mae))
    assert isinstance(model, spot.SPoTViT) and not model.training
    assert model.window_embed.geometry == "release" and isinstance(model.pos_embed, ReleaseHeatmapEmbedding)
    if mae:
        assert model.global_pool == "avg" and isinstance(model.norm, torch.nn.Identity)
        assert isinstance(model.fc_norm, torch.nn.LayerNorm)
    else:
        assert model.global_pool == "token" and isinstance(model.fc_norm, torch.nn.Identity)
        assert isinstance(model.norm, torch.nn.LayerNorm)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224)
    pos = torch.cat([EDGE_POSITIONS[None].expand(2, -1, -1), torch.rand(2, 7, 2, dtype=torch.float64)], dim=1)
    with torch.no_grad():
        got = model(images, pos)
    want = release_forward(st, images, pos, heads=2, mae=mae)
    assert got.shape == (2, 10)
    assert (got - want).abs().max().item() <= 1e-5


def test_full_size_vit_b16_layout(monkeypatch):
    st = release_state(depth=12, D=768, k=16, classes=1000, seed=2, logprior=True)
    assert st["embedder.emb.weight"].shape == (768, 1024) and st["blocks.0.att.qkv.weight"].shape == (2304, 768)
    # The file reading is covered by the small checkpoints; here the 331 MB state is handed over in memory, so the
    # suite does not write it to a (possibly nearly full) temporary disk.
    monkeypatch.setattr(spot.weights.formats, "read_state_dict", lambda path: st if path == "vit_b16.pth" else None)
    model = load_official("vit_b16.pth")  # bare dict with tokenizer.logprior (ignored)
    assert model.blocks[0].attn.num_heads == 12 and len(model.blocks) == 12 and model.num_classes == 1000
    assert model.window == (16, 16) and abs(model.pos_embed.n_sigma.item() - F.softplus(st["tokenizer._n_sigma"]).item()) < 1e-7
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model(images, prior="grid_uniform", num_tokens=25)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_default_prior_and_determinism(tmp_path):
    path = save(tmp_path, release_state(depth=1, D=64, k=8, classes=5, seed=3, logprior=True), under_model=True)
    images = torch.randn(2, 3, 224, 224)
    model = load_official(path, prior="gauss", num_tokens=12)
    assert model.default_prior == spot.core.placement.Gaussian(clamp=True) and model.default_num_tokens == 12
    with torch.no_grad():
        a = model(images, generator=torch.Generator().manual_seed(7))
        b = model(images, generator=torch.Generator().manual_seed(7))
        pos = model.resolve_positions(images, generator=torch.Generator().manual_seed(7))
        c = model(images, pos)
    assert a.shape == (2, 5) and torch.equal(a, b) and torch.equal(a, c) and pos.shape == (2, 12, 2)
    grid_model = load_official(path, prior="grid_center", num_tokens=25)
    assert grid_model.default_prior == spot.core.placement.Center(scale=0.2, layout="release")
    assert load_official(path).resolve_positions(images).shape == (1, 28 * 28, 2)  # no default: the full grid


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    st = release_state(depth=1, D=64, k=8, classes=5)
    del st["blocks.0.ls2.lambda_"]
    st["embedder.pos_embed"] = torch.zeros(3)
    with pytest.raises(ValueError) as err:
        load_official(save(tmp_path, st))
    assert "blocks.0.ls2.lambda_" in str(err.value) and "embedder.pos_embed" in str(err.value)
    with pytest.raises(spot.MissingWeightsError):
        load_official(tmp_path / "absent.pth")


def test_release_normalisation_is_recorded_and_used(tmp_path):
    """The release trains and validates on ImageNet mean/std: the loaded model records it, and the experiments that
    read a `retrofit: official` record normalise with it (not the 0.5 of a bare ViT)."""
    import json

    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from spot.weights.checkpoints import open_checkpoint
    from spot.provenance import sha256_file

    path = save(tmp_path, release_state(depth=1, D=64, k=8, classes=5))
    cfg = load_official(path).pretrained_cfg
    assert (cfg["mean"], cfg["std"], cfg["crop_pct"], cfg["interpolation"]) == (
        IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, 0.875, "bicubic")
    record = tmp_path / "cls_in1k_official.json"
    record.write_text(json.dumps({"format": "official", "path": str(path), "sha256": sha256_file(path)}))
    mean, std = open_checkpoint(record, classifier=True).normalisation
    assert (mean, std) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
