"""The ``spot`` command line. Sub-commands are added stage by stage (data, checkpoints, train, evaluate, …)."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import torch
import yaml

from ..reproduce import audit, compare, publish, spread
from ..weights.checkpoints import fetch_checkpoint, register_official
from ..config import add_config_arguments, config_from_args, config_layers
from ..data import imagenet
from ..data.fmnist import CanvasConfig, build_canvas_dataset, build_plain_dataset
from .demo import run_demo
from ..experiments.protocol import load_experiments, run_command, shared_arguments
from ..provenance import code_version, software_versions
from ..train.recipes import load_recipe
from ..train import NonFiniteLossError, TrainingInterrupted, train


def _demo(args) -> int:
    run_demo(Path(args.out), epochs=args.epochs, retrofit_epochs=args.retrofit_epochs, seed=args.seed, threads=args.threads)
    return 0


def _data_fmnist(args) -> int:
    if args.variant == "plain":
        build_plain_dataset(args.out, val_size=args.val_size, seed=args.seed, fmnist_dir=args.fmnist,
                            download=args.download)
    else:
        cfg = CanvasConfig(canvas_size=args.canvas_size, placement_std=args.placement_std, max_offset=args.max_offset,
                           fragments=args.fragments, val_size=args.val_size)
        build_canvas_dataset(args.out, cfg, seed=args.seed, fmnist_dir=args.fmnist, download=args.download)
    print(f"dataset in {args.out} (manifest.json lists files and checksums)")
    return 0


def _data_imagenet(args) -> int:
    return imagenet.run_from_args(args)


def _checkpoints_fetch(args) -> int:
    info = fetch_checkpoint(args.name, args.dir, source_file=args.source_file)
    print(f"{args.name}: {info['sha256']} ({info['size'] / 1e6:.1f} MB) from {info['origin']}")
    return 0


def _train(args) -> int:
    if args.threads:

        torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE (e.g. epochs=2 or optimizer.lr=1e-3), got {item!r}")
        node = overrides
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)

    config = config_from_args(args)
    recipe = load_recipe(config, args.recipe, overrides)
    out = Path(args.out)
    state_dir = Path(args.state_dir) if args.state_dir else Path("runs") / "state" / out.stem
    try:
        train(recipe, data_root=args.data, out=out, state_dir=state_dir, parent=args.parent,
              device=args.device, progress=not args.no_progress, config_source=config_layers(args))
    except TrainingInterrupted as err:
        print(f"spot train: {err}", file=sys.stderr)
        return 130
    except NonFiniteLossError as err:
        print(f"spot train: error: {err}", file=sys.stderr)
        return 3
    return 0


def _checkpoints_official(args) -> int:
    info = register_official(args.file, args.out, args.backbone)
    print(f"{args.out}: {info['path']} ({info['sha256'][:12]}…)")
    return 0


def _version(args) -> int:
    print(json.dumps({"code": code_version(), "software": software_versions()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spot", description="SPoT: Subpixel Placement of Tokens in ViTs")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_data, _add_checkpoints, _add_train, _add_experiments, _add_records):
        add(sub)
    p = _command(sub, "version", "print the code and software versions")
    p.set_defaults(func=_version)
    return parser


def _add_demo(sub) -> None:
    p = _command(sub, "demo", "wrap a small timm ViT with SPoT and classify real digits at several budgets")
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs of the grid ViT (default: %(default)s)")
    p.add_argument("--retrofit-epochs", type=int, default=10, help="SPoT retrofit epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_demo)


def _add_data(sub) -> None:
    data = _command(sub, "data", "prepare datasets").add_subparsers(dest="dataset", required=True)
    d = CanvasConfig()
    p = _command(data, "data fmnist", "build the Fashion-MNIST canvas benchmark (or plain Fashion-MNIST)")
    p.add_argument("--out", required=True, help="output folder ({train,val,test}.npz + manifest.json)")
    p.add_argument("--variant", choices=("canvas", "plain"), default="canvas")
    p.add_argument("--fmnist", default=None, help="folder with the Fashion-MNIST IDX files "
                                                  "(default: /usr/share/datasets/fashion-mnist)")
    p.add_argument("--download", action="store_true", help="download with torchvision into --fmnist (needs internet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canvas-size", type=int, default=d.canvas_size)
    p.add_argument("--placement-std", type=float, default=d.placement_std)
    p.add_argument("--max-offset", type=float, default=d.max_offset)
    p.add_argument("--fragments", type=int, default=d.fragments)
    p.add_argument("--val-size", type=int, default=d.val_size)
    p.set_defaults(func=_data_fmnist)
    p = _command(data, "data imagenet", "prepare ImageNet (ILSVRC-2012) from the raw archives")
    imagenet.configure_parser(p)
    p.set_defaults(func=_data_imagenet)


def _add_checkpoints(sub) -> None:
    ck = _command(sub, "checkpoints", "backbone checkpoints").add_subparsers(dest="action", required=True)
    p = _command(ck, "checkpoints fetch", "fetch a backbone checkpoint into DIR as safetensors + a record")
    p.add_argument("name", help="cls_in1k, cls_in21k or mae_in1k")
    p.add_argument("--dir", default="checkpoints", help="target folder (default: %(default)s)")
    p.add_argument("--from", dest="source_file", default=None, help="use this downloaded file instead of the network")
    p.set_defaults(func=_checkpoints_fetch)
    p = _command(ck, "checkpoints official", "register one of the authors' released SPoT checkpoints for the workflow "
                                       "(retrofit: official): checks it loads, writes a record pointing at it")
    p.add_argument("file", help="spot_1k_b16.pth, spot_21k_b16.pth or spot_mae_b16.pth")
    p.add_argument("--out", required=True, help="the record to write (.json)")
    p.add_argument("--backbone", required=True, help="the backbone it retrofits (cls_in1k, cls_in21k, mae_in1k)")
    p.set_defaults(func=_checkpoints_official)


def _add_train(sub) -> None:
    p = _command(sub, "train", "run a training recipe of the config (pre-training, SPoT retrofitting, its grid "
                                      "control, MAE, pruning fine-tunes); resumable; DDP under torchrun")
    add_config_arguments(p, what="`recipes:`")
    p.add_argument("--recipe", required=True, help="name of the recipe under `recipes:`")
    p.add_argument("--data", required=True, help="dataset folder (built by `spot data fmnist|imagenet`)")
    p.add_argument("--out", required=True, help="output weights (.safetensors); a .json record and .log.jsonl go beside")
    p.add_argument("--parent", default=None, help="checkpoint to start from (recipes with init: parent)")
    p.add_argument("--state-dir", default=None, help="resumable state folder (default: runs/state/<out name>); keep "
                                                       "it outside the workflow's outputs")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key, e.g. --set epochs=2")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available, under torchrun "
                                                  "cuda:LOCAL_RANK)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=_train)


def _add_experiments(sub) -> None:
    """One command per registered experiment (spot.experiments.protocol): its own arguments, then the shared ones."""
    for exp in load_experiments().values():
        p = _command(sub, exp.name, exp.help, exp.example)
        exp.arguments(p)
        shared_arguments(p)
        p.set_defaults(func=run_command, experiment=exp.name)


def _add_records(sub) -> None:
    commands = (
        ("audit", "the provenance chain of a table or figure, every link re-hashed (exit 1 if a file changed or is "
                  "missing)", audit),
        ("publish", "copy a finished run's tables, figures, result tables and checkpoint records into "
                    "reference/<preset>/, the published reference (clean commits only)", publish),
        ("spread", "each result row's training-seed spread from runs that differ only in their training seeds (the "
                   "training-seed presets), for spot compare --seed-spread", spread),
        ("compare", "did a run reproduce a reference? records within their tolerances, flipped findings, tables "
                    "(exit 1 if not)", compare),
    )
    for name, text, module in commands:
        p = _command(sub, name, text)
        module.configure_parser(p)
        p.set_defaults(func=module.run_from_args)


# one worked example per command, shown by its --help (tests/app/test_cli.py parses each with this parser); an
# experiment's is registered with it (spot.experiments.protocol)
EXAMPLES = {
    "demo": "spot demo --out demo_output --epochs 2 --retrofit-epochs 1",
    "data fmnist": "spot data fmnist --out results/embedded/data",
    "data imagenet": "spot data imagenet --raw /data/ILSVRC2012 --out results/paper/data/imagenet",
    "checkpoints fetch": "spot checkpoints fetch cls_in1k --dir checkpoints --from ~/Downloads/model.safetensors",
    "checkpoints official": "spot checkpoints official spot_1k_b16.pth --backbone cls_in1k "
                            "--out checkpoints/spot_1k_b16.json",
    "train": "spot train --config config.yaml --recipe backbone_cls_in1k --data results/embedded/data "
             "--out models/cls_in1k.safetensors",
    "audit": "spot audit paper_figures/embedded/table5.csv --row 1 --column '36 Tok. Acc@1 (%)'",
    "publish": "spot publish --preset embedded --to reference/embedded",
    "spread": "spot spread reference/embedded/results/embedded results/embedded_seed1 results/embedded_seed2 "
              "--stand-in-for cls_in1k mae_in1k --out seed_spread.csv --findings-out seed_findings.csv",
    "compare": "spot compare . reference/embedded --preset embedded",
    "version": "spot version",
}


def _command(sub, path: str, help: str, example: str | None = None) -> argparse.ArgumentParser:
    """The parser of command ``path`` (``"data fmnist"``): its help line, shown again as its description, and its
    worked example (``example``, else :data:`EXAMPLES`) as the epilog of its --help."""
    example = example or EXAMPLES.get(path)
    return sub.add_parser(path.split()[-1], help=help, description=textwrap.fill(help, 100),
                          epilog=f"example:\n  {example}" if example else None,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def examples() -> dict[str, str]:
    """Every command's worked example: :data:`EXAMPLES` and each registered experiment's."""
    return {**EXAMPLES, **{name: e.example for name, e in load_experiments().items()}}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"spot {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
