import pytest
import torch

import spot
from spot import KernelizedPositionalEmbedding


@pytest.mark.parametrize("lattice", [(14, 14), (6, 8), (1, 5)])
def test_fit_is_exact_at_every_grid_centre(lattice, gen):
    values = torch.randn(*lattice, 32, generator=gen)
    pe = KernelizedPositionalEmbedding.from_grid(values)
    centres = spot.grid_positions(lattice, 1)
    assert (pe(centres) - values.reshape(-1, 32)).abs().max().item() < 1e-5


def test_smooth_between_centres(gen):
    values = torch.randn(7, 7, 16, generator=gen)
    pe = KernelizedPositionalEmbedding.from_grid(values).double()
    # along a line through the image, finite differences of PE at step h shrink like h (Lipschitz), and the
    # autograd slope matches them (differentiable, no kinks at cell borders)
    t = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
    line = torch.stack([t, 0.37 + 0 * t], -1)
    emb = pe(line)
    step = (emb[1:] - emb[:-1]).norm(dim=-1)
    slope = step.max().item() / (t[1] - t[0]).item()
    assert slope < 500  # bounded slope: a few units of |PE| per cell
    second = (emb[2:] - 2 * emb[1:-1] + emb[:-2]).norm(dim=-1).max().item()
    assert second < 1e-3 * step.max().item() * 10  # no kinks: second differences ≪ first differences
    mu = torch.tensor([[0.33, 0.61]], dtype=torch.float64, requires_grad=True)
    (jac,) = torch.autograd.grad(pe(mu)[0, 3], mu)
    h = 1e-6
    fd = (pe(mu.detach() + torch.tensor([[0, h]], dtype=torch.float64))[0, 3] - pe(mu.detach())[0, 3]) / h
    assert jac[0, 1].item() == pytest.approx(fd.item(), rel=1e-3, abs=1e-6)


def test_kernel_width_is_in_lattice_spacings():
    pe = KernelizedPositionalEmbedding(4, lattice_size=(10, 10), sigma=0.5)
    k = pe.kernel(torch.tensor([[0.05, 0.05]], dtype=torch.float64))  # on lattice point (0, 0)
    assert k[0, 0].item() == pytest.approx(1.0)
    # the neighbour one spacing (0.1) away in x: exp(-½ (0.1 / 0.05)²) = exp(-2)
    assert k[0, 1].item() == pytest.approx(torch.exp(torch.tensor(-2.0)).item())


def test_bad_settings():
    with pytest.raises(ValueError, match="sigma"):
        KernelizedPositionalEmbedding(8, (4, 4), sigma=0.0)
    with pytest.raises(ValueError, match="shape"):
        KernelizedPositionalEmbedding(8, (4, 4)).fit_(torch.zeros(4, 5, 8))
