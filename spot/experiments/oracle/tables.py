"""The oracle's tables: SPoT-ON on every batch of the evaluation images, one small function per table.

:func:`oracle_experiments` walks the images once; per batch, :class:`_Batch` computes each start placement and each
search once and shares them between the tables (Table 1's search at the sparse budget is Table 5's, Figure 4's …).
Every measurement is tallied per image under the key of the row it becomes.

Row schema (:data:`ROW_COLUMNS`): ``experiment`` (``table1`` … ``table6``, ``controls``), ``backbone``, ``variant``,
``method`` (``spot``: the SPoT model's tokenizer), ``placement`` (a prior's label for the start positions, or a
search: ``spot_on``, ``spot_on_ascent``, ``spot_on_random_label``, ``spot_on_random_target``,
``spot_on_label_free``), ``init`` (the start of a search; empty otherwise), ``positions`` (``placed``, or
``snapped`` to grid-cell centres), ``budget``, ``setting`` (``lr=0.01,steps=10``, or ``none``), ``seed`` (set where
a number depends on a random draw), ``metric``, ``value``, ``n_images``, and for the proportions of images
(:data:`PROPORTIONS`) ``n_correct``, ``ci_low``, ``ci_high`` (95 % Wilson, %) and ``outcomes`` (which images were
counted, in the order of the evaluated subset: :func:`spot.stats.decode_outcomes`). The other rows leave
``n_correct`` and ``outcomes`` empty and carry in ``ci_low`` / ``ci_high`` the 95 % interval over images of their
mean (the tokens of one image are not independent: :func:`spot.stats.ratio_interval`), the paired interval of a
delta or drop (the same images), or nothing (``rsg_median``).
In percent: the proportions — accuracies (``acc1``, ``knn``, ``blank_acc1`` on blank images), ``target_rate`` (the
share of images whose output is the search's random target) and ``target_rate_init`` (the same at the start:
chance) — and the deltas, drops, RSG and ``cells_changed`` (a share of tokens, not of images); saliency scores are in
[0, 1], displacements in pixels.

The blank images (``oracle.controls.blank``): by default each image phase-scrambled (:func:`phase_scrambled`: its
amplitude spectrum and mean kept, the object gone — every blank image differs), or one constant canvas for all
(``background`` or ``mean``: one image searched towards each label — an effective sample of as many cases as there
are classes, whatever the number of images).

Random draws come from per-image streams (:class:`spot.core.placement.ImageStreams`): a stochastic start from
``spot-oracle/<placement>/<budget>/<seed>/<split>/<image>``, a random target label from
``spot-oracle-targets/<search>/<seed>/<split>/<image>``, a scrambled blank image's noise from
``spot-oracle-blank/<seed>/<split>/<image>`` — independent of the batch size, of each other and of which tables run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ...core.placement import ImageBatch, ImageStreams, make_placement, place
from ...core.positions import grid_cell_index, snap_to_grid, to_pixels
from ...stats import outcome_columns, paired_difference, ratio_interval
from .search import (SearchSetting, SpotOn, SpotOnAscent, SpotOnLabelFree, SpotOnRandomLabel, SpotOnRandomTarget,
                     correct, image_targets, pooled, relative_saliency_gain, saliency_scores)
from .settings import OracleSettings
from ..saliency import SaliencySettings
from ..evaluate import knn_classify
from ..saliency import saliency_maps

__all__ = ["TABLES", "ROW_COLUMNS", "PROPORTIONS", "BLANK_STREAM", "KnnBank", "oracle_experiments",
           "phase_scrambled"]

TABLES = ("1", "2", "3", "5", "6", "controls")
# proportions of images: tallied 0/1 per image, reported in % with their uncertainty columns
PROPORTIONS = ("acc1", "knn", "blank_acc1", "target_rate", "target_rate_init")
OUTCOME_COLUMNS = ("n_correct", "ci_low", "ci_high", "outcomes")  # a proportion's uncertainty (spot.stats)
NO_OUTCOMES = dict.fromkeys(OUTCOME_COLUMNS)  # the same columns left empty: rows that are not proportions
ROW_COLUMNS = ("experiment", "backbone", "variant", "method", "placement", "init", "positions", "budget", "setting",
               "seed", "metric", "value", "n_images", *OUTCOME_COLUMNS)
ISOTROPIC = "isotropic"
BLANK_STREAM = "spot-oracle-blank"  # the per-image streams of the scrambled blank images


@dataclass(frozen=True)
class _Key:
    """The row a tallied value becomes (without backbone, variant, method, seed: the same for a whole run)."""

    experiment: str
    placement: str
    budget: int
    metric: str
    init: str = ""
    positions: str = "placed"
    setting: str = "none"


class _Tally:
    """Running sums of per-image values (per-token values: (B, m)) with the number of images they came from; the
    metrics in ``keep_values`` also keep every value (for a median), and the keys for which ``is_proportion(key)``
    holds — proportions of images, one 0/1 per image — every image's outcome, in the order the batches come in (the
    evaluated subset's order), for their uncertainty columns (:func:`spot.stats.outcome_columns`)."""

    def __init__(self, keep_values=(), is_proportion=lambda key: False):
        self.sums: dict = {}
        self.images: dict = {}
        self.keep_values = set(keep_values)
        self.values: dict = {}
        self.is_proportion = is_proportion
        self.outcomes: dict = {}  # key → [(B,) bool numpy array per batch]
        self.per_image: dict = {}  # key (not a proportion) → [((B,) sums, (B,) counts) per batch]

    def add(self, key, values: torch.Tensor, n_images: int | None = None) -> None:
        """Tally ``values`` (B,) or (B, m) of one batch's B images (NaN: no value for that token, left out)."""
        values = values.detach().double()
        valid = ~torch.isnan(values)
        kept = values[valid]
        s, n = self.sums.get(key, (0.0, 0))
        self.sums[key] = (s + float(kept.sum()), n + int(kept.numel()))
        self.images[key] = self.images.get(key, 0) + (values.shape[0] if n_images is None else n_images)
        if getattr(key, "metric", None) in self.keep_values:
            self.values.setdefault(key, []).append(kept.reshape(-1).cpu())
        if self.is_proportion(key):
            self.outcomes.setdefault(key, []).append(_outcomes(key, values))
        else:  # each image's sum and count: the interval over images (spot.stats.ratio_interval)
            per_image = torch.where(valid, values, torch.zeros_like(values)).reshape(values.shape[0], -1)
            self.per_image.setdefault(key, []).append(
                (per_image.sum(1).cpu().numpy(), valid.reshape(values.shape[0], -1).sum(1).cpu().numpy()))

    def mean(self, key) -> float:
        s, n = self.sums[key]
        return s / n if n else float("nan")

    def count(self, key) -> int:
        """How many images the values of ``key`` came from."""
        return self.images[key]

    def median(self, key: _Key) -> float:
        values = torch.cat(self.values[key]).numpy() if self.values.get(key) else np.zeros(0)
        return float(np.median(values)) if len(values) else float("nan")

    def image_sums(self, key) -> tuple[np.ndarray, np.ndarray]:
        """Each image's sum of values and number of values of a key that is not a proportion."""
        parts = self.per_image[key]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def interval(self, key) -> tuple[float, float]:
        """The 95 % interval over images of the mean of a key that is not a proportion (the tokens of one image are
        not independent: :func:`spot.stats.ratio_interval` of each image's sum over its count)."""
        i = ratio_interval(*self.image_sums(key))
        return i.low, i.high

    def paired(self, a, b) -> tuple[float, float]:
        """The 95 % interval (points) of proportion ``a`` − proportion ``b`` over the same images, paired."""
        d = paired_difference(*(np.concatenate(self.outcomes[k]) for k in (a, b)))
        return d.low, d.high

    def columns(self, key) -> dict:
        """A row's ``value``, ``n_images`` and uncertainty columns: a proportion's from its per-image outcomes (the
        value in %), any other key's mean with the interval over images (:meth:`interval`; no count or outcomes)."""
        if key in self.outcomes:
            return outcome_columns(np.concatenate(self.outcomes[key]))
        low, high = self.interval(key)
        return {"value": self.mean(key), "n_images": self.count(key), **NO_OUTCOMES, "ci_low": low, "ci_high": high}


def _outcomes(key, values: torch.Tensor) -> np.ndarray:
    """(B,) bool: the per-image 0/1 values of a proportion's key."""
    flat = values.detach().cpu()
    if flat.dim() != 1 or not bool(((flat == 0) | (flat == 1)).all()):
        raise ValueError(f"{key}: a proportion takes one 0/1 value per image, got shape {tuple(flat.shape)}")
    return flat.numpy().astype(bool)


@dataclass
class KnnBank:
    """Table 5's SPoT-ON kNN reference (our procedure; the paper reports these numbers without saying how): the
    evaluation's memory bank (``evaluation.knn``: its split and stratified subset) encoded at the Isotropic prior's
    positions for each budget — the very bank ``spot evaluate`` uses for SPoT Isotropic — against which the pooled
    features at the oracle's final positions are classified (DINO's weighted kNN)."""

    data: object  # EvalData of evaluation.knn.train_split, normalised as the model
    settings: object  # spot.experiments.evaluate.KnnSettings
    batch_size: int = 250
    _features: dict = field(default_factory=dict)

    @torch.no_grad()
    def features(self, model, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(bank features (N, D) float32, labels (N,)) at the Isotropic positions of ``budget`` tokens."""
        if budget not in self._features:
            device = next(model.parameters()).device
            feats, labels = [], []
            for images, y, _ in self.data.batches(self.batch_size):
                batch = ImageBatch(tuple(images.shape[-2:]), len(y), device=device)
                feats.append(pooled(model, images.to(device), place(ISOTROPIC, budget, batch)).float())
                labels.append(y.to(device))
            self._features[budget] = (torch.cat(feats), torch.cat(labels))
        return self._features[budget]

    def accuracy(self, model, budget: int, queries: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(Q,) bool: whether the kNN vote of each query feature gives its label."""

        bank, bank_labels = self.features(model, budget)
        classes = max(int(model.num_classes or 0), int(bank_labels.max()) + 1, int(labels.max()) + 1)
        k = self.settings
        preds = knn_classify(bank, bank_labels, queries, k=k.k, temperature=k.temperature, num_classes=classes,
                             chunk_size=k.chunk_size)
        return preds == labels.to(preds.device)


class _Run:
    """What the batches of one model share: the model, settings, the Figure 4 trajectories being collected."""

    def __init__(self, model, data, settings: OracleSettings, saliency):
        self.model, self.data, self.settings, self.saliency = model, data, settings, saliency
        self.search = settings.search_settings()
        main = self.search[settings.main_setting]
        self.trajectory_search = SpotOn(init=ISOTROPIC, lr=main.lr, steps=main.steps)
        self.trajectory_indices = data.index[:settings.trajectories.images]  # Figure 4: the first N images
        self.trajectory_parts: list = []
        self.placements: dict = {}  # label → placement of every start placed so far (the rows name them by label)

    def searches(self, kind=SpotOn, init=ISOTROPIC, setting: int | None = None):
        s = self.search[self.settings.main_setting if setting is None else setting]
        return kind(init=init, lr=s.lr, steps=s.steps)

    def in_trajectories(self, indices: torch.Tensor) -> torch.Tensor:
        """(B,) bool: which of these split indices are among Figure 4's images."""
        return torch.isin(indices.cpu(), self.trajectory_indices)

    def trajectories(self) -> dict | None:
        if not self.trajectory_parts:
            return None
        parts, s = self.trajectory_parts, self.trajectory_search
        return dict(positions=torch.cat([p["positions"] for p in parts], dim=1).numpy(),
                    **{k: torch.cat([p[k] for p in parts]).numpy()
                       for k in ("labels", "indices", "initial_correct", "final_correct")},
                    prior=ISOTROPIC, budget=self.settings.sparse_budget, lr=s.lr, steps=s.steps)


class _Batch:
    """One batch of images and everything the tables share about it — start positions per (placement, budget),
    search results per (search, budget), saliency maps — each computed once."""

    def __init__(self, run: _Run, images, labels, indices, is_blank: bool = False):
        self.run, self.images, self.labels, self.indices = run, images, labels, indices
        self.B, self.size = images.shape[0], tuple(images.shape[-2:])
        self.is_blank = is_blank  # the blank-image control's copy: never records Figure 4's trajectories
        self._start, self._found, self._maps, self._blank = {}, {}, None, None

    def maps(self) -> torch.Tensor:
        if self._maps is None:
            self._maps = saliency_maps(self.run.data, self.indices.cpu(), self.run.saliency).float()
        return self._maps

    def image_batch(self, needs_saliency: bool = False) -> ImageBatch:
        return ImageBatch(self.size, self.B, saliency=self.maps() if needs_saliency else None,
                          patch=self.run.model.patch_size, images=self.images, labels=self.labels,
                          model=self.run.model, indices=self.indices.tolist(), device=self.images.device)

    def start(self, spec, budget: int) -> torch.Tensor:
        """The positions of a (start) placement: (1, m, 2) when deterministic, else (B, m, 2)."""
        p = make_placement(spec)
        key = (p.label, budget)
        self.run.placements[p.label] = p
        if key not in self._start:
            s = self.run.settings
            streams = ImageStreams("spot-oracle", p.label, budget, s.seed, self.run.data.split)
            self._start[key] = place(p, budget, self.image_batch(p.needs_saliency), streams)
        return self._start[key]

    def targets(self, search) -> torch.Tensor | None:
        """The labels a search aims at: the batch's own, a random draw per image (its own stream: the same draw
        whichever tables run, and the same for the blank images and the cross-model control), or None (label-free)."""
        if not getattr(search, "random_targets", False):
            return search.targets(self.image_batch())
        key = ("targets", search.name)
        if key not in self._found:
            self._found[key] = image_targets(search, self.image_batch(), self.run.settings.seed, self.run.data.split)
        return self._found[key]

    def found(self, search, budget: int) -> torch.Tensor:
        """The final positions of a search (a SPoT-ON placement) at ``budget``, from its start placement."""
        key = (search.label, budget)
        if key not in self._found:
            s = self.run.settings
            record = not self.is_blank and search == self.run.trajectory_search and budget == s.sparse_budget and \
                bool(self.run.in_trajectories(self.indices).any())
            out = search.search(self.image_batch(), self.start(search.init, budget), self.targets(search),
                                record_trajectory=record)
            if record:
                out, trajectory = out
                self._keep_trajectory(trajectory, out)
            self._found[key] = out
        return self._found[key]

    def blank(self) -> "_Batch":
        """The same batch with the content removed (``oracle.controls.blank``), labels and indices kept."""
        if self._blank is None:
            self._blank = _Batch(self.run, self._blank_images(), self.labels, self.indices, is_blank=True)
        return self._blank

    def _blank_images(self) -> torch.Tensor:
        """``scrambled``: each image phase-scrambled (:func:`phase_scrambled`, its own stream); ``background``: every
        pixel the normalised background (the canvas' 0); ``mean``: the normalised mean colour (0)."""
        kind, data = self.run.settings.controls.blank, self.run.data
        if kind == "scrambled":
            streams = ImageStreams(BLANK_STREAM, self.run.settings.seed, data.split)
            return phase_scrambled(self.images, self.indices, streams)
        dtype = self.images.dtype
        fill = torch.zeros(len(data.mean), dtype=dtype) if kind == "mean" else \
            -torch.tensor(data.mean, dtype=dtype) / torch.tensor(data.std, dtype=dtype)
        return torch.zeros_like(self.images) + fill.reshape(-1, 1, 1).to(self.images.device)

    def correct(self, positions) -> torch.Tensor:
        return correct(self.run.model, self.images, self.labels, positions)

    def _keep_trajectory(self, trajectory: torch.Tensor, final: torch.Tensor) -> None:
        keep = self.run.in_trajectories(self.indices).to(self.images.device)
        self.run.trajectory_parts.append(dict(
            positions=trajectory[:, keep].float().cpu(), labels=self.labels[keep].cpu(),
            indices=self.indices[keep.cpu()], initial_correct=self.correct(trajectory[0])[keep].cpu(),
            final_correct=self.correct(final)[keep].cpu()))


def phase_scrambled(images: torch.Tensor, indices, streams: ImageStreams) -> torch.Tensor:
    """Each image (B, C, H, W) with the phases of its 2-D Fourier transform replaced by those of white noise drawn
    from its own stream (``streams.generator(index)``: the same result whatever the batch), one noise image shared
    by the channels (their colours stay coherent); each channel keeps its amplitude spectrum, and the zero frequency
    its own phase (the sign of its mean: a normalised mean may be negative), so the mean, the contrast and the
    spatial frequencies stay and the object goes. The inverse transform's real part, in the images' dtype."""
    size = tuple(images.shape[-2:])
    noise = torch.stack([torch.randn(size, generator=streams.generator(int(i)), dtype=torch.float64)
                         for i in indices])
    phase = torch.angle(torch.fft.fft2(noise.to(images.device)))[:, None].expand(images.shape).clone()
    spectrum = torch.fft.fft2(images.double())
    phase[..., 0, 0] = torch.angle(spectrum[..., 0, 0])
    return torch.fft.ifft2(spectrum.abs() * torch.exp(1j * phase)).real.to(images.dtype)


# ------------------------------------------------------------------------------------------------------ the tables

def _table1(b: _Batch, t: _Tally) -> None:
    """Subpixel vs snapped: SPoT and SPoT-ON (every setting) at the sparse budget from Isotropic; how far the tokens
    moved and how many changed grid cell."""
    S, (H, W), patch = b.run.settings.sparse_budget, b.size, b.run.model.patch_size
    start = b.start(ISOTROPIC, S)
    t.add(_Key("table1", ISOTROPIC, S, "acc1"), b.correct(start))
    t.add(_Key("table1", ISOTROPIC, S, "acc1", positions="snapped"), b.correct(snap_to_grid(start, (H, W), patch)))
    cells0 = grid_cell_index(start, (H, W), patch)
    for i, s in enumerate(b.run.search):
        search = b.run.searches(setting=i)
        final = b.found(search, S)
        key = dict(experiment="table1", placement=search.name, budget=S, init=ISOTROPIC, setting=s.label)
        t.add(_Key(metric="acc1", **key), b.correct(final))
        t.add(_Key(metric="acc1", positions="snapped", **key), b.correct(snap_to_grid(final, (H, W), patch)))
        move = (to_pixels(final, (H, W)) - to_pixels(start.expand_as(final), (H, W))).norm(dim=-1)
        t.add(_Key(metric="displacement_px", **key), move)
        t.add(_Key(metric="cells_changed", **key), 100.0 * (grid_cell_index(final, (H, W), patch) != cells0))


def _table2(b: _Batch, t: _Tally) -> None:
    """Every prior at the sparse budget, and SPoT-ON from it for every setting (§4.2's and the paper's implied)."""
    S = b.run.settings.sparse_budget
    for prior in b.run.settings.priors:
        p = make_placement(prior)
        t.add(_Key("table2", p.label, S, "acc1"), b.correct(b.start(p, S)))
        for i, s in enumerate(b.run.search):
            search = b.run.searches(init=p, setting=i)
            t.add(_Key("table2", search.name, S, "acc1", init=p.label, setting=s.label),
                  b.correct(b.found(search, S)))


def _table3(b: _Batch, t: _Tally) -> None:
    """Saliency of the SPoT-ON placement against its Isotropic start (Eq. 4–5), per budget."""
    search, k = b.run.searches(), b.run.settings.saliency_window
    for m in b.run.settings.budgets:
        final = b.found(search, m)
        key = dict(experiment="table3", placement=search.name, budget=m, init=ISOTROPIC, setting=search_label(search))
        before = saliency_scores(b.maps(), b.start(ISOTROPIC, m).expand_as(final), k)
        after = saliency_scores(b.maps(), final, k)
        t.add(_Key(metric="saliency_init", **key), before)
        t.add(_Key(metric="saliency_final", **key), after)
        # Eq. 5 per trajectory (one per token); an initial score of 0 has no relative gain: skipped, and counted
        gain = relative_saliency_gain(before, after)  # (B, m), NaN where skipped
        t.add(_Key(metric="rsg", **key), gain)
        t.add(_Key(metric="rsg_zero_init", **key), 100.0 * torch.isnan(gain).double())


def _table5(b: _Batch, t: _Tally, queries: dict | None) -> None:
    """SPoT (Isotropic) and SPoT-ON from it at every budget: Acc@1, and the features for their kNN."""
    search = b.run.searches()
    for m in b.run.settings.budgets:
        for key, positions in ((_Key("table5", ISOTROPIC, m, "acc1"), b.start(ISOTROPIC, m)),
                               (_Key("table5", search.name, m, "acc1", init=ISOTROPIC, setting=search_label(search)),
                                b.found(search, m))):
            features = pooled(b.run.model, b.images, positions)
            t.add(key, b.run.model.head(features).argmax(-1) == b.labels)
            if queries is not None:
                queries.setdefault(key, ([], []))
                queries[key][0].append(features.float())
                queries[key][1].append(b.labels)


def _table6(b: _Batch, t: _Tally) -> None:
    """Harmful priors and adversarial searches at the sparse budget."""
    S = b.run.settings.sparse_budget
    for prior in (ISOTROPIC, "background", "boundary"):
        t.add(_Key("table6", prior, S, "acc1"), b.correct(b.start(prior, S)))
    for kind in (SpotOnAscent, SpotOnRandomLabel):
        search = b.run.searches(kind)
        t.add(_Key("table6", search.name, S, "acc1", init=ISOTROPIC, setting=search_label(search)),
              b.correct(b.found(search, S)))


def _controls(b: _Batch, t: _Tally) -> None:
    """What SPoT-ON's gain measures, at every budget from Isotropic (``oracle.controls``): the label-free search's
    accuracy; the share of images for which the search towards a random wrong label makes the model output it (and
    the share that already did at the start: chance); SPoT and SPoT-ON on blank images."""
    c, model = b.run.settings.controls, b.run.model
    spot_on = b.run.searches()
    for m in b.run.settings.budgets:
        start = b.start(ISOTROPIC, m)
        key = dict(experiment="controls", budget=m, init=ISOTROPIC, setting=search_label(spot_on))
        t.add(_Key("controls", ISOTROPIC, m, "acc1"), b.correct(start))
        t.add(_Key(placement=spot_on.name, metric="acc1", **key), b.correct(b.found(spot_on, m)))
        if c.label_free:
            search = b.run.searches(SpotOnLabelFree)
            t.add(_Key(placement=search.name, metric="acc1", **key), b.correct(b.found(search, m)))
        if c.random_target:
            search = b.run.searches(SpotOnRandomTarget)
            targets = b.targets(search)
            final = b.found(search, m)
            t.add(_Key(placement=search.name, metric="target_rate", **key), correct(model, b.images, targets, final))
            t.add(_Key(placement=search.name, metric="target_rate_init", **key),
                  correct(model, b.images, targets, start))
            t.add(_Key(placement=search.name, metric="acc1", **key), b.correct(final))
        if c.blank is not None:
            blank = b.blank()
            t.add(_Key("controls", ISOTROPIC, m, "blank_acc1"), blank.correct(blank.start(ISOTROPIC, m)))
            t.add(_Key(placement=spot_on.name, metric="blank_acc1", **key), blank.correct(blank.found(spot_on, m)))


def search_label(search) -> str:
    return SearchSetting(search.lr, search.steps).label


def experiment_name(table: str) -> str:
    """The ``experiment`` column of a table's rows: ``table1`` … ``table6``, ``controls``."""
    return f"table{table}" if table.isdigit() else table


def _parse_tables(tables) -> tuple[str, ...]:
    if isinstance(tables, str):
        tables = [t.strip() for t in tables.split(",") if t.strip()]
    tables = tuple(str(t) for t in tables)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown or not tables:
        raise ValueError(f"unknown table(s) {unknown or tables!r}; accepted: {', '.join(TABLES)} (e.g. --tables 1,2,3)")
    return tables


def oracle_experiments(model, data, settings: OracleSettings, *, backbone: str = "model", variant: str = "spot",
                       tables=TABLES, saliency=None, knn_bank: KnnBank | None = None,
                       log=None) -> tuple[list[dict], dict | None]:
    """Run the oracle tables for one model on one ``EvalData`` → (rows, Figure 4 trajectories or None).

    ``model`` is a classifying :class:`~spot.core.models.SPoTViT` (already on its device; the images go there), ``tables``
    a subset of :data:`TABLES` (the Figure 4 trajectories are recorded whenever ``oracle.trajectories.images`` > 0).
    ``saliency`` is a :class:`~spot.experiments.saliency.SaliencySettings` (default: the article masks), needed by the salient
    and background priors and Table 3. ``knn_bank`` adds Table 5's kNN rows. See the module docs for the rows.

    Trajectories: a dict of numpy arrays ``positions`` float32 (steps + 1, n, m, 2), ``labels`` (n,), ``indices``
    (n,), ``initial_correct`` / ``final_correct`` (n,) bool, and the ``prior``, ``budget``, ``lr``, ``steps``.
    """

    settings.validate()
    tables = _parse_tables(tables)
    saliency = saliency if saliency is not None else SaliencySettings()
    device = next(model.parameters()).device
    run = _Run(model, data, settings, saliency)
    if "3" in tables and settings.saliency_window > min(data.image_size):
        raise ValueError(f"oracle.saliency_window = {settings.saliency_window} is larger than the images "
                         f"{data.image_size}")
    tally = _Tally(keep_values=("rsg",), is_proportion=lambda key: key.metric in PROPORTIONS)
    queries = {} if knn_bank is not None and "5" in tables else None
    runners = {"1": _table1, "2": _table2, "3": _table3, "5": lambda b, t: _table5(b, t, queries), "6": _table6,
               "controls": _controls}
    if not settings.controls.any:  # every control switched off: no controls rows at all
        tables = tuple(t for t in tables if t != "controls")
    t0 = time.time()
    for images, labels, indices in data.batches(settings.batch_size):
        batch = _Batch(run, images.to(device), labels.to(device), indices)
        for table in TABLES:
            if table in tables:
                runners[table](batch, tally)
        if bool(run.in_trajectories(indices).any()):
            batch.found(run.trajectory_search, settings.sparse_budget)
    for key, (features, labels) in (queries or {}).items():
        knn = _Key(key.experiment, key.placement, key.budget, "knn", key.init, key.positions, key.setting)
        tally.add(knn, knn_bank.accuracy(model, key.budget, torch.cat(features), torch.cat(labels)))
    if log is not None:
        log(f"oracle {backbone}: {data.n} images, tables {','.join(tables)} in {time.time() - t0:.1f} s")
    return _rows(tally, run, backbone=backbone, variant=variant), run.trajectories()


# ------------------------------------------------------------------------------------------------------ rows

_RANDOM_TARGETS = (SpotOnRandomLabel.name, SpotOnRandomTarget.name)


def _rows(tally: _Tally, run: _Run, *, backbone: str, variant: str) -> list[dict]:
    rows, settings = [], run.settings

    def _random(key: _Key) -> bool:
        """Whether the number depends on a random draw: a stochastic start, or random target labels."""
        start = run.placements[key.init or key.placement]
        return start.random or key.placement in _RANDOM_TARGETS

    def value_of(key: _Key) -> float:
        return tally.columns(key)["value"]

    def row(key: _Key, metric=None, value=None, interval=(float("nan"), float("nan"))):
        """The row of a tallied key, or a derived ``metric`` of it (``value`` given, with its ``interval``)."""
        numbers = tally.columns(key) if value is None else dict(value=value, n_images=tally.count(key), **NO_OUTCOMES)
        if value is not None:
            numbers["ci_low"], numbers["ci_high"] = interval
        rows.append(dict(experiment=key.experiment, backbone=backbone, variant=variant, method="spot",
                         placement=key.placement, init=key.init, positions=key.positions, budget=key.budget,
                         setting=key.setting, seed=settings.seed if _random(key) else None,
                         metric=metric or key.metric, **numbers))

    for key in list(tally.sums):
        row(key)
        if key.experiment == "table2" and key.init:
            start = _Key("table2", key.init, key.budget, "acc1")
            row(key, metric="oracle_delta", value=value_of(key) - value_of(start), interval=tally.paired(key, start))
        if key.experiment == "table3" and key.metric == "rsg":
            row(key, metric="rsg_median", value=tally.median(key))  # a median: no interval
            init, final = (_Key(**{**key.__dict__, "metric": m}) for m in ("saliency_init", "saliency_final"))
            ratio = ratio_interval(tally.image_sums(final)[0], tally.image_sums(init)[0])  # Σ final / Σ initial
            row(key, metric="rsg_ratio_of_means", value=relative_saliency_gain(tally.mean(init), tally.mean(final)),
                interval=(100.0 * (ratio.low - 1), 100.0 * (ratio.high - 1)))
        if key.experiment == "table6" and key.placement != ISOTROPIC:
            base = _Key("table6", ISOTROPIC, key.budget, "acc1")
            low, high = tally.paired(base, key)
            row(key, metric="drop_vs_isotropic", value=value_of(base) - value_of(key), interval=(low, high))
    order = [experiment_name(t) for t in TABLES]
    rows = sorted(rows, key=lambda r: order.index(r["experiment"]))  # stable: each table keeps its own order
    return [{k: r[k] for k in ROW_COLUMNS} for r in rows]
