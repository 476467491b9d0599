"""Token placement: every way of choosing where a model's m tokens go, behind one interface and one name registry.

    positions = place("center", 25, ImageBatch(image_size=(224, 224), batch_size=8))          # (1, 25, 2): shared
    positions = place({"name": "center", "scale": 0.3}, 25, batch)                            # with a setting
    positions = place("uniform", 25, batch, ImageStreams("spot-evaluate", seed, "val"))       # (B, 25, 2)

A *placement* is a frozen dataclass whose fields are its settings and whose ``sample(m, batch, generator)`` returns
float64 positions (B, m, 2) — (y, x) in [0, 1] — for an :class:`ImageBatch` (image size, and where needed the
saliency maps, the patch grid, the images, labels and model). They are registered by name (:data:`PLACEMENTS`):

* the eight spatial priors of the paper (:mod:`spot.core.placement.priors`): uniform, gaussian, sobol, isotropic, center,
  salient, background, boundary — and the release's names for them (``grid_center`` …);
* grid placements (:mod:`spot.core.placement.grid`): ``grid`` (every patch), ``grid_random`` (m distinct random patches:
  PatchDropout's and the grid control's), ``grid_even`` (m distinct patches nearest the Isotropic layout),
  ``snapped`` (another placement moved to grid-cell centres), ``jittered`` (a layout moved within its cells:
  retrofitting);
* a learned placement (:mod:`spot.core.placement.learned`): ``learned:<checkpoint>``, the positions a trained glance
  policy (:mod:`spot.core.policy`) gives each image;
* searched placements, registered by their modules: SPoT-ON (:mod:`spot.experiments.oracle`).

A config names a placement as a string or as a mapping ``{name: center, scale: 0.3}``; :attr:`Placement.label` is
the name back, with the settings that differ from the defaults (``center(scale=0.3)``) — the ``placement`` column of
every result table.

**One seeding scheme.** Random draws come from named streams: :class:`ImageStreams` gives each image its own
generator, seeded from a name ``namespace/key…/image index`` alone — so positions do not depend on the batch size or
on which other measurements run. The evaluation names its streams ``spot-evaluate/seed/split/index`` (common random
numbers: every stochastic placement and budget of one seed sees the same stream of an image, so comparisons between
them are paired); the oracle ``spot-oracle/placement/budget/seed/split/index`` (independent per placement and budget).
Training draws from its own sequential generator (a ``torch.Generator`` passed as the streams), shared with the
augmentation, as a resumable training state must. Importable without torch (the workflow checks configs with it).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import ClassVar

from ..._lazy import lazy

torch = lazy("torch")

__all__ = ["Placement", "ImageBatch", "ImageStreams", "PLACEMENTS", "RELEASE_NAMES", "register", "make_placement",
           "placement_label", "place", "check_placement", "PRIORS", "Prior", "make_prior", "sample_positions",
           "isotropic_layout", "release_grid_layout", "transport_layout", "random_patch_subset", "even_grid_cells"]


@dataclass(frozen=True)
class ImageBatch:
    """What a placement may look at for a batch of images: their size and count, and where a placement needs them
    the saliency maps (B, H, W), the model's patch size, the (normalised) images, labels and the model."""

    image_size: tuple
    batch_size: int = 1
    saliency: object = None
    patch: tuple | None = None
    images: object = None
    labels: object = None
    model: object = None
    indices: object = None  # the images' indices in their split: what per-image streams are keyed by
    device: object = None  # where the positions go (default: where they were drawn)

    def image(self, j: int) -> "ImageBatch":
        """The batch of image ``j`` alone."""
        def one(x):
            return None if x is None else x[j:j + 1]

        return dataclasses.replace(self, batch_size=1, saliency=one(self.saliency), images=one(self.images),
                                   labels=one(self.labels), indices=one(self.indices))


@dataclass(frozen=True)
class ImageStreams:
    """One generator per image, seeded from the name ``namespace/key…/index`` alone (blake2b)."""

    namespace: str
    key: tuple = ()

    def __init__(self, namespace: str, *key):
        object.__setattr__(self, "namespace", namespace)
        object.__setattr__(self, "key", tuple(key))

    def generator(self, index: int):
        name = "/".join(str(part) for part in (self.namespace, *self.key, int(index)))
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


@dataclass(frozen=True)
class Placement:
    """Base class of every placement: its fields are its settings (validated by :meth:`validate`)."""

    name: ClassVar[str] = ""
    deterministic: ClassVar[bool] = False  # the same positions for every image and call (drawn once, shared)
    needs_saliency: ClassVar[bool] = False
    needs_patch: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False  # searched placements: the batch's images, labels and model
    needs_images: ClassVar[bool] = False  # placements that look at the images (a learned policy), never the labels
    positional: ClassVar[str | None] = None  # the setting a name written ``name:value`` sets (``learned:<path>``)

    def sample(self, num_tokens: int, batch: ImageBatch, generator=None):
        """Positions (batch.batch_size, m, 2), float64, on the generator's device (the CPU without one)."""
        raise NotImplementedError

    def validate(self) -> "Placement":
        return self

    @property
    def random(self) -> bool:
        """Whether the positions depend on a random draw (a seed): not for a shared layout, nor for a layout computed
        from each image alone (Salient's transported layout)."""
        return not self.deterministic

    @property
    def label(self) -> str:
        return placement_label(self)


PLACEMENTS: dict[str, type[Placement]] = {}

# the authors' release names (official-release.md) → (our placement, the settings that reproduce the release)
RELEASE_NAMES: dict[str, tuple[str, dict]] = {
    "gauss": ("gaussian", {"clamp": True}),
    "grid_uniform": ("isotropic", {"layout": "release"}),
    "grid_center": ("center", {"layout": "release", "scale": 0.2}),
    "edge": ("boundary", {}),
}


def register(cls: type[Placement]) -> type[Placement]:
    """Class decorator: make a placement available by its ``name`` (in configs, :func:`place`, result tables)."""
    if not cls.name or cls.name in PLACEMENTS and PLACEMENTS[cls.name] is not cls:
        raise ValueError(f"placement {cls.__name__} needs a name of its own, got {cls.name!r}")
    PLACEMENTS[cls.name] = cls
    return cls


def make_placement(spec, **settings) -> Placement:
    """A placement from a name (case-insensitive; the release's names too), a mapping ``{name: …, setting: …}``, or
    a :class:`Placement` as is. Unknown names or settings are a ValueError naming what is accepted."""
    if isinstance(spec, Placement):
        if settings:
            raise ValueError("settings can only be given with a placement name, not with a Placement instance")
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"a placement mapping needs a name (e.g. {{name: center, scale: 0.3}}), got {spec!r}")
        return make_placement(spec.pop("name"), **{**spec, **settings})
    if not isinstance(spec, str):
        raise ValueError(f"a placement is a name or a mapping with a name, got {spec!r}")
    name, _, value = spec.partition(":")
    if value:
        cls = PLACEMENTS.get(name.lower())
        if cls is None or cls.positional is None:
            takes = [n for n, c in PLACEMENTS.items() if c.positional]
            raise ValueError(f"placement {spec!r}: only {', '.join(takes) or 'none'} take a value after ':'")
        return make_placement(name, **{cls.positional: value, **settings})
    name = name.lower()
    if name not in PLACEMENTS and name in RELEASE_NAMES:
        name, release = RELEASE_NAMES[name]
        settings = {**release, **settings}
    if name not in PLACEMENTS:
        raise ValueError(f"unknown placement {spec!r}; accepted: {', '.join(PLACEMENTS)} (or the release's names "
                         f"{', '.join(RELEASE_NAMES)})")
    cls = PLACEMENTS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise ValueError(f"placement {name!r} accepts settings {list(fields) or 'none'}, got {unknown}")
    return cls(**{k: _coerce(v, fields[k]) for k, v in settings.items()}).validate()


def _coerce(value, f):
    """A number given as text (YAML reads ``3e-3`` so, Snakemake's --config too) for a numeric setting → the number."""
    default = f.default
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(float(value)) if isinstance(default, float) else int(value)
        except ValueError:
            return value  # the placement's own validation names the problem
    return value


def check_placement(spec, where: str) -> Placement:
    """:func:`make_placement`, its error prefixed with where the spec was found (``evaluation.priors``)."""
    try:
        return make_placement(spec)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from None


def placement_label(p: Placement) -> str:
    """``name``, or ``name(setting=value, …)`` with the settings that differ from the defaults."""
    changed = []
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if isinstance(value, Placement):
            value = value.label
            default = make_placement(default).label if isinstance(default, (str, dict, Placement)) else default
        if value != default:
            changed.append(f"{f.name}={value}")
    return f"{p.name}({', '.join(changed)})" if changed else p.name


def place(spec, num_tokens: int, batch: ImageBatch, streams=None):
    """Positions of ``spec`` for ``batch`` (float64): (1, m, 2) for a deterministic placement (shared by the
    batch), else (B, m, 2) — one batched draw from ``streams`` when it is a ``torch.Generator`` (or None: torch's
    global RNG), one draw per image from its own generator when it is :class:`ImageStreams` (keyed by
    ``batch.indices``)."""
    from ... import _checks

    p = make_placement(spec)
    _checks.num_tokens_value(num_tokens)
    if p.needs_saliency and batch.saliency is None:
        raise ValueError(f"placement {p.label!r} samples from saliency maps: give the batch its maps")
    if p.needs_patch and batch.patch is None:
        raise ValueError(f"placement {p.label!r} places tokens on the patch grid: give the batch the model's patch")
    if p.needs_model and (batch.model is None or batch.images is None):
        raise ValueError(f"placement {p.label!r} searches with a model: give the batch its images, labels and model")
    if p.needs_images and batch.images is None:
        raise ValueError(f"placement {p.label!r} looks at the images: give the batch its images")
    if p.deterministic:
        out = p.sample(num_tokens, dataclasses.replace(batch, batch_size=1), None)
    elif isinstance(streams, ImageStreams):
        if batch.indices is None or len(batch.indices) != batch.batch_size:
            raise ValueError("per-image streams need the batch's image indices (ImageBatch.indices)")
        out = torch.cat([p.sample(num_tokens, batch.image(j), streams.generator(int(i)))
                         for j, i in enumerate(batch.indices)])
    else:
        out = p.sample(num_tokens, batch, streams)
    return out if batch.device is None else out.to(batch.device)


# the placements of this package register themselves on import (searched ones: by their own modules, e.g. spot.experiments.oracle)
from . import grid, learned, priors, relevance  # noqa: E402,F401
from .grid import Grid, GridEven, GridRandom, Jittered, Snapped, even_grid_cells, random_patch_subset  # noqa: E402,F401
from .priors import (PRIORS, Background, Boundary, Center, Gaussian, Isotropic, Prior, Salient, Sobol, Uniform,
                     isotropic_layout, make_prior, release_grid_layout, sample_positions, transport_layout)
