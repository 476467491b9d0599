"""benchmarks/gpu_check.py — the training issue's GPU check — kept working on CPU: the same torchrun commands with
gloo, a shrunk ViT-B/16 and tiny steps, so that a session with a GPU can run it as is."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_canvas

from spot.data.fmnist import CanvasConfig

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_stage_on_cpu(tmp_path, tmp_path_factory):
    canvas, _ = make_canvas(tmp_path_factory, 600, 50, CanvasConfig(val_size=100))
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out), "--canvas", str(canvas),
           "--device", "cpu", "--steps", "2", "--vit-batch", "4",
           "--vit-set", "model.timm_kwargs={embed_dim: 32, depth: 1, num_heads: 2}", "--vit-set", "model.img_size=64",
           "--vit-set", "data.workers=0",
           "--throughput-args", "--budgets 4 --repeats 1 --warmup 0 --batch-size 2 --img-size 64 --methods spot"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    runs = {r["name"]: r for r in report["runs"]}
    assert set(runs) == {"embedded_backbone", "embedded_retrofit", "embedded_prune", "embedded_mae",
                         "vit_b16_retrofit", "throughput_vit_b16"}
    assert all(r["ok"] for r in runs.values())
    for name, batch in (("embedded_backbone", 64), ("embedded_retrofit", 128), ("embedded_prune", 128),
                        ("embedded_mae", 128), ("vit_b16_retrofit", 4)):
        assert runs[name]["world_size"] == 1 and runs[name]["images_seen"] == 2 * batch, name
        assert runs[name]["images_per_s"] > 0 and runs[name]["device"]["type"] == "cpu"
    assert "val_acc1@25" in runs["vit_b16_retrofit"]["final"]  # the paper recipe's subpixel evaluation budget
    rows = runs["throughput_vit_b16"]["rows"]
    # SPoT (--methods spot), and the paper preset's pruning methods, ToMe and the equal-cost sampling rows
    assert {row["method"] for row in rows} == {"spot", "spot_ad", "evit", "dynamicvit", "heuristic", "tome",
                                               "patchdropout"}
    assert {row["metric"] for row in rows} >= {"images_per_s"}
    # every measurement against the measured matmul peak: images/s × GFLOPs per image ÷ peak
    peak = runs["throughput_vit_b16"]["matmul_peak_tflops"]["value"]
    bound = runs["throughput_vit_b16"]["flop_bound"]
    assert peak > 0 and {b["method"] for b in bound} == {row["method"] for row in rows}
    spot = next(b for b in bound if b["method"] == "spot")
    ips = next(float(r["value"]) for r in rows if r["method"] == "spot" and r["metric"] == "images_per_s")
    gflops = next(float(r["value"]) for r in rows if r["method"] == "spot" and r["metric"] == "gflops_per_image")
    assert spot["fraction_of_peak"] * peak == pytest.approx(ips * gflops / 1e3) and spot["fraction_of_peak"] > 0


def test_gpu_check_says_why_the_embedded_runs_are_skipped(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out), "--canvas",
                           str(tmp_path / "absent"), "--skip", "vit_b16", "--skip", "throughput"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = json.loads((out / "gpu_check.json").read_text())["runs"]
    assert not run["ok"] and "spot data fmnist" in run["skipped"] and "absent" in run["skipped"]
