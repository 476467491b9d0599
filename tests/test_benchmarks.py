"""The benchmark scripts keep running (tiny settings; what they print is read by a person, never timed here)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overhead_prints_every_ratio_per_budget(capsys, one_thread):
    overhead = _load("overhead")
    assert overhead.main(["--scale", "embedded", "--batch", "2", "--repeats", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| embedded |")]
    assert [int(r.split("|")[2]) for r in rows] == [4, 9, 18, 36]
    cells = rows[-1].split("|")
    assert cells[4].strip() != "–"  # the full grid is compared with the plain timm ViT too
    assert all(float(c.split()[0]) > 0 for c in (cells[3], cells[4], cells[7]))
    assert all(0 < float(c.split()[0]) < 100 for c in cells[5:7])  # the tokenizer's share (kept / new layout), in %


def test_workflow_times_sums_benchmark_files_per_rule(tmp_path, capsys):
    times = _load("workflow_times")
    bench = tmp_path / "run" / "benchmarks"
    bench.mkdir(parents=True)
    for stem, s in (("train_cls_in1k_classifier", 300.0), ("train_cls_in1k_prune_spot_ad", 60.0),
                    ("train_cls_in1k_spotprune_spot_ad_spot", 40.0), ("evaluate_cls_in1k", 100.0),
                    ("pruning_cls_in1k", 20.0), ("train_cls_in1k_policy", 30.0), ("train_cls_in1k_policy_joint", 12.0),
                    ("train_cls_in1k_policy_joint_control", 8.0), ("learned_placement_cls_in1k", 10.0)):
        (bench / f"{stem}.tsv").write_text(f"s\th:m:s\tmax_rss\n{s}\t0:00:00\t1.0\n")
    assert times.main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "| train_pruned | 2 | 100 | 60 |" in out and "| train | 1 | 300 | 300 |" in out
    assert "| train_policy | 3 | 50 | 30 |" in out  # the frozen, joint and joint-control policies
    assert "SPoT part: 400 job-s; token pruning: 120 job-s; learned placement: 60 job-s; all: 580 job-s" in out
    assert "grows the rest of the workflow by 11.5 %" in out  # 60 of the other 520
    assert times.main([str(tmp_path / "empty")]) == 2



def _rows(out: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith(first)]


def test_pruning_times_every_method_and_the_explicit_map_paths(capsys, one_thread):
    pruning = _load("pruning")
    assert pruning.main(["--scale", "embedded", "--batches", "1", "--keep", "0.5", "--repeats", "3"]) == 0
    rows = _rows(capsys.readouterr().out, "| embedded |")
    methods = [r[3] for r in rows]
    assert {"spot_ad", "dynamicvit", "heuristic", "evit", "tome", "*unpruned ViT*"} <= set(methods)
    assert {m for m in methods if m.endswith("explicit map")} == {"heuristic, explicit map", "evit, explicit map",
                                                                   "tome, explicit map"}
    for r in rows:
        if r[3] != "*unpruned ViT*":  # every method saves FLOPs at ρ = 0.5; its time ratio is a median [IQR]
            assert 0 < float(r[5]) < 1 and float(r[6].split()[0]) > 0 and r[6].split()[1].startswith("[")


def test_train_step_reports_each_variant_against_the_matmul_peak(capsys, one_thread):
    train_step = _load("train_step")
    assert train_step.main(["--batch", "4", "--repeats", "3", "--variants", "eager,bf16"]) == 0
    out = capsys.readouterr().out
    assert "fp32 matmul peak" in out
    rows = _rows(out, "| timm ViT") + _rows(out, "| SPoT, 36")
    assert [(r[0], r[1]) for r in rows] == [(m, v) for m in ("timm ViT (backbone)", "SPoT, 36 tokens (retrofit)")
                                            for v in ("eager", "bf16")]
    for r in rows:  # achieved GFLOP/s (share of the peak in %)
        achieved, share = r[4].split(" (")
        assert float(achieved) > 0 and share.endswith("%)")


def test_import_cost_times_the_three_kinds_of_import(capsys):
    """The DAG build's and a notebook's imports run without torch (the torch-free layers), a model's with it."""
    cost = _load("import_cost")
    assert cost.main(["--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  median")[0].strip() for line in lines] == list(cost.IMPORTS)
    probe = "import sys; {}; print('torch._C' in sys.modules)"
    loaded = [subprocess.run([sys.executable, "-c", probe.format(code)], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip() for code in cost.IMPORTS.values()]
    assert loaded == ["False", "False", "True"]
