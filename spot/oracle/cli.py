"""The ``spot oracle`` and ``spot transfer`` commands: open the models and data, run, write the tables."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .. import results as _results
from ..config import config_layers
from .settings import OracleSettings, TransferSettings
from .tables import TABLES, KnnBank, _parse_tables, oracle_experiments
from .trajectories import write_trajectories
from .transfer import transfer

__all__ = ["configure_parser", "run_from_args", "configure_transfer_parser", "run_transfer_from_args"]


def configure_parser(p) -> None:
    """``spot oracle``: Tables 1, 2, 3, 5 (SPoT-ON rows), 6 and Figure 4's trajectories."""
    _results.add_experiment_arguments(p, "oracle", variants=True)
    p.add_argument("--tables", default=",".join(TABLES),
                   help="comma-separated subset of %(default)s (Figure 4's trajectories are always written when "
                        "oracle.trajectories.images > 0)")


def configure_transfer_parser(p) -> None:
    """``spot transfer``: Table 4 (≥ 2 models, each named by its backbone)."""
    _results.add_experiment_arguments(p, "oracle", variants=False)


def _setup(args):
    """(config, oracle settings, saliency settings, evaluation settings, device): the oracle shares the evaluation's
    image protocol (``crop_mode``) and kNN bank."""
    from ..config import settings_from_dict
    from ..evaluate import EvaluationSettings

    config, oracle, saliency, device = _results.experiment_settings(args, OracleSettings, "oracle")
    evaluation = settings_from_dict(EvaluationSettings, config.get("evaluation"), "evaluation").validate()
    return config, oracle, saliency, evaluation, device


def _open_models(paths: dict, oracle: OracleSettings, data_root, device, crop_mode: str = "center"):
    from ..checkpoints import open_checkpoint
    from ..data.evaluation import EvalData

    models, norms, datas, opened = {}, {}, {}, {}
    for name, path in paths.items():
        checkpoint = open_checkpoint(path, classifier=True, name=name)
        (mean, std), model = checkpoint.normalisation, checkpoint.model.to(device).eval()
        models[name], norms[name] = model, (list(mean), list(std))
        img = model.image_size[0] if model.image_size else 224
        key = (tuple(mean), tuple(std), img)
        if key not in opened:  # models sharing a normalisation share one EvalData
            opened[key] = EvalData.open(data_root, oracle.split, mean=mean, std=std, limit=oracle.limit,
                                        subset_seed=oracle.subset_seed, img_size=img, crop_mode=crop_mode)
        datas[name] = opened[key]
    return models, norms, datas


def _knn_banks(evaluation, models: dict, datas: dict, data_root, oracle: OracleSettings) -> dict:
    """{model name: KnnBank} — the evaluation's kNN bank (``evaluation.knn``, ``evaluation.subset_seed``) opened with
    each model's normalisation (models sharing one share the images, not the encoded features)."""
    from ..data.evaluation import EvalData

    knn = evaluation.knn
    opened, banks = {}, {}
    for name, data in datas.items():
        img = models[name].image_size[0] if models[name].image_size else 224
        key = (data.mean, data.std, img)
        if key not in opened:
            opened[key] = EvalData.open(data_root, knn.train_split, mean=data.mean, std=data.std,
                                        limit=knn.train_limit, subset_seed=evaluation.subset_seed, img_size=img,
                                        crop_mode=evaluation.crop_mode)
        banks[name] = KnnBank(opened[key], knn, batch_size=oracle.batch_size)
    return banks


def _provenance_config(config: dict, oracle, saliency, paths, args, **extra) -> dict:
    return {"oracle": dataclasses.asdict(oracle), "saliency": dataclasses.asdict(saliency),
            "preset": config.get("preset"), "config_files": config_layers(args), "backbone": getattr(args, "backbone", None),
            "models": {n: str(p) for n, p in paths.items()}, "data": str(args.data), "limit": oracle.limit, **extra}


def run_from_args(args) -> int:
    """``spot oracle --config … [--backbone NAME] --model VARIANT=PATH … --data DIR --out OUT.csv [--limit N]
    [--tables …]``."""
    from ..results import input_checksums, write_table

    started = time.time()
    config, oracle, saliency, evaluation, device = _setup(args)
    tables = _parse_tables(args.tables)
    paths = _results.parse_model_args(args.model)
    models, norms, datas = _open_models(paths, oracle, args.data, device, evaluation.crop_mode)
    banks = _knn_banks(evaluation, models, datas, args.data, oracle) if oracle.knn and "5" in tables else {}
    rows, trajectories = [], {}
    for name, model in models.items():
        r, t = oracle_experiments(model, datas[name], oracle, backbone=args.backbone, variant=name, tables=tables,
                                  saliency=saliency, knn_bank=banks.get(name), log=print)
        rows.extend(r)
        trajectories[args.backbone if len(models) == 1 else f"{args.backbone} ({name})"] = t
    subsets = {f"{name}:{d.split}": d.subset for name, d in datas.items()}
    subsets.update({f"{name}:knn_bank:{b.data.split}": b.data.subset for name, b in banks.items()})
    out = Path(args.out)
    traj_path = write_trajectories(out.with_suffix(".trajectories.npz"), trajectories)
    write_table(rows, out, config=_provenance_config(config, oracle, saliency, paths, args, tables=list(tables)),
                inputs=input_checksums(paths, args.data), seed=oracle.seed, device=device, started=started,
                extra={"normalisation": norms, "trajectories": traj_path.name if traj_path else None,
                       "subsets": subsets})
    print(f"wrote {out} ({len(rows)} rows){f' and {traj_path}' if traj_path else ''}")
    return 0


def run_transfer_from_args(args) -> int:
    """``spot transfer --config … --model A=… --model B=… [--model C=…] --data DIR --out OUT.csv [--limit N]``
    (the names are the backbones)."""
    from ..config import settings_from_dict
    from ..results import input_checksums, write_table

    started = time.time()
    config, oracle, saliency, evaluation, device = _setup(args)
    settings = settings_from_dict(TransferSettings, config.get("transfer"), "transfer").validate()
    paths = _results.parse_model_args(args.model)
    if len(paths) < 2:
        raise ValueError(f"spot transfer needs at least 2 models (--model A=… --model B=…), got {len(paths)}")
    models, norms, datas = _open_models(paths, oracle, args.data, device, evaluation.crop_mode)
    rows = transfer(models, datas, settings, oracle, saliency=saliency, log=print)
    out = Path(args.out)
    write_table(rows, out, config=_provenance_config(config, oracle, saliency, paths, args,
                                                     transfer=dataclasses.asdict(settings)),
                inputs=input_checksums(paths, args.data), seed=oracle.seed, device=device, started=started,
                extra={"normalisation": norms, "subsets": {f"{n}:{d.split}": d.subset for n, d in datas.items()}})
    print(f"wrote {out} ({len(rows)} rows)")
    return 0
