import json

import pytest
import torch

from spot.weights.backbones import create_backbone
from spot.core.models import SPoTViT
from spot.experiments.throughput import (METHODS, ThroughputSettings, interleaved_times, measure_models,
                                         measure_throughput)

from helpers import spot_command

TINY = dict(img_size=32)  # vit_nano_patch8 at 32 px: a 4×4 grid of 16 tokens
FAST = dict(batch_size=2, device="cpu", warmup=1, repeats=3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return create_backbone("vit_nano_patch8", **TINY).eval()


def _wide(rows):
    """{(method, budget): {metric: value}} of tidy throughput rows."""
    out = {}
    for r in rows:
        out.setdefault((r["method"], r["budget"]), {})[r["metric"]] = r["value"]
    return out


def test_rows_for_every_method_and_budget(vit):
    rows = measure_throughput(vit, [4, 9, 16], backbone="nano", variant="parent", **FAST)
    wide = _wide(rows)
    assert sorted(wide) == sorted([(m, b) for m in ("spot", "patchdropout") for b in (4, 9, 16)] + [("vit", 16)])
    placements = {"spot": "isotropic", "patchdropout": "grid_random", "vit": "grid"}
    for r in rows:
        assert r["backbone"] == "nano" and r["variant"] == "parent" and r["experiment"] == "throughput"
        assert r["batch_size"] == 2 and r["dtype"] == "float32" and r["repeats"] == 3
        assert r["device"].startswith("cpu") and r["image_size"] == "32x32"
        assert r["placement"] == placements[r["method"]]
        assert r["sequence_length"] == r["budget"] + 1 and r["fraction"] == r["budget"] / 16  # + the CLS token
    for v in wide.values():
        assert v["images_per_s_min"] <= v["images_per_s"] <= v["images_per_s_max"]
        assert v["ms_per_batch_min"] <= v["ms_per_batch"] <= v["ms_per_batch_max"]
        assert v["images_per_s"] > 0 and v["gflops_per_image"] > 0

    flops = {key: v["gflops_per_image"] for key, v in wide.items()}
    for method in ("spot", "patchdropout"):
        assert flops[method, 4] < flops[method, 9] < flops[method, 16]
    grid = flops["vit", 16]
    assert flops["patchdropout", 16] == pytest.approx(grid)  # all patches kept: the ViT's own computation
    assert grid <= flops["spot", 16] <= 1.03 * grid  # the subpixel tokenizer adds little
    assert flops["spot", 4] < flops["patchdropout", 4]  # PatchDropout embeds every patch before dropping


def test_measurements_are_timed_in_interleaved_rotating_rounds():
    """Every round times one call of every forward, starting one further along each round, after the warm-up calls
    of each — so drifting load falls on all of them alike (the dense model and its pruned variants)."""
    calls = []
    forwards = [lambda x, i=i: calls.append(i) for i in range(3)]
    times = interleaved_times(forwards, torch.zeros(1), torch.device("cpu"), "float32", warmup=2, repeats=4)
    assert calls == [0, 0, 1, 1, 2, 2] + [0, 1, 2] + [1, 2, 0] + [2, 0, 1] + [0, 1, 2]
    assert [len(t) for t in times] == [4, 4, 4] and all(s >= 0 for t in times for s in t)


def test_models_of_different_input_sizes_are_timed_in_a_set_of_rounds_each(vit, monkeypatch):
    from spot.experiments import throughput

    calls = []
    real = throughput.interleaved_times
    monkeypatch.setattr(throughput, "interleaved_times", lambda f, images, *a: calls.append(images.shape) or
                        real(f, images, *a))
    big = create_backbone("vit_nano_patch8", img_size=48).eval()
    rows = measure_models([dict(model=vit, variant="small", methods=["spot", "vit"]),
                           dict(model=big, variant="big", methods=["vit"]),
                           dict(model=SPoTViT.from_timm(vit), variant="spot", methods=["spot"])],
                          [4], 2, device="cpu", warmup=0, repeats=1)
    assert [tuple(s) for s in calls] == [(2, 1, 32, 32), (2, 1, 48, 48)]  # one channel (the nano backbone)
    wide = {(r["variant"], r["method"], r["budget"]): r["image_size"] for r in rows}
    assert wide == {("small", "spot", 4): "32x32", ("small", "vit", 16): "32x32", ("spot", "spot", 4): "32x32",
                    ("big", "vit", 36): "48x48"}
    assert list(rows[0])[:4] == ["experiment", "backbone", "variant", "method"]


def test_attention_flops_are_counted_on_the_cpu():
    from spot.experiments.throughput import count_gflops

    vit = create_backbone("vit_nano_patch8", **TINY).eval()
    D, L, depth, N, C, p = 96, 17, 4, 16, 1, 8
    per_block = 2 * L * D * 3 * D + 2 * 2 * L * L * D + 2 * L * D * D + 2 * 2 * L * D * 4 * D
    expected = depth * per_block + 2 * N * D * C * p * p + 2 * D * 10  # blocks + patch conv + head (CLS only)
    assert count_gflops(vit, torch.zeros(1, 1, 32, 32)) * 1e9 == pytest.approx(expected, rel=1e-6)


def test_spot_model_alone_and_bfloat16_autocast(vit):
    spot = SPoTViT.from_timm(vit)
    rows = measure_throughput(spot, [20], methods=["spot"], dtype="bfloat16", **FAST)  # SPoT may exceed the grid
    assert {(r["method"], r["budget"], r["dtype"]) for r in rows} == {("spot", 20, "bfloat16")}
    with pytest.raises(ValueError, match="vit="):
        measure_throughput(spot, [4], **FAST)


@pytest.mark.parametrize("budgets, match", [([0], "≥ 1"), ([4, -1], "≥ 1"), ([2.5], "int"), (4, "list"),
                                            ([], "list"), ([4, 17], "PatchDropout keeps at most the grid's 16")])
def test_bad_budgets_are_clear_errors(vit, budgets, match):
    with pytest.raises(ValueError, match=match):
        measure_throughput(vit, budgets, **FAST)


def test_bad_settings_are_clear_errors(vit):
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        measure_throughput(vit, [4], **{**FAST, "dtype": "float16"})
    with pytest.raises(ValueError, match="accepted: spot, vit, patchdropout"):
        measure_throughput(vit, [4], methods=["ToMe"], **FAST)
    with pytest.raises(ValueError, match="repeats"):
        measure_throughput(vit, [4], **{**FAST, "repeats": 0})
    with pytest.raises(ValueError, match="dtype"):
        ThroughputSettings(dtype="fp8").validate()
    assert ThroughputSettings().methods == list(METHODS)


def test_settings_dtype_names_are_torchs_dtypes():
    """spot.settings.throughput checks `dtype` without torch against DTYPE_NAMES; DTYPES are torch's, by those names."""
    from spot.settings import throughput as settings
    from spot.experiments.throughput import DTYPES

    assert tuple(DTYPES) == settings.DTYPE_NAMES
    assert all(isinstance(d, torch.dtype) and str(d) == f"torch.{name}" for name, d in DTYPES.items())
    assert ThroughputSettings is settings.ThroughputSettings and METHODS is settings.METHODS


def _checkpoints(tmp_path, vit):
    """(a grid classifier, a SPoT model) saved as the workflow saves them."""
    from spot.train import save_model

    plain, spot = tmp_path / "plain.safetensors", tmp_path / "spot.safetensors"
    save_model(vit, plain, {"format": "timm_vit", "backbone": "vit_nano_patch8", "timm_kwargs": TINY})
    save_model(SPoTViT.from_timm(create_backbone("vit_nano_patch8", **TINY)), spot,
               {"format": "spot_vit", "backbone": "vit_nano_patch8", "timm_kwargs": TINY,
                "spot": {"window": None, "pe_sigma": 0.5}})
    return plain, spot


def test_command_line(tmp_path, vit):
    config = tmp_path / "config.yaml"
    config.write_text("throughput:\n  budgets: [4, 16]\n  batch_size: 2\n  warmup: 1\n  repeats: 2\n  dtype: float32\n")
    plain, spot = _checkpoints(tmp_path, vit)
    out = tmp_path / "results" / "throughput.csv"
    assert spot_command("throughput", "--config", str(config), "--backbone", "nano", "--model", f"parent={plain}",
                              "--model", f"spot={spot}", "--architecture", "vit_nano_patch8", "--img-size", "32",
                              "--out", str(out),
                              "--device", "cpu", "--budgets", "4,9", "--repeats", "1") == 0
    from spot.results import read_table

    table = read_table(out)
    assert len(table) == 3 * 5 * 7  # per model: spot ×2, patchdropout ×2, vit — × 7 metrics
    assert set(table["variant"]) == {"parent", "spot", "vit_nano_patch8"} and set(table["budget"]) == {4, 9, 16}
    assert set(table["backbone"]) == {"nano"} and (table["repeats"] == 1).all() and (table["batch_size"] == 2).all()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["provenance"]["config"]["throughput"]["budgets"] == [4, 9]
    assert set(meta["provenance"]["inputs"]) == {"checkpoint:parent", "checkpoint:spot"}

    with pytest.raises(ValueError, match="--model VARIANT=PATH or --architecture"):
        spot_command("throughput", "--config", config, "--out", out)
    with pytest.raises(ValueError, match="comma-separated"):
        spot_command("throughput", "--config", config, "--architecture", "vit_nano_patch8", "--out", out,
                     "--budgets", "4;9")


def test_every_model_of_a_backbone_shares_one_set_of_rounds(tmp_path, vit, monkeypatch):
    """`spot throughput` times the SPoT model, the grid classifier and (`throughput.pruning`) every pruned model in the
    same interleaved rounds (one call of interleaved_times), so a speed-up never compares two different moments; the
    pruning runs are built on the grid classifier even when the SPoT model is listed first."""
    from spot.experiments import throughput

    plain, spot = _checkpoints(tmp_path, vit)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("throughput: {budgets: [4], batch_size: 2, warmup: 0, repeats: 1, pruning: true}\n")
    calls = []
    real = throughput.interleaved_times

    def spy(forwards, *args, **kwargs):
        calls.append(len(forwards))
        return real(forwards, *args, **kwargs)

    monkeypatch.setattr(throughput, "interleaved_times", spy)
    out = tmp_path / "throughput.csv"
    assert spot_command("throughput", "--config", "config/smoke.yaml", "--config", overlay, "--backbone", "nano",
                        "--model", f"spot={spot}", "--model", f"parent={plain}", "--out", out, "--device", "cpu") == 0
    from spot.results import read_table

    table = read_table(out)
    pruned = table[table["keep_ratio"].notna()]
    assert {"spot_ad", "evit", "tome"} <= set(pruned["method"]) and "vit" in set(table["method"])
    # one set of rounds: both models' spot, patchdropout and vit at budget 4 and every pruning run — the pruning
    # tables divide by the parent's dense vit row, the figures compare the SPoT model with it
    assert calls == [len(table) // len(throughput.METRICS)] and len(table) // len(throughput.METRICS) > 6
    assert set(pruned[pruned["placement"] == "grid"]["variant"]) == {"parent"}
