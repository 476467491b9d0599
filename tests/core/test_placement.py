import math

import numpy as np
import pytest
import torch
from scipy.stats import kstest, qmc, truncnorm

import spot
from spot.core.placement import PRIORS, ImageBatch, make_prior

SIZE = (64, 64)


def _sample(name, m=25, b=8, size=SIZE, seed=0, **kw):
    sal = torch.rand(size, generator=torch.Generator().manual_seed(99)) if PRIORS[name].needs_saliency else None
    return spot.sample_positions(name, m, b, size, generator=torch.Generator().manual_seed(seed), saliency=sal, **kw)


@pytest.mark.parametrize("name", list(PRIORS))
@pytest.mark.parametrize("m", [1, 7, 25, 64])
def test_count_range_and_determinism(name, m):
    a = _sample(name, m)
    assert a.shape == (8, m, 2) and a.dtype == torch.float64
    assert (a >= 0).all() and (a <= 1).all()
    assert torch.equal(a, _sample(name, m))  # same generator state → same positions
    if make_prior(name).random and m > 1:
        assert not torch.equal(a, _sample(name, m, seed=1))
        assert not torch.equal(a[0], a[1])  # a fresh draw per image
    if PRIORS[name].deterministic:
        assert torch.equal(a[0], a[-1])


def test_global_rng_makes_it_reproducible_without_a_generator():
    torch.manual_seed(5)
    a = spot.sample_positions("sobol", 10, 2, SIZE)
    torch.manual_seed(5)
    assert torch.equal(a, spot.sample_positions("sobol", 10, 2, SIZE))


@pytest.mark.parametrize("size,patch", [((224, 224), 16), ((224, 224), 32), ((48, 64), 8), ((96, 32), 8), ((64, 64), 8)])
def test_isotropic_is_the_patch_grid_for_grid_counts(size, patch):
    grid = spot.grid_positions(size, patch)
    iso = spot.sample_positions("isotropic", len(grid), 1, size)[0]
    assert torch.equal(iso, grid)


@pytest.mark.parametrize("m", list(range(1, 80)) + [137, 196])
def test_isotropic_covers_evenly_for_any_count(m):
    pts = spot.isotropic_layout(m, (224, 224))
    assert pts.shape == (m, 2)
    d = torch.cdist(pts, pts) + torch.eye(m) * 9
    # even coverage: no two points much closer than the spacing of an m-point square grid (1/√m), and the largest
    # empty gap (distance from a fine probe grid to the nearest point) not much larger than it
    assert d.min().item() > 0.45 / math.sqrt(m) or m == 1
    probe = spot.grid_positions((100, 100), 1)
    assert torch.cdist(probe, pts).min(1).values.max().item() < 1.1 / math.sqrt(m)


@pytest.mark.parametrize("m", [9, 25, 49, 100])
def test_center_is_nearer_the_centre_than_isotropic(m):
    c = _sample("center", m)[0]
    i = _sample("isotropic", m)[0]
    dist = lambda p: (p - 0.5).norm(dim=-1).mean().item()
    assert dist(c) < (0.9 if m >= 25 else 0.98) * dist(i)
    # the same layout, only warped: order along each axis is kept
    assert torch.equal(c[:, 0].argsort(stable=True), i[:, 0].argsort(stable=True))


def test_center_strength_setting():
    weak = _sample("center", 25, scale=0.05)[0]
    strong = _sample("center", 25, scale=0.4)[0]
    assert (strong - 0.5).norm(dim=-1).mean() < (weak - 0.5).norm(dim=-1).mean()


def test_boundary_hugs_the_edges():
    edge = lambda p: torch.minimum(p, 1 - p).min(dim=-1).values.mean().item()
    assert edge(_sample("boundary", 64, 16)) < 0.05 < edge(_sample("uniform", 64, 16))


def test_gaussian_is_central_and_truncated():
    std = 1 / math.pi
    g = _sample("gaussian", 500, 8)
    assert ((g == 0) | (g == 1)).float().mean().item() == 0.0  # truncated, not clamped onto the border
    # the coordinates follow N(½, std²) truncated to [0, 1] (Kolmogorov–Smirnov), which is centre-biased
    law = truncnorm(-0.5 / std, 0.5 / std, loc=0.5, scale=std)
    assert kstest(g.flatten().numpy(), law.cdf).pvalue > 1e-3
    assert kstest(_sample("uniform", 500, 8).flatten().numpy(), law.cdf).pvalue < 1e-6
    assert law.std() < 0.9 * math.sqrt(1 / 12)


def test_sobol_has_lower_discrepancy_than_uniform():
    disc = lambda p: np.mean([qmc.discrepancy(x.numpy()) for x in p])
    assert disc(_sample("sobol", 64, 32)) < 0.5 * disc(_sample("uniform", 64, 32))


def test_salient_follows_the_map_and_background_avoids_it():
    sal = torch.ones(32, 32)
    sal[:16, :16] = 9.0  # top-left quadrant holds 9 / (9 + 3) = 75 % of the mass
    g = torch.Generator().manual_seed(0)
    iid = {"name": "salient", "layout": "sample", "blur": 0.0, "floor": 0.0}  # the raw map, drawn i.i.d.
    sharp = {"name": "salient", "blur": 0.0, "floor": 0.0}  # the raw map, transported
    pos = spot.sample_positions(iid, 400, 10, (32, 32), generator=g, saliency=sal)
    in_quadrant = ((pos[..., 0] < 0.5) & (pos[..., 1] < 0.5)).float().mean().item()
    assert in_quadrant == pytest.approx(0.75, abs=0.03)
    # the default transports the Isotropic layout: the same share, with no draw (and no generator needed)
    moved = spot.sample_positions(sharp, 400, 1, (32, 32), saliency=sal)
    assert ((moved[..., 0] < 0.5) & (moved[..., 1] < 0.5)).double().mean().item() == pytest.approx(0.75, abs=0.02)
    back = spot.sample_positions("background", 400, 10, (32, 32), generator=g, saliency=sal)
    assert ((back[..., 0] < 0.5) & (back[..., 1] < 0.5)).float().mean().item() == 0.0
    # a single bright pixel: every token lands inside it (sub-pixel jitter within the pixel)
    point = torch.zeros(1, 32, 32)
    point[0, 5, 20] = 1.0
    for spec in (iid, sharp):
        p = spot.sample_positions(spec, 50, 1, (32, 32), generator=g, saliency=point)[0]
        assert ((p[:, 0] * 32).floor() == 5).all() and ((p[:, 1] * 32).floor() == 20).all()
        assert p.std(0).min() > 0  # spread inside the pixel, not all on one point


def test_salient_transport_spreads_the_isotropic_layout_over_the_region():
    from spot.core.placement import transport_layout

    size = (32, 32)
    # a uniform map gives the Isotropic layout back; a rectangle gets the layout squeezed into it, evenly
    assert torch.allclose(transport_layout(spot.isotropic_layout(9, size), torch.ones(1, 32, 32, dtype=torch.float64)),
                          spot.isotropic_layout(9, size)[None])
    mask = torch.zeros(32, 32)
    mask[8:24, 4:12] = 1.0
    p = spot.sample_positions({"name": "salient", "blur": 0.0, "floor": 0.0}, 4, 1, size, saliency=mask)[0] * 32
    assert torch.allclose(p, torch.tensor([[12.0, 6.0], [12.0, 10.0], [20.0, 6.0], [20.0, 10.0]], dtype=p.dtype))
    # a blurred map reaches the outline, a uniform floor beyond it; both stay deterministic per map
    soft = spot.sample_positions({"name": "salient", "blur": 0.1, "floor": 0.3}, 16, 1, size, saliency=mask)[0] * 32
    assert soft[:, 1].min() < 4.0 and soft[:, 1].max() > 12.0 and soft[:, 1].max() < 32
    assert torch.equal(soft, spot.sample_positions({"name": "salient", "blur": 0.1, "floor": 0.3}, 16, 1, size,
                                                   saliency=mask)[0] * 32)
    for bad, match in (({"layout": "grid"}, "layout must be one of transport, sample"), ({"blur": -1}, "blur"),
                       ({"floor": 1.0}, "floor")):
        with pytest.raises(ValueError, match=match):
            spot.sample_positions({"name": "salient", **bad}, 4, 1, size, saliency=mask)


def test_per_image_saliency_maps():
    maps = torch.zeros(2, 16, 16)
    maps[0, 0, 0] = 1
    maps[1, 15, 15] = 1
    p = spot.sample_positions({"name": "salient", "blur": 0.0, "floor": 0.0}, 5, 2, (16, 16), saliency=maps)
    assert (p[0] < 1 / 16).all() and (p[1] > 15 / 16).all()
    # the default softens the map: a blurred, half-uniform map spreads the tokens over the image, still per map
    q = spot.sample_positions("salient", 16, 2, (16, 16), saliency=maps)
    assert q[0].mean(0).sum() < q[1].mean(0).sum() and q[0].max() > 0.5 and q[1].min() < 0.5


@pytest.mark.parametrize("kwargs,match", [
    (dict(prior="nope"), "unknown prior"),
    (dict(prior="uniform", num_tokens=0), "num_tokens"),
    (dict(prior="uniform", batch_size=0), "batch_size"),
    (dict(prior="salient"), "saliency"),
    (dict(prior="salient", saliency=torch.rand(10, 10)), "shape"),
    (dict(prior="salient", saliency=-torch.rand(32, 32)), "≥ 0"),
    (dict(prior="uniform", saliency=torch.rand(32, 32)), "does not use a saliency"),
    (dict(prior="center", scale=-1.0), "scale"),
    (dict(prior="center", sharpness=2.0), "accepts settings"),
    (dict(prior="uniform", image_size=(0, 32)), "image_size"),
])
def test_bad_input(kwargs, match):
    args = dict(prior="uniform", num_tokens=4, batch_size=2, image_size=(32, 32)) | kwargs
    with pytest.raises(ValueError, match=match):
        spot.sample_positions(**args)


def test_prior_names_are_case_insensitive_and_instances_work():
    a = spot.sample_positions("Center", 9, 1, SIZE)
    b = spot.sample_positions(spot.core.placement.Center(), 9, 1, SIZE)
    assert torch.equal(a, b)


def test_snap_to_grid_lands_on_the_nearest_centre(gen):
    size, patch = (48, 64), 8
    pos = torch.rand(3, 50, 2, dtype=torch.float64, generator=gen) * 1.2 - 0.1
    snapped = spot.snap_to_grid(pos, size, patch)
    centres = spot.grid_positions(size, patch)
    # every snapped point is a grid centre, and it is the nearest one in pixel distance
    scale = torch.tensor(size, dtype=torch.float64)
    d = torch.cdist((pos * scale).reshape(-1, 2), centres * scale)
    assert torch.equal(snapped.reshape(-1, 2), centres[d.argmin(1)])
    assert torch.equal(spot.snap_to_grid(snapped, size, patch), snapped)


def test_release_prior_names_and_settings():
    from spot.core.placement import RELEASE_NAMES, make_prior
    from spot.core.placement.priors import Boundary, Center, Gaussian, Isotropic, Sobol, Uniform

    # the release's names that differ from ours (uniform and sobol are the same names)
    assert set(RELEASE_NAMES) == {"gauss", "grid_uniform", "grid_center", "edge"}
    assert make_prior("uniform") == Uniform() and make_prior("sobol") == Sobol()
    assert make_prior("gauss") == Gaussian(clamp=True)
    assert make_prior("grid_uniform") == Isotropic(layout="release")
    assert make_prior("grid_center") == Center(scale=0.2, layout="release")
    assert make_prior("grid_center", scale=0.3).scale == 0.3 and make_prior("edge") == Boundary()


def test_release_grid_layout_and_clamped_gaussian():
    from spot.core.placement import sample_positions

    px = sample_positions("grid_uniform", 25, 2, (224, 224))[0] * 224
    assert torch.equal(px[:5, 1], torch.tensor([22.0, 67, 112, 157, 202], dtype=torch.float64))
    assert torch.equal(px[::5, 0], px[:5, 1])
    for m in (49, 100, 196):
        step = round((224 * 224 / m) ** 0.5)
        got = sample_positions("grid_uniform", m, 1, 224)[0, :, 1] * 224
        assert got.shape == (m,) and got[0] == step // 2 and got[1] - got[0] == step
    with pytest.raises(ValueError, match="grid"):
        sample_positions("grid_uniform", 30, 1, 224)
    c = sample_positions("grid_center", 25, 1, 224)[0] - 0.5
    d = px[:, :] / 224 - 0.5
    assert torch.allclose(c, d * (1 - torch.exp(-(d / 0.2) ** 2)))
    g = torch.Generator().manual_seed(0)
    z = sample_positions("gauss", 4000, 1, 224, generator=g)
    assert z.min() == 0 and z.max() == 1 and 0.08 < ((z == 0) | (z == 1)).double().mean() < 0.16
    t = sample_positions("gaussian", 4000, 1, 224, generator=torch.Generator().manual_seed(0))
    assert ((t == 0) | (t == 1)).double().mean() < 0.01


# ------------------------------------------------------------------------------------------------ the placement registry

def test_placements_by_name_mapping_and_label():
    from spot.core.placement import PLACEMENTS, make_placement

    assert {"uniform", "isotropic", "center", "grid", "grid_random", "grid_even", "snapped", "jittered",
            "spot_on", "spot_on_ascent", "spot_on_random_label"} <= set(PLACEMENTS)
    c = make_placement({"name": "center", "scale": "0.3"})  # YAML / Snakemake --config may give numbers as text
    assert c.scale == 0.3 and c.label == "center(scale=0.3)" and make_placement("Center").label == "center"
    assert make_placement("grid_center").label == "center(layout=release)"  # the release's name: its settings
    assert make_placement({"name": "snapped", "of": "uniform"}).label == "snapped(of=uniform)"
    j = make_placement({"name": "jittered", "of": {"name": "center", "scale": 0.3}, "amount": 0.5})
    assert j.label == "jittered(of=center(scale=0.3), amount=0.5)" and not j.deterministic
    for spec, match in (("nope", "unknown placement 'nope'"), ({"scale": 1}, "needs a name"),
                        ({"name": "center", "sharpness": 2}, "accepts settings"),
                        ({"name": "jittered", "of": "uniform"}, "deterministic layout"), (3, "a name or a mapping")):
        with pytest.raises(ValueError, match=match):
            make_placement(spec)


def test_one_seeding_scheme_per_image_streams_and_sequential_draws():
    from spot.core.placement import ImageBatch, ImageStreams, place

    batch = ImageBatch((32, 32), 4, indices=[3, 8, 9, 11])
    streams = ImageStreams("spot-evaluate", 0, "test")
    a = place("uniform", 5, batch, streams)
    # a stream is the image's own: the same draw alone, in another batch, or at another position in the batch
    alone = place("uniform", 5, batch.image(2), streams)
    other = place("uniform", 5, ImageBatch((32, 32), 2, indices=[9, 1]), streams)
    assert torch.equal(a[2:3], alone) and torch.equal(a[2], other[0])
    # the evaluation's stream names are today's: blake2b of spot-evaluate/seed/split/index
    import hashlib

    digest = hashlib.blake2b(b"spot-evaluate/0/test/8", digest_size=8).digest()
    expected = torch.rand((1, 5, 2), generator=torch.Generator().manual_seed(
        int.from_bytes(digest, "little") & ((1 << 63) - 1)), dtype=torch.float64)
    assert torch.equal(a[1:2], expected)
    # independent per name: another namespace or key draws differently
    assert not torch.equal(a, place("uniform", 5, batch, ImageStreams("spot-oracle", "uniform", 5, 0, "test")))
    # a generator is one batched, sequential draw (training); deterministic placements are shared (1, m, 2)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(place("uniform", 5, batch, g1), spot.sample_positions("uniform", 5, 4, (32, 32), generator=g2))
    assert place("isotropic", 5, batch, streams).shape == (1, 5, 2)
    with pytest.raises(ValueError, match="indices"):
        place("uniform", 5, ImageBatch((32, 32), 2), streams)
    with pytest.raises(ValueError, match="patch"):
        place("grid_random", 5, batch, streams)
    with pytest.raises(ValueError, match="saliency"):
        place("salient", 5, batch, streams)


def test_jittered_moves_each_point_within_its_cell_and_grid_gives_the_patch_grid():
    from spot.core.placement import ImageBatch, place

    batch = ImageBatch((48, 48), 200, patch=(8, 8))
    j = place({"name": "jittered", "of": "isotropic", "amount": 1.0}, 9, batch, torch.Generator().manual_seed(0))
    base = place("isotropic", 9, batch)
    off = (j - base) * 3  # 3 × 3 layout: cells of 1/3
    assert off.abs().max() <= 0.5 + 1e-9 and off.abs().max() > 0.45
    grid = place("grid", 36, batch)
    assert torch.equal(grid[0], spot.grid_positions((48, 48), 8))
    with pytest.raises(ValueError, match="all 36 patches"):
        place("grid", 9, batch)


def test_priors_are_the_registered_prior_placements():
    """PRIORS is derived from the placement registry: a Prior registered later is a prior at once; a placement that
    is not a Prior (the grid control) is not one."""
    from dataclasses import dataclass

    from spot.core.placement import PLACEMENTS, Prior, register

    assert "grid" in PLACEMENTS and "grid" not in PRIORS and list(PRIORS)[:4] == ["uniform", "gaussian", "sobol",
                                                                                  "isotropic"]

    @register
    @dataclass(frozen=True)
    class Corner(Prior):
        name = "corner_test"
        deterministic = True

        def sample(self, num_tokens, batch, generator=None):
            return torch.zeros(batch.batch_size, num_tokens, 2, dtype=torch.float64)

    try:
        assert PRIORS["corner_test"] is Corner and "corner_test" in PRIORS
        assert make_prior("corner_test").sample(3, ImageBatch((8, 8), 2)).shape == (2, 3, 2)
    finally:
        del PLACEMENTS["corner_test"]
    assert "corner_test" not in PRIORS
