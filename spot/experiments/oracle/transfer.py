"""Table 4: SPoT-ON positions found on one model evaluated on another (§4.4), at every budget, and the same for
positions searched towards random targets (the cross-model controls)."""
from __future__ import annotations

import time

import torch

from ...core.placement import ImageBatch, ImageStreams, make_placement, place
from .search import SpotOnRandomTarget, correct, image_targets, oracle_search
from .settings import OracleSettings, TransferSettings
from .tables import NO_OUTCOMES, OUTCOME_COLUMNS, _Tally
from ..saliency import SaliencySettings
from ..saliency import saliency_maps

__all__ = ["transfer", "TRANSFER_COLUMNS"]

TRANSFER_COLUMNS = ("experiment", "source", "target", "variant", "method", "placement", "init", "budget", "setting",
                    "seed", "metric", "value", "n_images", *OUTCOME_COLUMNS)


def _lockstep(datas: dict, batch_size: int):
    """Iterate several ``EvalData`` (one per model; shared objects are read once) in step: yields
    ``({name: images}, labels, indices)``; the datasets must hold the same images in the same order."""
    unique = {}
    for name, d in datas.items():
        unique.setdefault(id(d), d)
    ns = {d.n for d in unique.values()}
    if len(ns) != 1:
        raise ValueError(f"the models' evaluation data differ in size ({sorted(ns)} images): give them the same "
                         "data folder, split and limit")
    iters = {k: iter(d.batches(batch_size)) for k, d in unique.items()}
    while True:
        got = {}
        for k, it in iters.items():
            try:
                got[k] = next(it)
            except StopIteration:
                return
        first = next(iter(got.values()))
        for images, labels, indices in got.values():
            if not torch.equal(labels, first[1]) or not torch.equal(indices, first[2]) or \
                    images.shape[-2:] != first[0].shape[-2:]:
                raise ValueError("the models' evaluation data hold different images (labels, order or size differ); "
                                 "all models of a transfer must be evaluated on the same images")
        yield {name: got[id(d)][0] for name, d in datas.items()}, first[1], first[2]


def transfer(models: dict, data, settings: TransferSettings, oracle: OracleSettings, *, saliency=None,
             log=None) -> list[dict]:
    """Table 4 and the cross-model controls: for every source model A, SPoT-ON positions S_A from ``transfer.prior``
    (the main oracle setting), evaluated on every other model B — at ``transfer.budget`` (Table 4) and every other
    budget of ``transfer.budgets``; with ``transfer.random_target`` also the positions R_A searched on A towards a
    random wrong label per image (the oracle's steerability control, the same draws), evaluated on every model.

    ``models``: name → classifying SPoTViT (on its device); ``data``: one ``EvalData``, or name → ``EvalData`` (each
    model's own normalisation of the same images). Every model starts from the same S_0 (drawn once per batch with
    ``oracle.seed`` for a stochastic prior, the oracle's own start).

    Rows per budget and ordered pair A → B: ``original_acc1`` (B at S_0), ``transfer_acc1`` (B at S_A) and
    ``transfer_delta`` = transfer − original, in points: an *improvement* is positive. (The paper's Eq. 6 writes
    Δ = E[g_A(I, S_0) = y] − E[g_A(I, S_B) = y], whose sign is the opposite of the ↑ gains it reports; we use the
    reported convention.) Per model A also ``oracle_acc1`` (source = target = A: A at its own S_A). With random
    targets, per pair A → B (B = A included: the steerability of A itself) ``random_target_rate``: the share of
    images for which B outputs A's target at R_A, and ``random_target_rate_init``: B outputs it at S_0 (chance).
    ``experiment`` is ``table4`` for Table 4's rows (its budget, true labels), ``controls`` for the others. Every row
    but ``transfer_delta`` is a proportion of images and carries ``n_correct``, ``ci_low``, ``ci_high`` (95 % Wilson,
    %) and ``outcomes`` (per image, in the evaluated subset's order: :func:`spot.stats.decode_outcomes`);
    ``transfer_delta`` carries the paired 95 % interval (points) in ``ci_low`` / ``ci_high``.
    """

    datas = _checked(models, data, settings, oracle)
    saliency = saliency if saliency is not None else SaliencySettings()
    s = oracle.main
    prior = make_placement(settings.prior)
    names = list(models)
    split = datas[names[0]].split
    tally = _Tally(is_proportion=lambda key: True)  # every tallied key is a 0/1 per image (Acc@1, a target's rate)
    t0 = time.time()
    for images, labels, indices in _lockstep({n: datas[n] for n in names}, oracle.batch_size):
        B, size = labels.shape[0], tuple(next(iter(images.values())).shape[-2:])
        sal = None
        if prior.needs_saliency:
            sal = saliency_maps(datas[names[0]], indices, saliency).float()
        dev = {n: next(m.parameters()).device for n, m in models.items()}
        x = {n: images[n].to(dev[n]) for n in names}
        y = {n: labels.to(dev[n]) for n in names}
        targets = None
        if settings.random_target:  # the oracle's own random wrong labels for these images (per-image streams)
            first = ImageBatch(size, B, images=images[names[0]], labels=labels, model=models[names[0]],
                               indices=indices.tolist())
            targets = image_targets(SpotOnRandomTarget(), first, oracle.seed, split)
        for m in settings.all_budgets:
            # the same start as the oracle's for these images (its per-image streams)
            streams = ImageStreams("spot-oracle", prior.label, m, oracle.seed, split)
            init = place(prior, m, ImageBatch(size, B, saliency=sal, indices=indices.tolist()), streams)
            _tally_pairs(tally, m, models, x, y, init, s)
            if targets is not None:
                _tally_pairs(tally, m, models, x, {n: targets for n in names}, init, s, random_target=True)
    if log is not None:
        n = tally.count(("original", settings.budget, names[0]))
        log(f"transfer: {len(names)} models, {n} images, budgets {settings.all_budgets} in {time.time() - t0:.1f} s")
    return _transfer_rows(tally, names, settings, prior, s, oracle.seed)


def _checked(models: dict, data, settings: TransferSettings, oracle: OracleSettings) -> dict:
    """The settings validated, and each model's evaluation data (name → EvalData)."""
    if not isinstance(models, dict) or len(models) < 2:
        raise ValueError(f"transfer needs at least 2 models (source and target), got {len(models or {})}")
    settings.validate()
    oracle.validate()
    datas = data if isinstance(data, dict) else {name: data for name in models}
    missing = sorted(set(models) - set(datas))
    if missing:
        raise ValueError(f"no evaluation data for model(s) {missing}")
    return datas


def _tally_pairs(tally: _Tally, m: int, models: dict, x: dict, y: dict, init, s, random_target: bool = False):
    """One batch at budget m: every model at the start ``init``, every source A's search from it, and every model B
    at A's positions — towards the labels ``y`` (the oracle and Table 4), or towards the random wrong labels (the
    steerability control: A's target reached by B, B = A included)."""
    dev = {n: next(model.parameters()).device for n, model in models.items()}
    kind = ("target_init", "target") if random_target else ("original", "transfer")
    for b in models:
        tally.add((kind[0], m, b), correct(models[b], x[b], y[b].to(dev[b]), init.to(dev[b])))
    for a in models:
        s_a = oracle_search(models[a], x[a], y[a].to(dev[a]), init.to(dev[a]), s.lr, s.steps)
        if not random_target:
            tally.add(("oracle", m, a), correct(models[a], x[a], y[a].to(dev[a]), s_a))
        for b in models:
            if b != a or random_target:
                tally.add((kind[1], m, a, b), correct(models[b], x[b], y[b].to(dev[b]), s_a.to(dev[b])))


def _transfer_rows(tally: _Tally, names: list, settings: TransferSettings, prior, s, seed) -> list[dict]:
    """The rows of every budget and pair: proportions with their uncertainty columns (``tally.columns``), and
    ``transfer_delta`` (a difference of two on the same images: its paired interval, no count or outcomes)."""
    rows = []
    for m in settings.all_budgets:
        base = dict(experiment="table4" if m == settings.budget else "controls", variant="spot", method="spot",
                    placement="spot_on", init=prior.label, budget=m, setting=s.label,
                    seed=seed if prior.random else None)
        for a in names:
            rows.append(dict(base, source=a, target=a, metric="oracle_acc1", **tally.columns(("oracle", m, a))))
            for b in names:
                if b == a:
                    continue
                original, moved = tally.columns(("original", m, b)), tally.columns(("transfer", m, a, b))
                rows.append(dict(base, source=a, target=b, metric="original_acc1", **original))
                rows.append(dict(base, source=a, target=b, metric="transfer_acc1", **moved))
                low, high = tally.paired(("transfer", m, a, b), ("original", m, b))  # the same images
                rows.append(dict(base, source=a, target=b, metric="transfer_delta",
                                 **{**NO_OUTCOMES, "ci_low": low, "ci_high": high}, value=moved["value"] - original["value"], n_images=moved["n_images"]))
            if ("target", m, a, a) not in tally.sums:
                continue
            for b in names:
                for metric, key in (("random_target_rate", ("target", m, a, b)),
                                    ("random_target_rate_init", ("target_init", m, b))):
                    rows.append(dict(base, experiment="controls", placement=SpotOnRandomTarget.name, seed=seed,
                                     source=a, target=b, metric=metric, **tally.columns(key)))
    return [{k: r[k] for k in TRANSFER_COLUMNS} for r in rows]
