#!/usr/bin/env python3
"""The GPU check of the training issue: the same `spot train` command under torchrun (DDP, NCCL on CUDA) with bf16
autocast, a few steps each of the embedded preset's recipes and of ViT-B/16 on random images, plus ViT-B/16
inference throughput — images/s recorded in one JSON file.

    python benchmarks/gpu_check.py --out OUT [--canvas results/embedded/data] [--nproc 1] [--steps 20]

What runs (each a real `spot train` under `torchrun --standalone --nproc_per_node=NPROC -m spot train`):

* embedded preset (needs a canvas folder built by `spot data fmnist`; skipped with the reason when absent):
  backbone_cls_in1k from scratch, retrofit_cls (subpixel tokens) and prune_spot_ad (SPOT-AD token pruning) from it,
  backbone_mae_pretrain (MAE) — STEPS steps each (`data.limit` = STEPS × batch);
* ViT-B/16 (config/paper.yaml's retrofit_cls_in1k: subpixel tokens, mixup/cutmix, LLRD, RandAugment) from a random
  init (`init=scratch`; no weights needed) on a prepared-ImageNet folder of random JPEGs in torchvision's layout,
  STEPS steps at `--vit-batch` images per step;
* `spot throughput` of ViT-B/16 (config/paper.yaml: bf16, budgets 25…196; with `throughput.pruning` every pruning
  method over the keep-ratio sweep, ToMe, SPoT + SPOT-AD and SPoT at SPOT-AD's cost points) on the first device,
  each measurement also as a fraction of the FLOP bound: images/s × GFLOPs per image ÷ the measured matmul peak in
  the same dtype (issue 16's target: ≥ 30 % for SPoT at 196 tokens).

Each run's record (`*.json` beside its weights) holds images/s per epoch, the device and the world size; the summary
(OUT/gpu_check.json) collects them. On a CPU-only machine the same script runs with `--device cpu` (gloo, no autocast)
and shrunk models (`--vit-set`), which is how the test suite keeps it working.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def environment() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "devices": torch.cuda.device_count()}
    if torch.cuda.is_available():
        info.update(device_name=torch.cuda.get_device_name(0), bf16_supported=torch.cuda.is_bf16_supported(),
                    nccl_available=torch.distributed.is_nccl_available())
    return info


def matmul_peak_tflops(device: str, dtype: str, repeats: int = 10) -> float:
    """The measured matmul peak: TFLOP/s of a square matrix product (8192² on CUDA, 1024² on the CPU) in ``dtype``,
    the best of ``repeats`` — the bound a forward's FLOPs are measured against (its "fraction of the FLOP bound")."""
    import torch

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    n = 8192 if dev.type == "cuda" else 1024
    from spot.measure import DTYPES

    dt = DTYPES[dtype]
    a, b = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
    best = float("inf")
    for _ in range(repeats + 2):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e12


def flop_bound(rows: list[dict], peak_tflops: float) -> list[dict]:
    """Per throughput measurement (the tidy rows of `spot throughput`): images/s × GFLOPs per image, as TFLOP/s and
    as a fraction of the measured matmul peak."""
    measured = {}
    for row in rows:
        key = tuple((k, v) for k, v in row.items() if k not in ("metric", "value"))
        measured.setdefault(key, {})[row["metric"]] = float(row["value"])
    out = []
    for key, metrics in measured.items():
        if "images_per_s" in metrics and "gflops_per_image" in metrics:
            tflops = metrics["images_per_s"] * metrics["gflops_per_image"] / 1e3
            columns = dict(key)
            out.append({k: columns.get(k, "") for k in ("method", "budget", "keep_ratio", "batch_size", "dtype")}
                       | {"images_per_s": metrics["images_per_s"], "tflops": tflops,
                          "fraction_of_peak": tflops / peak_tflops})
    return out


def fake_imagenet(root: Path, classes: int, per_class: int, size: int = 256, seed: int = 0) -> Path:
    """A prepared-ImageNet folder (what `spot data imagenet` writes and torchvision's ImageNet reads): meta.bin and
    train/ + val/ class folders of random JPEGs. Throughput does not depend on the pictures."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.datasets.imagenet import META_FILE

    if (root / META_FILE).is_file():
        return root
    rng = np.random.default_rng(seed)
    wnids = [f"n{10_000_000 + c:08d}" for c in range(classes)]
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for split, n in (("train", per_class), ("val", max(1, per_class // 8))):
        for wnid in wnids:
            (tmp / split / wnid).mkdir(parents=True)
            for k in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp / split / wnid / f"{wnid}_{k}.JPEG", quality=90)
    torch.save(({w: (f"class {i}",) for i, w in enumerate(wnids)}, list(wnids)), tmp / META_FILE)
    tmp.rename(root)
    return root


def torchrun_train(out_dir: Path, name: str, configs: list[str], recipe: str, data: Path, nproc: int, device: str,
                   sets: list[str], parent: Path | None = None) -> dict:
    """One `spot train` under torchrun; returns its record's summary (or the error's tail)."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        return {"name": name, "ok": False, "error": "torchrun not found next to this Python"}
    cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "spot", "train", "--recipe", recipe,
           "--data", str(data), "--out", str(out_dir / f"{name}.safetensors"), "--state-dir",
           str(out_dir / f"state_{name}"), "--no-progress"]
    for config in configs:
        cmd += ["--config", config]
    for s in sets:
        cmd += ["--set", s]
    if parent is not None:
        cmd += ["--parent", str(parent)]
    if device != "auto":
        cmd += ["--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.time()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    (out_dir / f"{name}.log").write_text(done.stdout + done.stderr)
    summary = {"name": name, "recipe": recipe, "command": " ".join(cmd), "ok": done.returncode == 0,
               "wall_s": round(time.time() - start, 1)}
    if done.returncode != 0:
        return {**summary, "error": (done.stdout + done.stderr)[-3000:]}
    record = json.loads((out_dir / f"{name}.json").read_text())
    return {**summary, "images_per_s": record["images_per_s"], "images_seen": record["images_seen"],
            "world_size": record["world_size"], "device": record["provenance"].get("device"),
            "amp": record["recipe"]["amp"], "final": record["final"]}


def throughput_run(out: Path, args) -> dict:
    """`spot throughput` of ViT-B/16 (config/paper.yaml) on the first device; its rows and each measurement as a
    fraction of the measured matmul peak."""
    cmd = [sys.executable, "-m", "spot", "throughput", "--config", "config/paper.yaml",
           "--backbone", "vit_b16", "--architecture", "vit_base_patch16_224",
           "--out", str(out / "throughput_vit_b16.csv"),
           *args.throughput_args.split()]
    if args.device != "auto":
        cmd += ["--device", args.device]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (out / "throughput.log").write_text(done.stdout + done.stderr)
    entry = {"name": "throughput_vit_b16", "command": " ".join(cmd), "ok": done.returncode == 0}
    if done.returncode == 0:
        import csv

        with open(out / "throughput_vit_b16.csv") as f:
            entry["rows"] = list(csv.DictReader(f))
        dtype = entry["rows"][0]["dtype"] if entry["rows"] else "float32"
        entry["matmul_peak_tflops"] = {"dtype": dtype, "value": matmul_peak_tflops(args.device, dtype)}
        entry["flop_bound"] = flop_bound(entry["rows"], entry["matmul_peak_tflops"]["value"])
    else:
        entry["error"] = (done.stdout + done.stderr)[-3000:]
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (logs, weights, records, gpu_check.json)")
    p.add_argument("--canvas", default="results/embedded/data", help="embedded canvas folder (spot data fmnist)")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per torchrun (default 1)")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per training run (default 20)")
    p.add_argument("--vit-batch", type=int, default=64, help="ViT-B/16 global batch (default 64)")
    p.add_argument("--device", default="auto", help="auto (cuda under torchrun when present) or cpu")
    p.add_argument("--vit-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra recipe overrides for the ViT-B/16 run (e.g. a shrunk model for a CPU check)")
    p.add_argument("--throughput-args", default="", help="extra `spot throughput` arguments (e.g. '--repeats 2')")
    p.add_argument("--skip", action="append", default=[], choices=("embedded", "vit_b16", "throughput"))
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": environment(), "nproc": args.nproc, "steps": args.steps, "runs": []}
    print(json.dumps(report["environment"]))

    canvas = (ROOT / args.canvas) if not Path(args.canvas).is_absolute() else Path(args.canvas)
    if "embedded" not in args.skip and not (canvas / "manifest.json").is_file():
        report["runs"].append({"name": "embedded", "ok": False, "skipped": f"no canvas folder at {canvas} (build it "
                                                                         "with `spot data fmnist --out DIR`)"})
    elif "embedded" not in args.skip:
        def embedded(name, recipe, batch, parent=None):
            sets = ["epochs=1", f"data.limit={args.steps * batch}", f"batch_size={batch}"]
            return torchrun_train(out, name, ["config.yaml"], recipe, canvas, args.nproc, args.device, sets, parent)

        report["runs"].append(embedded("embedded_backbone", "backbone_cls_in1k", 64 * args.nproc))
        if report["runs"][-1]["ok"]:
            report["runs"].append(embedded("embedded_retrofit", "retrofit_cls", 128 * args.nproc,
                                           out / "embedded_backbone.safetensors"))
            # token pruning (SPOT-AD: Gumbel masks through attention, the frozen teacher, the predictor's lr group)
            report["runs"].append(embedded("embedded_prune", "prune_spot_ad", 128 * args.nproc,
                                           out / "embedded_backbone.safetensors"))
        report["runs"].append(embedded("embedded_mae", "backbone_mae_pretrain", 128 * args.nproc))

    if "vit_b16" not in args.skip:
        per_class = -(-args.steps * args.vit_batch // 8)
        data = fake_imagenet(out / "fake_imagenet", classes=8, per_class=per_class)
        sets = ["init=scratch", "epochs=1", f"batch_size={args.vit_batch}", f"data.limit={args.steps * args.vit_batch}",
                "eval_batch_size=64", "eval_budgets=[25]", *args.vit_set]
        report["runs"].append(torchrun_train(out, "vit_b16_retrofit", ["config/paper.yaml"],
                                             "retrofit_cls_in1k", data, args.nproc, args.device, sets))

    if "throughput" not in args.skip:
        report["runs"].append(throughput_run(out, args))

    from spot.provenance import atomic_write_json

    atomic_write_json(out / "gpu_check.json", report)
    for run in report["runs"]:
        print(f"{run['name']:<22} {'ok' if run['ok'] else 'FAILED'}  "
              + (f"{run['images_per_s']:.0f} images/s (world {run['world_size']}, {run['device']})"
                 if run.get("images_per_s") else run.get("skipped", run.get("error", "")[-300:]) if not run["ok"]
                 else ""))
        if run.get("flop_bound"):
            peak = run["matmul_peak_tflops"]
            print(f"  fraction of the {peak['dtype']} matmul peak ({peak['value']:.1f} TFLOP/s):")
            for b in run["flop_bound"]:
                print(f"  {b['method']:<13} ρ {b['keep_ratio'] or '–':<4} {b['budget']:>4} tokens  "
                      f"{b['images_per_s']:>9.0f} images/s  {b['tflops']:7.2f} TFLOP/s  {100 * b['fraction_of_peak']:5.1f} %")
    return 0 if all(r["ok"] or r.get("skipped") for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
