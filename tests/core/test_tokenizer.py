import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import spot


def _patches(images, p):
    """Reference patch tokens of a ViT: non-overlapping p×p tiles, row-major."""
    B, C, H, W = images.shape
    t = images.unfold(2, p, p).unfold(3, p, p)  # (B, C, gh, gw, p, p)
    return t.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C, p, p)


@pytest.mark.parametrize("size,patch", [((32, 32), 8), ((48, 64), 8), ((224, 224), 16), ((40, 24), 4)])
def test_grid_positions_read_exactly_the_patches(size, patch):
    images = torch.randn(2, 3, *size)
    windows = spot.extract_windows(images, spot.grid_positions(size, patch), patch)
    assert windows.shape == (2, (size[0] // patch) * (size[1] // patch), 3, patch, patch)
    assert torch.equal(windows, _patches(images, patch))


def _grid_sample_reference(images, positions, kh, kw):
    """Independent formulation through torch's grid_sample: sample centres at μ·size + j + ½ − k/2 (pixel units)."""
    B, C, H, W = images.shape
    m = positions.shape[1]
    oy = torch.arange(kh, dtype=torch.float64) + 0.5 - kh / 2
    ox = torch.arange(kw, dtype=torch.float64) + 0.5 - kw / 2
    ys = positions[..., 0, None] * H + oy  # continuous pixel coordinates (B, m, kh)
    xs = positions[..., 1, None] * W + ox
    gy = (2 * ys / H - 1)[..., :, None].expand(B, m, kh, kw)
    gx = (2 * xs / W - 1)[..., None, :].expand(B, m, kh, kw)
    grid = torch.stack([gx, gy], -1).reshape(B, m * kh, kw, 2)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(B, C, m, kh, kw).permute(0, 2, 1, 3, 4)


@pytest.mark.parametrize("size,window", [((30, 30), 5), ((24, 40), (6, 3)), ((16, 16), 16), ((9, 13), 1)])
def test_matches_grid_sample_anywhere_including_outside(size, window, gen):
    images = torch.randn(3, 2, *size, dtype=torch.float64, generator=gen)
    positions = torch.rand(3, 17, 2, dtype=torch.float64, generator=gen) * 1.4 - 0.2  # some cross the border
    kh, kw = (window, window) if isinstance(window, int) else window
    ours = spot.extract_windows(images, positions, window)
    assert ours.shape == (3, 17, 2, kh, kw)
    torch.testing.assert_close(ours, _grid_sample_reference(images, positions, kh, kw), rtol=0, atol=1e-12)


def _bilinear(img, y, x):
    """Textbook bilinear interpolation at continuous pixel coordinate (y, x) (pixel centres at i + ½), zeros outside."""
    H, W = img.shape
    ty, tx = y - 0.5, x - 0.5
    y0, x0 = math.floor(ty), math.floor(tx)
    total = 0.0
    for dy, wy in ((0, 1 - (ty - y0)), (1, ty - y0)):
        for dx, wx in ((0, 1 - (tx - x0)), (1, tx - x0)):
            r, c = y0 + dy, x0 + dx
            if 0 <= r < H and 0 <= c < W:
                total += wy * wx * img[r, c]
    return total


def test_subpixel_window_equals_independent_bilinear_interpolation():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(20, 27))
    pos = np.array([[0.3137, 0.6012], [0.02, 0.97], [0.5, 0.5]])
    k = 6
    out = spot.extract_windows(torch.tensor(img)[None, None], torch.tensor(pos)[None], k)[0, :, 0].numpy()
    for t, (py, px) in enumerate(pos):
        for i in range(k):
            for j in range(k):
                expected = _bilinear(img, py * 20 + i + 0.5 - k / 2, px * 27 + j + 0.5 - k / 2)
                assert out[t, i, j] == pytest.approx(expected, abs=1e-12)


def test_border_blends_to_zero_over_half_a_pixel():
    img = torch.ones(1, 1, 10, 10, dtype=torch.float64)
    # a 1×1 window whose sample sits 0.25 px outside the left edge: half-way between pixel 0's centre and the
    # zero beyond, 0.75 px from that centre → weight 0.25 on pixel 0
    pos = torch.tensor([[[0.55, -0.025]]], dtype=torch.float64)
    assert spot.extract_windows(img, pos, 1).item() == pytest.approx(0.25)
    far = torch.tensor([[[0.5, -0.5]]], dtype=torch.float64)  # entirely outside
    assert spot.extract_windows(img, far, 4).abs().max().item() == 0.0


def test_gradcheck_positions_and_images(gen):
    images = torch.randn(2, 2, 11, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    positions = (torch.rand(2, 4, 2, dtype=torch.float64, generator=gen) * 0.9 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: spot.extract_windows(images.detach(), p, 3), (positions,))
    assert torch.autograd.gradcheck(lambda im: spot.extract_windows(im, positions.detach(), 4), (images,))


def test_gradient_wrt_positions_is_the_image_slope():
    # along x the image is 2·x: moving a window by δ (normalised) changes every sample by 2·δ·W
    W = 16
    img = (2.0 * torch.arange(W, dtype=torch.float64)).expand(1, 1, 8, W).contiguous()
    pos = torch.tensor([[[0.5, 0.43]]], dtype=torch.float64, requires_grad=True)
    spot.extract_windows(img, pos, 3).sum().backward()
    assert pos.grad[0, 0, 1].item() == pytest.approx(9 * 2.0 * W)
    assert pos.grad[0, 0, 0].item() == pytest.approx(0.0)


def test_broadcast_positions_overlap_and_single_token():
    images = torch.randn(4, 3, 12, 12)
    out = spot.extract_windows(images, torch.tensor([[0.5, 0.5]]), 4)
    assert out.shape == (4, 1, 3, 4, 4)
    same = spot.extract_windows(images, torch.tensor([[0.5, 0.5], [0.5, 0.5]]), 4)
    assert torch.equal(same[:, 0], same[:, 1])


@pytest.mark.parametrize("images,positions,window,match", [
    (torch.randn(1, 3, 8, 8), torch.rand(1, 2, 2), 9, "larger than the image"),
    (torch.randn(1, 3, 8, 8), torch.rand(1, 2, 3), 2, "shape"),
    (torch.randn(1, 3, 8, 8), torch.tensor([[[float("nan"), 0.5]]]), 2, "finite"),
    (torch.randn(1, 3, 8, 8), torch.rand(1, 0, 2), 2, "m ≥ 1"),
    (torch.randn(2, 3, 8, 8), torch.rand(3, 4, 2), 2, "batch size"),
    (torch.randn(3, 8, 8), torch.rand(1, 4, 2), 2, r"\(B, C, H, W\)"),
    (torch.randn(1, 3, 8, 8), torch.rand(1, 4, 2), 0, "window"),
    (torch.randn(1, 3, 8, 8), [[0.5, 0.5]], 2, "torch.Tensor"),
])
def test_bad_input_is_a_clear_value_error(images, positions, window, match):
    with pytest.raises(ValueError, match=match):
        spot.extract_windows(images, positions, window)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shared_and_whole_pixel_layouts_read_what_grid_sample_reads(gen, dtype):
    # whole-pixel starts (the blend is skipped on the CPU), some across the border (the zero mask is not), a layout
    # shared by the batch (one index for every image) and the same layout given per image
    H, W, kh, kw = 14, 11, 4, 3
    images = torch.randn(3, 2, H, W, dtype=dtype, generator=gen)
    sy, sx = torch.randint(-5, H + 2, (1, 9), generator=gen), torch.randint(-4, W + 2, (1, 9), generator=gen)
    whole = torch.stack(((sy + kh / 2) / H, (sx + kw / 2) / W), -1).double()
    inner = torch.tensor([[[0.5, 0.5], [0.3, 0.6]]], dtype=torch.float64)  # every sample inside: no mask
    for positions in (whole, inner, torch.rand(1, 5, 2, dtype=torch.float64, generator=gen)):
        shared = spot.extract_windows(images, positions, (kh, kw))
        per_image = spot.extract_windows(images, positions.expand(3, -1, -1), (kh, kw))
        assert torch.equal(shared, per_image)
        reference = _grid_sample_reference(images.double(), positions.expand(3, -1, -1), kh, kw).to(dtype)
        torch.testing.assert_close(shared, reference, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_window_plan_skips_only_what_changes_nothing():
    images = torch.randn(1, 3, 16, 16)
    whole = spot.grid_positions((16, 16), 4)[None]
    plan = spot.core.tokenizer.plan_windows(images, whole, 4)
    assert plan.frac is None and plan.inside is None and plan.index.shape == (1, 16, 4, 4)
    border = torch.tensor([[[0.5, 0.0]]], dtype=torch.float64)  # whole pixels, half the window outside
    plan = spot.core.tokenizer.plan_windows(images, border, 4)
    assert plan.frac is None and plan.inside is not None and plan.inside.sum() == 8
    learned = whole.clone().requires_grad_()  # a gradient is asked: the blend stays (it carries d/d positions)
    plan = spot.core.tokenizer.plan_windows(images, learned, 4)
    assert plan.frac is not None and plan.frac.requires_grad and plan.index.shape == (1, 16, 5, 5)


def test_window_embedding_reuses_a_layout_only_while_it_is_unchanged(monkeypatch):
    proj = torch.nn.Conv2d(2, 5, 4, 4)
    embed = spot.WindowEmbedding(proj)
    images = torch.randn(3, 2, 16, 16)
    built = []
    plan_windows = spot.core.tokenizer.plan_windows
    monkeypatch.setattr(spot.core.tokenizer, "plan_windows", lambda *a: built.append(1) or plan_windows(*a))
    layout = torch.rand(1, 6, 2, dtype=torch.float64)
    with torch.no_grad():
        first = embed(images, layout)
        assert torch.equal(embed(images, layout), first) and len(built) == 1  # reused
        assert torch.equal(embed(images[:1], layout), first[:1]) and len(built) == 1  # any batch size
        layout.mul_(0.5)  # moved in place: rebuilt, and the windows follow
        assert torch.equal(embed(images, layout), embed(images, layout.clone())) and len(built) == 3
        embed(torch.randn(3, 2, 20, 20), layout)  # another image size
        assert len(built) == 4
        embed(images, layout.clone())  # another tensor with the same values
        assert len(built) == 5
    moving = layout.clone().requires_grad_()
    embed(images, moving), embed(images, moving)
    assert len(built) == 7  # never kept for positions that require grad
    with torch.inference_mode():
        made_here = layout.clone()  # an inference tensor: no version counter to watch, so never kept
        assert torch.equal(embed(images, made_here), embed(images, layout)) and len(built) == 9
        embed(images, made_here)
    assert len(built) == 10
    with torch.no_grad():
        kept = embed(images, layout)  # one entry: inference mode's replaced it
        assert torch.equal(embed(images, layout.expand(3, -1, -1)), kept)  # per-image positions: not kept …
        assert torch.equal(embed(images, layout), kept) and len(built) == 12  # … so the shared layout's stays
