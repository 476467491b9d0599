"""SPoT-ON (§3.2, Eq. 3): oracle-guided neighbourhood search over token positions, and the placements it makes.

``oracle_search(model, images, labels, init_positions, lr, steps)`` freezes the encoder and moves the positions of
every image by gradient descent on the classification loss of the labels. As placements (:mod:`spot.core.placement`) —
registered, so a config or :func:`spot.core.placement.place` can name them — the search starts from another placement
(``init``):

* ``spot_on`` — Eq. 3 for the true labels;
* ``spot_on_ascent`` — Eq. 3 maximised: the worst placement the search finds (Table 6);
* ``spot_on_random_label`` — Eq. 3 for a label drawn uniformly at random per image (Table 6's label obfuscation);
* ``spot_on_random_target`` — Eq. 3 for a *wrong* label drawn uniformly per image: whether the search reaches it
  measures how far positions alone steer the classifier (the steerability control);
* ``spot_on_label_free`` — the positions that minimise the entropy of the prediction, no label used: what better
  placement buys without the answer (the label-free control).

Also here: the saliency score of a placement (Eq. 4) and the relative saliency gain (Eq. 5).
"""
from __future__ import annotations

import contextlib

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ...core.placement import ImageBatch, ImageStreams, Placement, make_placement, register
from ...settings.oracle import SearchSetting, _is_int
from ...core.tokenizer import extract_windows

__all__ = ["SearchSetting", "oracle_search", "SpotOn", "SpotOnAscent", "SpotOnRandomLabel", "SpotOnRandomTarget",
           "SpotOnLabelFree", "OBJECTIVES", "random_other_labels", "image_targets", "correct", "pooled", "saliency_scores",
           "relative_saliency_gain"]

OBJECTIVES = ("cross_entropy", "entropy")  # of the labels (Eq. 3); of the prediction itself (no label)


def oracle_search(model, images: torch.Tensor, labels: torch.Tensor, init_positions: torch.Tensor, lr: float,
                  steps: int, *, ascent: bool = False, objective: str = "cross_entropy",
                  record_trajectory: bool = False):
    """SPoT-ON (Eq. 3): optimise the token positions of every image for its label, the encoder frozen.

    The model's parameters get ``requires_grad_(False)`` and the model is put in eval mode for the search (both are
    restored afterwards; no gradient is ever accumulated on a parameter). The only leaf is a float64 copy of the
    positions, one set per image — (B, m, 2), an (m, 2) or (1, m, 2) init is shared as the start of every image.

    Each step: ``loss = cross_entropy(model(images, positions), labels, reduction="sum")`` (with
    ``objective="entropy"`` the summed entropy of the predicted distributions instead; ``labels`` is then unused and
    may be None), one
    ``torch.optim.AdamW([positions], lr=lr, weight_decay=0)`` step — gradient descent, or ascent (the loss maximised)
    with ``ascent=True`` — then the positions are clamped to [0, 1].

    * ``weight_decay=0``: AdamW's default of 0.01 would decay the positions towards (0, 0), the top-left corner,
      which has no meaning for a coordinate.
    * sum over the batch: the model treats images independently (eval mode, per-sample LayerNorm), so the gradient of
      the sum w.r.t. image i's positions is exactly the gradient of image i's own loss; a mean would scale it by 1/B.
      Adam normalises per coordinate, so the step is (up to its ε = 1e-8) the same either way, but with the sum it is
      *exactly* the single-image search: the result does not depend on the batch size or on the other images.

    Returns the final positions (B, m, 2) float64 (no grad), and with ``record_trajectory`` also the trajectory
    (steps + 1, B, m, 2) float64, whose entry 0 is the init and entry ``steps`` the final positions.
    """
    init = _start(images, labels, init_positions, lr, steps, objective)
    positions = init.expand(images.shape[0], -1, -1).clone().requires_grad_(True)
    labels = labels.to(images.device) if labels is not None else None
    trajectory = [positions.detach().clone()] if record_trajectory else None
    with _frozen(model):
        opt = torch.optim.AdamW([positions], lr=float(lr), weight_decay=0.0)
        sign = -1.0 if ascent else 1.0
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = _objective(model(images, positions).float(), labels, objective)
            (sign * loss).backward()
            opt.step()
            with torch.no_grad():
                positions.clamp_(0.0, 1.0)
            if record_trajectory:
                trajectory.append(positions.detach().clone())
    final = positions.detach()
    if record_trajectory:
        return final, torch.stack(trajectory)
    return final


def _start(images, labels, init_positions, lr, steps, objective) -> torch.Tensor:
    """The checked search settings' start: the init as float64 (1 or B, m, 2) on the images' device."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"oracle lr must be a number > 0, got {lr!r}")
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"oracle steps must be an int ≥ 1, got {steps!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"oracle objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if objective == "cross_entropy" and labels is None:
        raise ValueError("oracle_search with objective='cross_entropy' needs labels")
    if not isinstance(init_positions, torch.Tensor) or init_positions.shape[-1:] != (2,) or \
            init_positions.dim() not in (2, 3):
        raise ValueError("init_positions must be a tensor of shape (B, m, 2) or (m, 2) holding (y, x) in [0, 1]")
    B = images.shape[0]
    init = init_positions.detach().to(device=images.device, dtype=torch.float64)
    if init.dim() == 2:
        init = init[None]
    if init.shape[0] not in (1, B):
        raise ValueError(f"init_positions have batch size {init.shape[0]} but images have {B}")
    return init


@contextlib.contextmanager
def _frozen(model):
    """The model in eval mode with no parameter requiring a gradient, both restored afterwards."""
    params = list(model.parameters())
    grad_flags = [p.requires_grad for p in params]
    was_training = model.training
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, flag in zip(params, grad_flags):
            p.requires_grad_(flag)
        model.train(was_training)


def _objective(logits: torch.Tensor, labels, objective: str) -> torch.Tensor:
    if objective == "entropy":
        logp = F.log_softmax(logits, dim=-1)
        return -(logp.exp() * logp).sum()
    return F.cross_entropy(logits, labels, reduction="sum")


def random_other_labels(labels: torch.Tensor, num_classes: int, generator=None) -> torch.Tensor:
    """A label ≠ the true one per image, uniform over the other ``num_classes − 1`` classes."""
    if num_classes < 2:
        raise ValueError(f"a random other label needs ≥ 2 classes, got {num_classes}")
    shift = torch.randint(1, num_classes, tuple(labels.shape), generator=generator)
    return (labels.cpu() + shift) % num_classes


def image_targets(search, batch: ImageBatch, seed: int, split: str) -> torch.Tensor:
    """A random-target search's labels for every image of ``batch``, each from the image's own stream
    ``spot-oracle-targets/<search>/<seed>/<split>/<image>``: the same draw for the oracle's tables, its blank-image
    copy and the cross-model control, whatever the batch size."""
    streams = ImageStreams("spot-oracle-targets", search.name, seed, split)
    return torch.cat([search.targets(batch.image(j), streams.generator(int(i))) for j, i in enumerate(batch.indices)])


@dataclass(frozen=True)
class _Search(Placement):
    """A search from ``init`` (a placement) with AdamW at ``lr`` for ``steps`` steps (Eq. 3)."""

    needs_model: ClassVar[bool] = True
    ascent: ClassVar[bool] = False
    objective: ClassVar[str] = "cross_entropy"
    random_targets: ClassVar[bool] = False  # targets() draws labels (from the generator it is given)
    init: object = "isotropic"
    lr: float = 1e-2
    steps: int = 10

    def __post_init__(self):
        object.__setattr__(self, "init", make_placement(self.init))

    def validate(self):
        SearchSetting(self.lr, self.steps).validate(self.name)
        return self

    @property
    def needs_saliency(self) -> bool:  # type: ignore[override]
        return self.init.needs_saliency

    def targets(self, batch: ImageBatch, generator=None) -> torch.Tensor:
        """The labels the search aims at: the batch's own."""
        return batch.labels

    def search(self, batch: ImageBatch, init_positions: torch.Tensor, targets: torch.Tensor, *,
               record_trajectory: bool = False):
        """The search from given start positions towards given targets (what :meth:`sample` does after drawing
        them): the final positions, and with ``record_trajectory`` every step."""
        return oracle_search(batch.model, batch.images, targets, init_positions, self.lr, self.steps,
                             ascent=self.ascent, objective=self.objective, record_trajectory=record_trajectory)

    def sample(self, num_tokens, batch: ImageBatch, generator=None):
        init = self.init.sample(num_tokens, batch, None if self.init.deterministic else generator)
        return self.search(batch, init.to(batch.images.device), self.targets(batch, generator))


@register
@dataclass(frozen=True)
class SpotOn(_Search):
    """SPoT-ON: the positions that minimise the loss of the true labels (Eq. 3)."""

    name: ClassVar[str] = "spot_on"


@register
@dataclass(frozen=True)
class SpotOnAscent(_Search):
    """The positions that maximise the loss of the true labels (Table 6's "Ascent")."""

    name: ClassVar[str] = "spot_on_ascent"
    ascent: ClassVar[bool] = True


@register
@dataclass(frozen=True)
class SpotOnRandomLabel(_Search):
    """SPoT-ON towards a label drawn uniformly at random per image (Table 6's "label obfuscation")."""

    name: ClassVar[str] = "spot_on_random_label"
    random_targets: ClassVar[bool] = True

    def targets(self, batch: ImageBatch, generator=None) -> torch.Tensor:
        classes = int(batch.model.num_classes)
        return torch.randint(0, classes, (batch.batch_size,), generator=generator).to(batch.images.device)


@register
@dataclass(frozen=True)
class SpotOnRandomTarget(_Search):
    """SPoT-ON towards a wrong label drawn uniformly per image: the steerability control (does the search make the
    model say whatever it is asked to?)."""

    name: ClassVar[str] = "spot_on_random_target"
    random_targets: ClassVar[bool] = True

    def targets(self, batch: ImageBatch, generator=None) -> torch.Tensor:
        return random_other_labels(batch.labels, int(batch.model.num_classes), generator).to(batch.images.device)


@register
@dataclass(frozen=True)
class SpotOnLabelFree(_Search):
    """The positions that minimise the entropy of the model's prediction (no label used): the label-free control."""

    name: ClassVar[str] = "spot_on_label_free"
    objective: ClassVar[str] = "entropy"

    def targets(self, batch: ImageBatch, generator=None):
        return None


@torch.no_grad()
def pooled(model, images, positions) -> torch.Tensor:
    """The pooled (pre-logits) features at these positions (eval mode): what kNN classifies."""
    was_training = model.training
    model.eval()
    try:
        return model.pooled_features(images, positions)
    finally:
        model.train(was_training)


@torch.no_grad()
def correct(model, images, labels, positions) -> torch.Tensor:
    """(B,) bool: whether the model classifies each image correctly with these positions (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        return model(images, positions).argmax(-1) == labels
    finally:
        model.train(was_training)


def saliency_scores(maps: torch.Tensor, positions: torch.Tensor, window: int) -> torch.Tensor:
    """Eq. 4: the mean saliency in a ``window``×``window`` pixel window centred on each token → (B, m).

    ``maps`` (B, H, W) or (H, W); the window is read with :func:`~spot.core.tokenizer.extract_windows` on the map as a
    one-channel image (bilinear, zeros outside the image — the tokenizer's own windows).
    """
    if maps.dim() == 2:
        maps = maps[None]
    maps = maps.to(device=positions.device, dtype=torch.float32)
    windows = extract_windows(maps[:, None], positions.detach(), window)  # (B, m, 1, k, k)
    return windows.mean(dim=(-3, -2, -1))


def relative_saliency_gain(score_init, score_final):
    """Eq. 5 in percent: ``100·(score_final − score_init)/score_init`` — floats (NaN when the initial score is 0),
    or tensors of per-trajectory scores (elementwise; NaN where the initial score is 0)."""
    if isinstance(score_init, torch.Tensor):
        score_init, score_final = score_init.double(), torch.as_tensor(score_final).double()
        gain = 100.0 * (score_final - score_init) / score_init
        return torch.where(score_init == 0, torch.full_like(gain, float("nan")), gain)
    return float("nan") if score_init == 0 else 100.0 * (score_final - score_init) / score_init


