"""The ``spot`` command line. Sub-commands are added stage by stage (data, checkpoints, train, evaluate, …)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), epochs=args.epochs, retrofit_epochs=args.retrofit_epochs, seed=args.seed, threads=args.threads)
    return 0


def _version(args) -> int:
    import json

    from .provenance import code_version, software_versions

    print(json.dumps({"code": code_version(), "software": software_versions()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spot", description="SPoT: Subpixel Placement of Tokens in ViTs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="wrap a small timm ViT with SPoT and classify real digits at several budgets")
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs of the grid ViT (default: %(default)s)")
    p.add_argument("--retrofit-epochs", type=int, default=10, help="SPoT retrofit epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_demo)
    p = sub.add_parser("version", help="print the code and software versions")
    p.set_defaults(func=_version)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"spot {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
