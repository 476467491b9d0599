"""The ``spot oracle`` and ``spot transfer`` experiments: open the models and data, run (the runner writes the
tables, :mod:`spot.experiments.protocol`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ...config import settings_from_dict
from ..protocol import Outcome, experiment, experiment_settings, model_arguments
from ...results import input_checksums, parse_model_args
from ...settings.evaluation import EvaluationSettings
from .settings import OracleSettings, TransferSettings
from .tables import ROW_COLUMNS, TABLES, KnnBank, _parse_tables, oracle_experiments
from .trajectories import write_trajectories
from .transfer import TRANSFER_COLUMNS, transfer
from ...weights.checkpoints import open_checkpoint
from ...data.evaluation import EvalData

__all__ = ["run_oracle", "run_transfer"]


def _oracle_arguments(p) -> None:
    model_arguments("oracle", variants=True)(p)
    p.add_argument("--tables", default=",".join(TABLES),
                   help="comma-separated subset of %(default)s (Figure 4's trajectories are always written when "
                        "oracle.trajectories.images > 0)")


def _setup(args, config: dict):
    """(oracle settings, saliency settings, evaluation settings, device): the oracle shares the evaluation's image
    protocol (``crop_mode``) and kNN bank."""
    oracle, saliency, device = experiment_settings(args, config, OracleSettings, "oracle")
    evaluation = settings_from_dict(EvaluationSettings, config.get("evaluation"), "evaluation").validate()
    return oracle, saliency, evaluation, device


def _open_models(paths: dict, oracle: OracleSettings, data_root, device, crop_mode: str = "center"):
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
            "preset": config.get("preset"), "backbone": getattr(args, "backbone", None),
            "models": {n: str(p) for n, p in paths.items()}, "data": str(args.data), "limit": oracle.limit, **extra}


@experiment("oracle", kind="oracle", columns=ROW_COLUMNS, arguments=_oracle_arguments,
            help="SPoT-ON: per-image gradient search over token positions (Tables 1, 2, 3, 5, 6; Figure 4 "
                 "trajectories)",
            example="spot oracle --config config.yaml --backbone cls_in1k --model spot=models/cls_in1k_spot1"
                    ".safetensors --data results/embedded/data --out oracle.csv --limit 100")
def run_oracle(args, config: dict) -> Outcome:
    """``spot oracle``: the ``oracle:`` section's tables on every model; Figure 4's trajectories beside the table."""
    oracle, saliency, evaluation, device = _setup(args, config)
    tables = _parse_tables(args.tables)
    paths = parse_model_args(args.model)
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
    traj_path = write_trajectories(Path(args.out).with_suffix(".trajectories.npz"), trajectories)
    return Outcome(rows, settings=_provenance_config(config, oracle, saliency, paths, args, tables=list(tables)),
                   inputs=input_checksums(paths, args.data), seed=oracle.seed, device=device,
                   extra={"normalisation": norms, "trajectories": traj_path.name if traj_path else None,
                          "subsets": subsets},
                   summary=f" (and {traj_path})" if traj_path else "")


@experiment("transfer", kind="transfer", columns=TRANSFER_COLUMNS, arguments=model_arguments("oracle", variants=False),
            help="oracle positions of one model evaluated on the others (Table 4); each --model is named by its "
                 "backbone, at least two",
            example="spot transfer --config config.yaml --model cls_in1k=models/cls_in1k_spot1.safetensors "
                    "--model mae_in1k=models/mae_in1k_spot1.safetensors --data results/embedded/data "
                    "--out transfer.csv")
def run_transfer(args, config: dict) -> Outcome:
    """``spot transfer``: the ``transfer:`` section on ≥ 2 models, each named by its backbone."""
    oracle, saliency, evaluation, device = _setup(args, config)
    settings = settings_from_dict(TransferSettings, config.get("transfer"), "transfer").validate()
    paths = parse_model_args(args.model)
    if len(paths) < 2:
        raise ValueError(f"spot transfer needs at least 2 models (--model A=… --model B=…), got {len(paths)}")
    models, norms, datas = _open_models(paths, oracle, args.data, device, evaluation.crop_mode)
    rows = transfer(models, datas, settings, oracle, saliency=saliency, log=print)
    return Outcome(rows, settings=_provenance_config(config, oracle, saliency, paths, args,
                                                     transfer=dataclasses.asdict(settings)),
                   inputs=input_checksums(paths, args.data), seed=oracle.seed, device=device,
                   extra={"normalisation": norms, "subsets": {f"{n}:{d.split}": d.subset for n, d in datas.items()}})
