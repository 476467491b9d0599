"""SPoT-ON's search (spot.experiments.oracle.search): the positions move, only they change, the trajectory, the saliency scores."""
import numpy as np
import pytest
import torch

from spot import sample_positions
from spot.experiments.oracle import oracle_search, relative_saliency_gain, saliency_scores

from .common import SIZE, _loss, load_classifier, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


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
