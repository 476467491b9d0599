"""Table 4: SPoT-ON positions found on one model evaluated on another (§4.4)."""
from __future__ import annotations

import time

import torch

from ..placement import ImageBatch, ImageStreams, make_placement, place
from .search import correct, oracle_search
from .settings import OracleSettings, TransferSettings
from .tables import _Tally

__all__ = ["transfer", "TRANSFER_COLUMNS"]

TRANSFER_COLUMNS = ("experiment", "source", "target", "variant", "method", "placement", "init", "budget", "setting",
                    "seed", "metric", "value", "n_images")


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
    """Table 4: for every source model A, SPoT-ON positions S_A from ``transfer.prior`` at ``transfer.budget`` (the
    main oracle setting), evaluated on every other model B.

    ``models``: name → classifying SPoTViT (on its device); ``data``: one ``EvalData``, or name → ``EvalData`` (each
    model's own normalisation of the same images). Every model starts from the same S_0 (drawn once per batch with
    ``oracle.seed`` for a stochastic prior).

    Rows per ordered pair A → B: ``original_acc1`` (B at S_0), ``transfer_acc1`` (B at S_A) and ``transfer_delta`` =
    transfer − original, in points: an *improvement* is positive. (The paper's Eq. 6 writes
    Δ = E[g_A(I, S_0) = y] − E[g_A(I, S_B) = y], whose sign is the opposite of the ↑ gains it reports; we use the
    reported convention.) Per model A also ``oracle_acc1`` (source = target = A: A at its own S_A).
    """
    from ..saliency import SaliencySettings

    if not isinstance(models, dict) or len(models) < 2:
        raise ValueError(f"transfer needs at least 2 models (source and target), got {len(models or {})}")
    settings.validate()
    oracle.validate()
    saliency = saliency if saliency is not None else SaliencySettings()
    datas = data if isinstance(data, dict) else {name: data for name in models}
    missing = sorted(set(models) - set(datas))
    if missing:
        raise ValueError(f"no evaluation data for model(s) {missing}")
    s = oracle.main
    prior = make_placement(settings.prior)
    names = list(models)
    split = datas[names[0]].split
    streams = ImageStreams("spot-oracle", prior.label, settings.budget, oracle.seed, split)
    tally = _Tally()
    t0 = time.time()
    for images, labels, indices in _lockstep({n: datas[n] for n in names}, oracle.batch_size):
        B, size = labels.shape[0], tuple(next(iter(images.values())).shape[-2:])
        sal = None
        if prior.needs_saliency:
            from ..saliency import saliency_maps

            sal = saliency_maps(datas[names[0]], indices, saliency).float()
        # the same start as the oracle's for these images (its per-image streams)
        init = place(prior, settings.budget, ImageBatch(size, B, saliency=sal, indices=indices.tolist()), streams)
        dev = {n: next(m.parameters()).device for n, m in models.items()}
        x = {n: images[n].to(dev[n]) for n in names}
        y = {n: labels.to(dev[n]) for n in names}
        for b in names:
            tally.add(("original", b), correct(models[b], x[b], y[b], init.to(dev[b])))
        for a in names:
            s_a = oracle_search(models[a], x[a], y[a], init.to(dev[a]), s.lr, s.steps)
            tally.add(("oracle", a), correct(models[a], x[a], y[a], s_a))
            for b in names:
                if b != a:
                    tally.add(("transfer", a, b), correct(models[b], x[b], y[b], s_a.to(dev[b])))
    if log is not None:
        log(f"transfer: {len(names)} models, {tally.count(('original', names[0]))} images in {time.time() - t0:.1f} s")
    seed = oracle.seed if not prior.deterministic else None
    base = dict(experiment="table4", variant="spot", method="spot", placement="spot_on", init=prior.label,
                budget=settings.budget, setting=s.label)
    rows = []
    for a in names:
        n = tally.count(("oracle", a))
        rows.append(dict(base, source=a, target=a, metric="oracle_acc1", value=100.0 * tally.mean(("oracle", a)),
                         n_images=n, seed=seed))
        for b in names:
            if b == a:
                continue
            original = 100.0 * tally.mean(("original", b))
            moved = 100.0 * tally.mean(("transfer", a, b))
            for metric, value in (("original_acc1", original), ("transfer_acc1", moved),
                                  ("transfer_delta", moved - original)):
                rows.append(dict(base, source=a, target=b, metric=metric, value=value, n_images=n, seed=seed))
    return [{k: r[k] for k in TRANSFER_COLUMNS} for r in rows]


