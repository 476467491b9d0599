"""Spatial priors (§3.1): where to place ``m`` tokens in an image before (or without) any search.

Each prior is a placement (:mod:`spot.core.placement`): a small frozen dataclass whose fields are its settings (a config
sets them as ``{name: center, scale: 0.3}``; the defaults are the authors' values). ``sample_positions`` is the
convenience entry point::

    positions = spot.sample_positions("center", num_tokens=25, batch_size=8, image_size=(224, 224), generator=g)

All samplers return (B, m, 2) positions (y, x) in [0, 1] and are deterministic given a ``torch.Generator``
(without one they use torch's global RNG, so ``torch.manual_seed`` makes them reproducible).

=============  ===========  ============================================================================
paper name     release      what it does
=============  ===========  ============================================================================
Uniform        uniform      i.i.d. U[0, 1)² per token and image
Gaussian       gauss        i.i.d. N(½, std²) per axis, truncated to [0, 1] (the release clamps instead,
                            which piles ~12 % of coordinates onto the image border)
Sobol          sobol        a freshly scrambled 2-D Sobol block of m points per image (scipy ``qmc``),
                            seeded from the generator (the release is unseeded)
Isotropic      grid_uniform deterministic even coverage for any m: ``r ≈ √(m·H/W)`` rows, the m points
                            spread over them as evenly as possible; the patch grid when m is a grid count
Center         grid_center  the Isotropic layout warped towards the centre per axis,
                            ``δ' = δ·(1 − exp(−(δ/scale)²))`` with ``δ = c − ½``
Salient        —            the Isotropic layout transported through the saliency map's distribution, the map
                            blurred (σ = 0.2 × the side) and mixed half and half with uniform
                            (``layout="sample"``: pixels drawn from it + U[0, 1) sub-pixel jitter)
Background     —            the same from the inverted map ``max(M) − M``
Boundary       edge         per axis ``v = sign(u)(1 − |u|^exponent)``, ``u ~ U(−1, 1)``, mapped to [0, 1]
                            and clamped to [margin, 1 − margin]
=============  ===========  ============================================================================

The release's names are accepted too (:data:`spot.core.placement.RELEASE_NAMES`), and select the release's exact behaviour where it
differs from ours: ``gauss`` → ``Gaussian(clamp=True)``; ``grid_uniform`` → ``Isotropic(layout="release")`` and
``grid_center`` → ``Center(layout="release")``, the release's grid of step ``round(√(HW/m))`` px starting at
``step//2`` px (a pixel coordinate ``c`` is the position ``c/size``; e.g. 22, 67, 112, 157, 202 px for m = 25 at 224,
where our layout has the cell centres 22.4, 67.2, …; it exists only when both axes hold a whole number of steps
whose product is m).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from ... import _checks
from ..._lazy import lazy
from . import PLACEMENTS, RELEASE_NAMES, ImageBatch, Placement, make_placement, register

torch = lazy("torch")

__all__ = [
    "Prior", "Uniform", "Gaussian", "Sobol", "Isotropic", "Center", "Salient", "Background", "Boundary",
    "PRIORS", "make_prior", "sample_positions", "isotropic_layout", "release_grid_layout", "transport_layout",
]


def generator_device(generator: torch.Generator | None):
    """Where a generator draws (torch's global CPU RNG without one): samplers draw there, then move the result."""
    return generator.device if generator is not None else torch.device("cpu")


def _rand(shape, generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator_device(generator))


@dataclass(frozen=True)
class Prior(Placement):
    """A spatial prior of the paper: a placement that looks at the image size (and Salient / Background at the
    saliency map) only."""


@register
@dataclass(frozen=True)
class Uniform(Prior):
    name: ClassVar[str] = "uniform"

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        return _rand((batch.batch_size, num_tokens, 2), generator)


@register
@dataclass(frozen=True)
class Gaussian(Prior):
    """Central bias: N(½, std²) per axis truncated to [0, 1] (inverse-CDF sampling, so still one draw per value).

    ``clamp=True`` is the release's variant: N(½, std²) clamped to [0, 1] (values outside land on the border).
    """

    name: ClassVar[str] = "gaussian"
    std: float = 1.0 / math.pi
    clamp: bool = False

    def validate(self):
        _checks.number(self.std, "Gaussian prior: std", above=0)
        return self

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        batch_size = batch.batch_size
        if self.clamp:
            z = torch.randn((batch_size, num_tokens, 2), generator=generator, dtype=torch.float64,
                            device=generator_device(generator))
            return (0.5 + self.std * z).clamp(0.0, 1.0)
        lo = torch.special.ndtr(torch.tensor(-0.5 / self.std, dtype=torch.float64))
        hi = 1.0 - lo
        u = lo + (hi - lo) * _rand((batch_size, num_tokens, 2), generator)
        return (0.5 + self.std * torch.special.ndtri(u)).clamp(0.0, 1.0)


@register
@dataclass(frozen=True)
class Sobol(Prior):
    """A fresh Owen-scrambled Sobol block of m points per image, seeded from the torch generator."""

    name: ClassVar[str] = "sobol"

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        from scipy.stats import qmc

        device = generator_device(generator)
        seeds = torch.randint(0, 2**62, (batch.batch_size,), generator=generator, device=device).tolist()
        blocks = []
        with warnings.catch_warnings():  # "balance properties of Sobol' points require n to be a power of 2"
            warnings.simplefilter("ignore", UserWarning)
            for seed in seeds:
                blocks.append(qmc.Sobol(d=2, scramble=True, seed=np.random.default_rng(seed)).random(num_tokens))
        return torch.from_numpy(np.stack(blocks)).to(device)


def isotropic_layout(num_tokens: int, image_size: tuple[int, int]) -> torch.Tensor:
    """Deterministic even coverage with any number of points: (m, 2) float64.

    ``r = round(√(m·H/W))`` rows at heights ``(i + ½)/r``; row ``i`` holds ``n_i = ⌊(i+1)m/r⌋ − ⌊im/r⌋`` points at
    ``(j + ½)/n_i``. When ``m = rows·cols`` of a square-patch grid this is exactly that grid's cell centres.
    """
    H, W = image_size
    m = num_tokens
    rows = min(m, max(1, round(math.sqrt(m * H / W))))
    pts = []
    for i in range(rows):
        n_i = (i + 1) * m // rows - i * m // rows
        y = (i + 0.5) / rows
        pts.extend((y, (j + 0.5) / n_i) for j in range(n_i))
    return torch.tensor(pts, dtype=torch.float64)


def release_grid_layout(num_tokens: int, image_size: tuple[int, int]) -> torch.Tensor:
    """The release's ``grid_uniform`` layout: (m, 2) float64, row-major.

    ``step = round(√(H·W/m))`` px; pixel coordinates ``step//2, step//2 + step, …`` below H (rows) and W (columns),
    as positions ``c/H`` and ``c/W`` (the release's pixel coordinate of a position is ``y·H``). Raises a ValueError
    when that grid does not hold exactly m points (the release only works for grid counts: 25, 49, 100, 196 … at 224²).
    """
    H, W = image_size
    step = max(1, round(math.sqrt(H * W / num_tokens)))
    ys = [c / H for c in range(step // 2, H, step)]
    xs = [c / W for c in range(step // 2, W, step)]
    if len(ys) * len(xs) != num_tokens:
        raise ValueError(f"the release grid of step {step} px on {H}×{W} has {len(ys)}×{len(xs)} points, not "
                         f"num_tokens={num_tokens}; use a grid count (e.g. 25, 49, 100, 196 at 224²) or layout='spot'")
    return torch.tensor([(y, x) for y in ys for x in xs], dtype=torch.float64)


_LAYOUTS = {"spot": isotropic_layout, "release": release_grid_layout}


def _check_layout(layout) -> None:
    if layout not in _LAYOUTS:
        raise ValueError(f"unknown grid layout {layout!r}; accepted: {', '.join(_LAYOUTS)}")


def _layout(layout: str, num_tokens: int, image_size, generator, batch_size: int) -> torch.Tensor:
    _check_layout(layout)
    return _LAYOUTS[layout](num_tokens, image_size).to(generator_device(generator)).expand(batch_size, -1, -1)


@register
@dataclass(frozen=True)
class Isotropic(Prior):
    """Even coverage: ``layout="spot"`` is :func:`isotropic_layout` (any m), ``"release"`` :func:`release_grid_layout`."""

    name: ClassVar[str] = "isotropic"
    deterministic: ClassVar[bool] = True
    layout: str = "spot"

    def validate(self):
        _check_layout(self.layout)
        return self

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        return _layout(self.layout, num_tokens, tuple(batch.image_size), generator, batch.batch_size)


@register
@dataclass(frozen=True)
class Center(Prior):
    """The Isotropic layout pulled towards the image centre: ``δ' = δ·(1 − exp(−(δ/scale)²))`` per axis."""

    name: ClassVar[str] = "center"
    deterministic: ClassVar[bool] = True
    scale: float = 0.2
    layout: str = "spot"  # the Isotropic layout that is warped ("release": the release's grid)

    def validate(self):
        _checks.number(self.scale, "Center prior: scale", above=0)
        _check_layout(self.layout)
        return self

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        base = _layout(self.layout, num_tokens, tuple(batch.image_size), generator, batch.batch_size)
        d = base - 0.5
        return 0.5 + d * (1.0 - torch.exp(-((d / self.scale) ** 2)))


def _saliency_maps(saliency, batch_size: int, image_size) -> torch.Tensor:
    if saliency is None:
        raise ValueError("this prior samples from a saliency map: pass saliency=(H, W) or (B, H, W) tensor")
    if not isinstance(saliency, torch.Tensor):
        raise ValueError(f"saliency must be a torch.Tensor of shape (H, W) or (B, H, W), got {type(saliency).__name__}")
    maps = saliency.detach().to(torch.float64)
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() != 3 or tuple(maps.shape[-2:]) != tuple(image_size):
        raise ValueError(
            f"saliency must have shape {tuple(image_size)} or (B, {image_size[0]}, {image_size[1]}) to match "
            f"image_size, got {tuple(saliency.shape)}; resize the map to the image first"
        )
    if maps.shape[0] not in (1, batch_size):
        raise ValueError(f"saliency has {maps.shape[0]} maps for a batch of {batch_size}; give one map or one per image")
    if not torch.isfinite(maps).all() or (maps < 0).any():
        raise ValueError("saliency values must be finite and ≥ 0")
    return maps.expand(batch_size, -1, -1)


def _sample_from_maps(weights: torch.Tensor, num_tokens: int, generator) -> torch.Tensor:
    """Draw pixels ∝ weights (B, H, W) with replacement, plus U[0, 1) jitter inside the pixel."""
    B, H, W = weights.shape
    flat = weights.reshape(B, H * W)
    empty = flat.sum(1, keepdim=True) <= 0
    flat = torch.where(empty, torch.ones_like(flat), flat)  # an all-zero map gives uniform placement
    idx = torch.multinomial(flat.to(generator_device(generator)), num_tokens, replacement=True, generator=generator)
    rows = torch.div(idx, W, rounding_mode="floor")
    cols = idx % W
    jitter = _rand((B, num_tokens, 2), generator)
    return torch.stack(((rows + jitter[..., 0]) / H, (cols + jitter[..., 1]) / W), dim=-1)


def _soften(maps: torch.Tensor, blur: float, floor: float) -> torch.Tensor:
    """Each map (B, H, W) blurred by a Gaussian of σ = ``blur`` × the shorter image side (zeros outside the image),
    normalised to sum 1, then mixed with the uniform distribution: ``(1 − floor)·M + floor/(H·W)``. An all-zero map
    becomes uniform."""
    B, H, W = maps.shape
    if blur > 0:
        sigma = blur * min(H, W)
        radius = max(1, math.ceil(3 * sigma))
        x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
        k = torch.exp(-0.5 * (x / sigma) ** 2)
        k = k / k.sum()
        m = torch.nn.functional.conv2d(maps[:, None], k.view(1, 1, 1, -1), padding=(0, radius))
        maps = torch.nn.functional.conv2d(m, k.view(1, 1, -1, 1), padding=(radius, 0))[:, 0]
    total = maps.sum(dim=(1, 2), keepdim=True)
    maps = torch.where(total > 0, maps / total.clamp_min(1e-300), torch.full_like(maps, 1.0 / (H * W)))
    return (1.0 - floor) * maps + floor / (H * W)


def _inverse_cdf(mass: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse CDF of piecewise-constant densities: ``mass`` (..., n) ≥ 0 per unit cell (each row sums to > 0),
    ``u`` (..., m) in [0, 1] → coordinates (..., m) in [0, n], linear inside each cell."""
    cdf = torch.cumsum(mass, dim=-1)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf / cdf[..., -1:]], dim=-1)  # (..., n + 1)
    cell = (torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True) - 1).clamp(0, mass.shape[-1] - 1)
    lo, hi = cdf.gather(-1, cell), cdf.gather(-1, cell + 1)
    frac = torch.where(hi > lo, (u - lo) / (hi - lo).clamp_min(1e-300), torch.full_like(u, 0.5))
    # the clamp only catches rounding (u lies in [lo, hi)); its value, with the gradient of the unclamped line, so a
    # point on a cell boundary (an even layout on an even map) still moves with the map (a learned map trains)
    frac = frac + (frac.clamp(0.0, 1.0) - frac).detach()
    return cell.to(u.dtype) + frac


def transport_layout(layout: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The points of a layout (m, 2) in [0, 1] moved through each map's distribution (B, H, W) (Knothe–Rosenblatt:
    the row coordinate through the inverse CDF of the row marginal, the column coordinate through the inverse CDF of
    that row's conditional) → (B, m, 2): an even layout becomes one spread over the map's mass, as dense as the map,
    deterministic per map. A uniform map gives the layout back."""
    B, H, W = weights.shape
    u = layout.to(weights).expand(B, -1, -1)
    rows = _inverse_cdf(weights.sum(2), u[..., 0])  # (B, m) in [0, H]
    r = rows.floor().long().clamp(0, H - 1)
    conditional = weights.gather(1, r[..., None].expand(-1, -1, W))  # (B, m, W): the row each point landed in
    empty = conditional.sum(-1, keepdim=True) <= 0
    conditional = torch.where(empty, torch.ones_like(conditional), conditional)
    cols = _inverse_cdf(conditional, u[..., 1:2])[..., 0]  # each point its own conditional
    return torch.stack((rows / H, cols / W), dim=-1)


SALIENT_LAYOUTS = ("transport", "sample")


@register
@dataclass(frozen=True)
class Salient(Prior):
    """Tokens on the salient regions of each image's saliency map, softened by a Gaussian blur (σ = ``blur`` × the
    shorter image side) and a uniform ``floor`` share: ``layout="transport"`` moves the Isotropic layout through the map's distribution
    (:func:`transport_layout`: even coverage of the salient region, no draw), ``"sample"`` draws i.i.d. pixels from
    it with sub-pixel jitter (the literal reading; tokens pile up inside the region and miss its outline)."""

    name: ClassVar[str] = "salient"
    needs_saliency: ClassVar[bool] = True
    # chosen on the embedded preset's validation split (the prior_selection table: the best Acc@1 averaged over the
    # backbones and budgets; i.i.d. draws and sharper maps lose there)
    layout: str = "transport"
    blur: float = 0.2
    floor: float = 0.5

    def validate(self):
        if self.layout not in SALIENT_LAYOUTS:
            raise ValueError(f"Salient prior: layout must be one of {', '.join(SALIENT_LAYOUTS)}, got {self.layout!r}")
        _checks.number(self.blur, "Salient prior: blur", at_least=0, meaning=" (σ as a fraction of the image side)")
        _checks.number(self.floor, "Salient prior: floor", at_least=0, below=1, meaning=" (the uniform share)")
        return self

    @property
    def random(self) -> bool:  # type: ignore[override]
        return self.layout == "sample"

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        size = tuple(batch.image_size)
        maps = _soften(_saliency_maps(batch.saliency, batch.batch_size, size), float(self.blur), float(self.floor))
        if self.layout == "sample":
            return _sample_from_maps(maps, num_tokens, generator)
        return transport_layout(isotropic_layout(num_tokens, size), maps).to(generator_device(generator))


@register
@dataclass(frozen=True)
class Background(Prior):
    name: ClassVar[str] = "background"
    needs_saliency: ClassVar[bool] = True

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        maps = _saliency_maps(batch.saliency, batch.batch_size, tuple(batch.image_size))
        inverted = maps.amax(dim=(1, 2), keepdim=True) - maps
        return _sample_from_maps(inverted, num_tokens, generator)


@register
@dataclass(frozen=True)
class Boundary(Prior):
    """Edge bias (Table 6): per axis ``sign(u)(1 − |u|^exponent)`` mapped to [0, 1], clamped to [margin, 1 − margin]."""

    name: ClassVar[str] = "boundary"
    exponent: float = 10.0
    margin: float = 0.01

    def validate(self):
        _checks.number(self.exponent, "Boundary prior: exponent", above=0)
        _checks.number(self.margin, "Boundary prior: margin", at_least=0, below=0.5)
        return self

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        u = 2.0 * _rand((batch.batch_size, num_tokens, 2), generator) - 1.0
        v = torch.sign(u) * (1.0 - u.abs() ** self.exponent)
        return ((v + 1.0) / 2.0).clamp(self.margin, 1.0 - self.margin)


class _PriorRegistry(Mapping):
    """The spatial priors by name: the registered placements that are :class:`Prior` s, in registration order — a
    live view of :data:`~spot.core.placement.PLACEMENTS`, so a prior registered anywhere is one at once."""

    def __getitem__(self, name: str) -> type[Prior]:
        cls = PLACEMENTS[name]
        if not issubclass(cls, Prior):
            raise KeyError(name)
        return cls

    def __iter__(self):
        return (name for name, cls in PLACEMENTS.items() if issubclass(cls, Prior))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"PRIORS({', '.join(self)})"


PRIORS: Mapping[str, type[Prior]] = _PriorRegistry()


def make_prior(prior, **settings) -> Prior:
    """A spatial prior by name (case-insensitive; the release's names too) or mapping, with optional settings, or a
    ``Prior`` as is (see :func:`spot.core.placement.make_placement`); a placement that is not one of the paper's priors
    is a ValueError."""
    name = prior.get("name") if isinstance(prior, dict) else prior
    if isinstance(name, str) and name.lower() not in PRIORS and name.lower() not in RELEASE_NAMES:
        raise ValueError(f"unknown prior {name!r}; accepted: {', '.join(PRIORS)} (or the release's names "
                         f"{', '.join(RELEASE_NAMES)})")
    p = make_placement(prior, **settings)
    if not isinstance(p, Prior):
        raise ValueError(f"{p.label!r} is a placement but not a spatial prior; priors: {', '.join(PRIORS)} (or the "
                         f"release's names {', '.join(RELEASE_NAMES)})")
    return p


def sample_positions(prior, num_tokens: int, batch_size: int, image_size, generator: torch.Generator | None = None,
                     saliency: torch.Tensor | None = None, *, device=None, dtype: torch.dtype | None = None,
                     **settings) -> torch.Tensor:
    """Sample (B, m, 2) token positions (y, x) in [0, 1] from a spatial prior.

    Args:
        prior: a name from ``PRIORS`` (``uniform, gaussian, sobol, isotropic, center, salient, background, boundary``)
            or a ``Prior`` instance; ``**settings`` are that prior's fields (e.g. ``scale=0.3`` for Center).
        num_tokens: m ≥ 1.
        batch_size: B ≥ 1.
        image_size: (H, W) or an int; the Isotropic/Center layouts follow its aspect ratio and saliency maps must
            have this size.
        generator: a ``torch.Generator``; the same generator state gives the same positions.
        saliency: (H, W) or (B, H, W) non-negative map, required by Salient and Background.
        device, dtype: of the result (default: the generator's device, float64 like all positions in ``spot``).
    """
    p = make_prior(prior, **settings)
    _checks.num_tokens_value(num_tokens)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int ≥ 1, got {batch_size!r}")
    size = _checks.image_size_of(image_size)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if saliency is not None and not p.needs_saliency:
        raise ValueError(f"prior {p.name!r} does not use a saliency map; pass saliency only to salient/background")
    out = p.sample(num_tokens, ImageBatch(size, batch_size, saliency=saliency), generator)
    return out.to(device=device if device is not None else out.device, dtype=dtype or torch.float64)
