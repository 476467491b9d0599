import math

import numpy as np
import pytest
import torch

from spot.weights.backbones import create_backbone, read_state_dict
from spot.core.mae import SubpixelMAE, sincos_pos_embed_2d
from spot.core.models import PatchDropoutViT
from spot.core.positions import grid_cell_index, grid_positions
from spot.core.tokenizer import extract_windows
from spot.weights.formats import encoder_state_dict, load_mae_state_dict, mae_state_dict

SIZE, PATCH = 32, 8
DECODER = dict(decoder_dim=32, decoder_depth=2, decoder_heads=4)


def _mae(seed=0, in_chans=1, vit_kw=None, **kw):
    torch.manual_seed(seed)
    vit = create_backbone("vit_nano_patch8", img_size=SIZE, in_chans=in_chans, **(vit_kw or {}))
    return SubpixelMAE.from_backbone(vit, **{**DECODER, **kw})


def _images(batch=2, chans=1, seed=0):
    return torch.randn(batch, chans, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _seed(s):
    return torch.Generator().manual_seed(s)


def _mae_sincos_table(embed_dim, gh, gw):
    """MAE's ``get_2d_sincos_pos_embed`` (util/pos_embed.py), rewritten in numpy, generalised to gh × gw."""
    grid = np.stack(np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32)), axis=0)

    def one_axis(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_axis(embed_dim // 2, grid[0]), one_axis(embed_dim // 2, grid[1])], axis=1)


def _footprint(positions, k=PATCH, size=SIZE):
    """Pixels a k×k 'spot' window reads at each position (its (k+1)² integer crop), as a (size, size) mask."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    for y, x in positions.tolist():
        r0, c0 = math.floor(y * size - k / 2), math.floor(x * size - k / 2)
        mask[max(r0, 0):max(r0 + k + 1, 0), max(c0, 0):max(c0 + k + 1, 0)] = True
    return mask


@pytest.mark.parametrize("embed_dim,grid", [(16, (4, 4)), (32, (3, 5)), (768, (14, 14))])
def test_sincos_equals_mae_table_at_grid_centres(embed_dim, grid):
    ours = sincos_pos_embed_2d(grid_positions(grid, 1), embed_dim, grid)
    assert ours.dtype == torch.float64
    assert np.abs(ours.numpy() - _mae_sincos_table(embed_dim, *grid)).max() < 1e-9
    # continuous in between: half a cell right of cell (0, 0) is column 0.5 in the first (column) half
    mid = sincos_pos_embed_2d(torch.tensor([[0.5 / grid[0], 1.0 / grid[1]]], dtype=torch.float64), embed_dim, grid)
    assert torch.isclose(mid[0, 0], torch.tensor(math.sin(0.5), dtype=torch.float64))
    assert torch.isclose(mid[0, embed_dim // 2 + embed_dim // 4], torch.tensor(1.0, dtype=torch.float64))  # cos(row 0)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_pos_embed_2d(grid_positions(grid, 1), 18, grid)


def test_masking_partition_counts_and_determinism():
    mae = _mae()
    images = _images(batch=4)
    positions = torch.rand(4, 10, 2, generator=_seed(5), dtype=torch.float64)
    out = mae(images, positions, mask_ratio=0.7, generator=_seed(3))
    assert out.visible_positions.shape == (4, 3, 2) and out.masked_positions.shape == (4, 7, 2)
    assert out.pred.shape == out.target.shape == (4, 7, PATCH * PATCH)
    for b in range(4):
        given = {tuple(p) for p in positions[b].tolist()}
        visible = {tuple(p) for p in out.visible_positions[b].tolist()}
        masked = {tuple(p) for p in out.masked_positions[b].tolist()}
        assert visible | masked == given and not visible & masked
    again = mae(images, positions, mask_ratio=0.7, generator=_seed(3))
    assert torch.equal(again.masked_positions, out.masked_positions) and torch.equal(again.loss, out.loss)
    other = mae(images, positions, mask_ratio=0.7, generator=_seed(4))
    assert not torch.equal(other.masked_positions, out.masked_positions)
    # one (m, 2) set shared by the batch: every image gets its own split
    shared = mae(images, grid_positions(SIZE, PATCH), generator=_seed(3))
    assert shared.visible_positions.shape == (4, 4, 2)  # round(0.25 · 16)
    splits = {tuple(sorted(map(tuple, v.tolist()))) for v in shared.visible_positions}
    assert len(splits) > 1


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_loss_is_mse_over_masked_windows(norm_pix_loss):
    mae = _mae(in_chans=3, norm_pix_loss=norm_pix_loss)
    images = _images(batch=2, chans=3)
    positions = torch.rand(2, 12, 2, generator=_seed(1), dtype=torch.float64)
    out = mae(images, positions, generator=_seed(2))
    windows = extract_windows(images, out.masked_positions, PATCH)  # (B, n, C, k, k)
    target = windows.permute(0, 1, 3, 4, 2).reshape(2, 9, -1)  # (row, col, channel), channel fastest
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(out.target, target, atol=1e-6)
    expected = ((out.pred - target) ** 2).mean(-1).mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)


def test_grid_positions_are_standard_mae():
    mae = _mae(in_chans=3, norm_pix_loss=False)
    images = _images(batch=2, chans=3)
    out = mae(images, grid_positions(SIZE, PATCH), generator=_seed(0))
    # MAE's patchify: (N, C, h·p, w·p) → (N, h·w, p·p·C)
    g = SIZE // PATCH
    patches = torch.einsum("nchpwq->nhwpqc", images.reshape(2, 3, g, PATCH, g, PATCH)).reshape(2, g * g, -1)
    masked = grid_cell_index(out.masked_positions, SIZE, PATCH)
    assert torch.equal(out.target, torch.gather(patches, 1, masked[..., None].expand(-1, -1, patches.shape[-1])))
    # the encoder is the timm ViT on the visible patches (its own patch embedding and learned pos_embed)
    visible = grid_cell_index(out.visible_positions, SIZE, PATCH)
    torch.manual_seed(0)
    vit = create_backbone("vit_nano_patch8", img_size=SIZE, in_chans=3)
    vit.load_state_dict(encoder_state_dict(mae))
    with torch.no_grad():
        ours = mae.forward_encoder(images, out.visible_positions)
        ref = PatchDropoutViT(vit).forward_features(images, keep=visible)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_loss_sees_only_masked_windows():
    """With the prediction pinned to 0, the loss is a function of the masked windows' pixels alone."""
    mae = _mae(norm_pix_loss=False)
    with torch.no_grad():
        mae.decoder_pred.weight.zero_()
        mae.decoder_pred.bias.zero_()
    images = _images(batch=2)
    positions = torch.rand(2, 6, 2, generator=_seed(7), dtype=torch.float64)
    out = mae(images, positions, mask_ratio=0.5, generator=_seed(1))
    outside_masked = torch.stack([~_footprint(m) for m in out.masked_positions])[:, None]
    perturbed = images + 3.0 * outside_masked
    # the visible windows did change, so a loss over them would move
    assert not torch.allclose(extract_windows(perturbed, out.visible_positions, PATCH),
                              extract_windows(images, out.visible_positions, PATCH))
    again = mae(perturbed, positions, mask_ratio=0.5, generator=_seed(1))
    assert torch.equal(again.masked_positions, out.masked_positions)
    assert torch.equal(again.loss, out.loss)
    assert torch.allclose(out.loss, extract_windows(images, out.masked_positions, PATCH).pow(2).mean())
    # control: pixels under the masked windows do move it
    inside = mae(images + 3.0 * ~outside_masked, positions, mask_ratio=0.5, generator=_seed(1))
    assert not torch.allclose(inside.loss, out.loss)


def test_prediction_does_not_see_masked_pixels():
    mae = _mae()
    images = _images(batch=2)
    positions = torch.rand(2, 6, 2, generator=_seed(8), dtype=torch.float64)
    out = mae(images, positions, mask_ratio=0.5, generator=_seed(1))
    outside_visible = torch.stack([~_footprint(v) for v in out.visible_positions])[:, None]
    again = mae(images + 3.0 * outside_visible, positions, mask_ratio=0.5, generator=_seed(1))
    assert torch.equal(again.pred, out.pred)
    assert not torch.allclose(again.target, out.target)


@pytest.mark.parametrize("fc_norm", [False, True])
def test_mae_state_dict_round_trip(tmp_path, fc_norm):
    vit_kw = dict(global_pool="avg", fc_norm=True) if fc_norm else None
    mae = _mae(seed=0, vit_kw=vit_kw)
    assert (mae.encoder_norm is not None) == fc_norm  # MAE's pre-training norm when the ViT has fc_norm
    with torch.no_grad():  # as after retrofitting: the kernelized PE and prefix PE moved away from the ViT's
        mae.encoder.pos_embed.weight.add_(0.05 * torch.randn_like(mae.encoder.pos_embed.weight))
        mae.encoder.prefix_pos_embed.add_(0.05)
    state = mae_state_dict(mae)
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "norm.weight",
                "mask_token", "decoder_embed.weight", "decoder_blocks.1.mlp.fc2.bias", "decoder_norm.bias",
                "decoder_pred.weight"):
        assert key in state
    assert state["decoder_pred.weight"].shape == (PATCH * PATCH, DECODER["decoder_dim"])

    # the encoder part is a timm ViT state dict: a fresh ViT loads it strictly and computes the same grid logits
    torch.manual_seed(9)
    vit = create_backbone("vit_nano_patch8", img_size=SIZE, in_chans=1, **(vit_kw or {}))
    vit.load_state_dict(encoder_state_dict(mae))
    images = _images(batch=2)
    with torch.no_grad():
        assert torch.allclose(vit(images), mae.encoder(images, grid_positions(SIZE, PATCH)), atol=1e-5)

    # the MAE file's layout: nested under "model", with the fixed decoder_pos_embed, no classification head
    official = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))}
    official["decoder_pos_embed"] = torch.zeros(1, 17, DECODER["decoder_dim"])
    torch.save({"model": official}, tmp_path / "mae.pth")
    other = _mae(seed=1, vit_kw=vit_kw)
    positions = torch.rand(2, 10, 2, generator=_seed(3), dtype=torch.float64)
    before = other(images, positions, generator=_seed(4)).loss
    load_mae_state_dict(other, read_state_dict(tmp_path / "mae.pth"))
    other.encoder.head.load_state_dict(mae.encoder.head.state_dict())
    expected = mae(images, positions, generator=_seed(4)).loss
    assert not torch.allclose(before, expected)
    assert torch.allclose(other(images, positions, generator=_seed(4)).loss, expected, atol=1e-5)
    assert torch.allclose(other.encoder.pos_embed.weight, mae.encoder.pos_embed.weight, atol=1e-4)

    bad = dict(state)
    del bad["decoder_pred.weight"]
    with pytest.raises(ValueError, match="decoder_pred.weight"):
        load_mae_state_dict(other, bad)
    with pytest.raises(ValueError, match="unexpected keys.*extra"):
        load_mae_state_dict(other, {**state, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="wrong shapes.*mask_token"):
        load_mae_state_dict(other, {**state, "mask_token": torch.zeros(1, 1, 8)})


def test_fixed_sincos_encoder_pe():
    torch.manual_seed(0)
    vit = create_backbone("vit_nano_patch8", img_size=SIZE, in_chans=1)
    mae = SubpixelMAE.from_backbone(vit, fixed_sincos_pe=True, **DECODER)
    grid = (SIZE // PATCH, SIZE // PATCH)
    pe = mae.encoder.pos_embed(grid_positions(SIZE, PATCH))
    assert torch.allclose(pe, torch.from_numpy(_mae_sincos_table(96, *grid)).float(), atol=1e-5)
    assert not mae.encoder.pos_embed.weight.requires_grad and not mae.encoder.prefix_pos_embed.requires_grad
    assert not mae.encoder.prefix_pos_embed.any()


def test_training_steps_reduce_the_loss():
    mae = _mae()
    images = _images(batch=4)
    positions = grid_positions(SIZE, PATCH)
    opt = torch.optim.AdamW(mae.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = mae(images, positions, generator=_seed(0)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("mask_ratio", [1.0, 1.5, -0.1, True, "0.5", 0.0])
def test_bad_mask_ratio(mask_ratio):
    mae = _mae()
    with pytest.raises(ValueError, match="mask_ratio"):
        mae(_images(), grid_positions(SIZE, PATCH), mask_ratio=mask_ratio)


def test_single_token_has_nothing_to_mask():
    mae = _mae()
    with pytest.raises(ValueError, match="no masked token"):
        mae(_images(), torch.tensor([[0.5, 0.5]], dtype=torch.float64), mask_ratio=0.9)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_autocast_bfloat16(device):
    mae = _mae().to(device)
    images = _images(batch=2).to(device)
    positions = torch.rand(2, 12, 2, generator=_seed(1), dtype=torch.float64).to(device)
    with torch.autocast(device, dtype=torch.bfloat16):
        out = mae(images, positions, generator=_seed(2))
    assert out.pred.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(mae.decoder_pred.weight.grad).all() and torch.isfinite(mae.mask_token.grad).all()
    reference = mae(images, positions, generator=_seed(2)).loss
    assert abs(out.loss.item() - reference.item()) < 0.05 * reference.item()


def test_layer_decay_groups():
    from timm.optim._param_groups import param_groups_layer_decay

    mae = _mae()
    groups = param_groups_layer_decay(mae, 0.05, mae.no_weight_decay(), layer_decay=0.5)
    names = {id(p): n for n, p in mae.named_parameters()}
    scale = {names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert len(scale) == len(names)
    assert scale["mask_token"] == (1.0, 0.0) and scale["decoder_pred.weight"] == (1.0, 0.05)
    assert scale["encoder.pos_embed.weight"][1] == 0.0
    assert scale["encoder.window_embed.proj.weight"][0] < scale["encoder.blocks.0.attn.qkv.weight"][0] < 1.0
