"""The GPU cost of a paper-scale evaluation preset, estimated from the forward passes it performs (no GPU needed).

    python benchmarks/paper_official_cost.py [--config config/paper_official.yaml] [--grid-control]

Counts, from the resolved preset, the image-forwards of every job of the evaluation DAG — ``evaluate`` (the
measurements enumerated by spot.experiments.evaluate's own functions, each over the query images and the kNN bank),
``prior_selection`` (the same under the rule's override), ``oracle`` (every SPoT-ON search step, every scoring
forward, the kNN bank at each budget) and ``transfer`` — per token budget; multiplies them by the GFLOPs of one
ViT-B/16 forward at that budget, counted here by ``spot.measure.count_gflops`` (torch's FlopCounterMode, 2 FLOPs
per multiply-add) on a release-architecture SPoT model; and converts FLOPs to GPU-hours at stated rates (RATES).
``--grid-control`` also counts the grid-control models' evaluation (what the paper preset, which trains them, adds;
their training is not counted here). Prints a Markdown table. An estimate: nothing here ran on a GPU.
"""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

IMAGENET = {"val": 50_000, "train": 1_281_167}  # ILSVRC-2012 split sizes
EMBED_DIM = 768  # ViT-B/16: the kNN features' width
# The paper's Figure 5 throughput of its ViT-B/16 models (images/s per budget), as read off the plot on the project
# page (shared/reference/official-release.md; GPU and batch size not stated): the inference forwards' rate.
PAPER_IMAGES_PER_S = {25: 35_000, 49: 20_500, 100: 10_800, 196: 3_300}
# The oracle and transfer run float32 (config/paper.yaml, oracle: "precision"); torch leaves TF32 off for matmuls,
# so on an H100 they run on the FP32 units: 67 TFLOP/s peak (NVIDIA H100 SXM datasheet), at an assumed 60 % of it.
FP32_TFLOPS = 67.0 * 0.6
# One search step = a forward and a backward to the positions (no weight gradients): ≈ 2 forwards in FLOPs. This
# repository measured 5-step SPoT-ON ÷ one evaluation forward = 8.7–9.8 at ViT-B/16 on CPU (benchmarks/RESULTS.md),
# i.e. ≤ 1.8 forwards per step: 2 is the upper end.
STEP_FORWARDS = 2.0


def load(config_path: str) -> dict:
    from spot.config import load_configs

    return load_configs([config_path])


def _n(limit, split: str) -> int:
    return limit or IMAGENET[split]


def evaluation_settings(section: dict):
    from spot.config import settings_from_dict
    from spot.experiments.evaluate import EvaluationSettings

    return settings_from_dict(EvaluationSettings, section, "evaluation").validate()


def entries() -> dict:
    """Stand-ins of a backbone's models as spot.experiments.evaluate sees them (what decides their measurements)."""
    model = dict(patchdropout=False, grid_control=False, grid_tokens=196)
    return {"parent": SimpleNamespace(**dict(model, grid_trained=True, patchdropout=True)),
            "spot": SimpleNamespace(**dict(model, grid_trained=False)),
            "grid_control": SimpleNamespace(**dict(model, grid_trained=True, grid_control=True))}


def measurement_forwards(settings, models: dict) -> dict:
    """{budget: encodings per image} of the measurements of ``models`` (one per positions kind: placed, snapped)."""
    from spot.experiments.evaluate import _grid_measurements, _spot_measurements

    out: dict = {}
    for entry in models.values():
        for meas in _spot_measurements(entry, settings) + _grid_measurements(entry, settings):
            out[meas.budget] = out.get(meas.budget, 0) + len(meas.positions)
    return out


def evaluate_job(config: dict, variants=("parent", "spot")) -> list:
    """(kind, budget, image-forwards) of one backbone's evaluate job over its ``variants`` (parent, spot,
    grid_control): every measurement over the queries and the kNN bank."""
    e = config["evaluation"]
    images = _n(e["limit"], "val") + _n(e["knn"]["train_limit"], "train")
    per = measurement_forwards(evaluation_settings(e), {v: entries()[v] for v in variants})
    return [("bf16", m, k * images) for m, k in per.items()] + knn_rows(per, _n(e["limit"], "val"), e)


def knn_rows(per: dict, queries: int, e: dict) -> list:
    """The kNN votes as forward-equivalents of FLOPs: queries × bank × 2·D per measurement (kind ``flops``)."""
    bank = _n(e["knn"]["train_limit"], "train")
    return [("knn", 0, sum(per.values()) * queries * bank * 2 * EMBED_DIM)]


def prior_selection_job(config: dict) -> list:
    """The rule's override (common.smk selection_override_json) on the SPoT model only."""
    from spot.config import merge_configs

    s = config["prior_selection"]
    override = {"split": s["split"], "limit": s.get("limit"), "priors": s["candidates"], "seeds": [s.get("seed", 0)],
                "extra_budgets": [], "snapped": False, "grid_model_priors": [], "extra_budget_priors": [],
                "patchdropout": False}
    e = merge_configs(config["evaluation"], override)
    per = measurement_forwards(evaluation_settings(e), {"spot": entries()["spot"]})
    images = _n(e["limit"], "val") + _n(e["knn"]["train_limit"], "train")
    return [("bf16", m, k * images) for m, k in per.items()] + knn_rows(per, _n(e["limit"], "val"), e)


def oracle_searches(o: dict) -> dict:
    """{budget: search steps per image} over the distinct searches of spot.experiments.oracle.tables (each computed once per
    batch and shared between tables): Table 1 (every setting from Isotropic), Table 2 (every prior × setting),
    Tables 3/5 (the main setting at every budget), Table 6 (ascent, random label), the controls (label-free, random
    target, SPoT-ON on the blank images) at every budget."""
    steps = [s["steps"] for s in o["settings"]]
    main, S, c = steps[o["main_setting"]], o["sparse_budget"], o["controls"]
    searches = {(f"from_{p}", i, S) for p in set(o["priors"]) | {"isotropic"} for i in range(len(steps))}
    searches |= {(kind, o["main_setting"], S) for kind in ("ascent", "random_label")}
    controls = [k for k, on in (("label_free", c["label_free"]), ("random_target", c["random_target"]),
                                ("blank", c["blank"] is not None)) if on]
    for m in o["budgets"]:
        searches |= {("from_isotropic", o["main_setting"], m)} | {(k, o["main_setting"], m) for k in controls}
    out: dict = {}
    for _, i, m in searches:
        out[m] = out.get(m, 0) + (main if i == o["main_setting"] else steps[i])
    return out


def oracle_scores(o: dict) -> dict:
    """{budget: scoring forwards per image} (no gradient): the accuracies each table tallies."""
    S, n_set, c = o["sparse_budget"], len(o["settings"]), o["controls"]
    out = {S: 2 + 2 * n_set + len(o["priors"]) * (1 + n_set) + 3 + 2}  # Tables 1, 2, 6
    per_budget = 2 + 2 + c["label_free"] + 3 * c["random_target"] + 2 * (c["blank"] is not None)  # Table 5, controls
    for m in o["budgets"]:
        out[m] = out.get(m, 0) + per_budget
    return out


def oracle_job(config: dict) -> list:
    o, e = config["oracle"], config["evaluation"]
    n = _n(o["limit"], "val")
    rows = [("fp32_step", m, k * n) for m, k in oracle_searches(o).items()]
    rows += [("fp32", m, k * n) for m, k in oracle_scores(o).items()]
    # Figure 4: the first batch (holding its images) scored again at the start and the end of their trajectories
    rows += [("fp32", o["sparse_budget"], 2 * min(o["batch_size"], n) * bool(o["trajectories"]["images"]))]
    if o.get("knn"):
        bank = _n(e["knn"]["train_limit"], "train")
        rows += [("fp32", m, bank) for m in o["budgets"]]
        rows += [("knn", 0, len(o["budgets"]) * n * bank * 2 * EMBED_DIM)]
    return rows


def transfer_job(config: dict, models: int) -> list:
    """Per budget and image: every model scores the start, each searches (and scores its own result and every other
    model's on it); with random targets the same again towards the targets (spot.experiments.oracle.transfer)."""
    t, o = config["transfer"], config["oracle"]
    n, steps = _n(o["limit"], "val"), o["settings"][o["main_setting"]]["steps"]
    budgets = sorted(set(t.get("budgets") or []) | {t["budget"]})
    searches = models * (1 + bool(t.get("random_target")))
    scores = models + models * models + (models + models * models) * bool(t.get("random_target"))
    return [("fp32_step", m, searches * steps * n) for m in budgets] + [("fp32", m, scores * n) for m in budgets]


def gflops(budgets) -> dict:
    """{budget: GFLOPs of one forward} of a ViT-B/16 SPoT model in the release's architecture (random weights)."""
    import torch

    from spot.core.models import SPoTViT
    from spot.weights.official import build_official_vit
    from spot.measure import count_gflops

    model = SPoTViT.from_timm(build_official_vit(), geometry="release").eval()
    images = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        return {m: count_gflops(lambda x, m=m: model(x, prior="isotropic", num_tokens=m), images) for m in budgets}


def bf16_seconds(gf: dict, m: int) -> float:
    """Seconds per forward at budget ``m``: its GFLOPs at the paper's FLOP rate, interpolated between its budgets."""
    rate = {b: PAPER_IMAGES_PER_S[b] * gf[b] for b in PAPER_IMAGES_PER_S}  # GFLOP/s at each read-off budget
    known = sorted(rate)
    lo = max([b for b in known if b <= m], default=known[0])
    hi = min([b for b in known if b >= m], default=known[-1])
    r = rate[lo] if lo == hi else rate[lo] + (rate[hi] - rate[lo]) * (m - lo) / (hi - lo)
    return gf[m] / r


def seconds(kind: str, m: int, count: float, gf: dict) -> float:
    if kind == "knn":
        return count / 1e12 / FP32_TFLOPS
    flops = gf[m] * (STEP_FORWARDS if kind == "fp32_step" else 1.0)
    if kind == "bf16":
        return count * bf16_seconds(gf, m)
    return count * flops / 1e3 / FP32_TFLOPS


def jobs(config: dict, grid_control: bool) -> dict:
    """{job: [(kind, budget, count)]}, per backbone (evaluate, prior_selection, oracle) or once (transfer)."""
    models = len(config["backbones"])
    variants = ("parent", "spot", "grid_control") if grid_control else ("parent", "spot")
    per = {"evaluate": evaluate_job(config, variants), "prior_selection": prior_selection_job(config),
           "oracle": oracle_job(config)}
    out = {f"{k} (× {models} backbones)": [(kind, m, c * models) for kind, m, c in v] for k, v in per.items()}
    out["transfer"] = transfer_job(config, models)
    return out


def report(config: dict, grid_control: bool) -> str:
    table = jobs(config, grid_control)
    budgets = sorted({m for rows in table.values() for _, m, _ in rows if m})
    gf = gflops(sorted(set(budgets) | set(PAPER_IMAGES_PER_S)))
    lines = ["| job | image-forwards (bf16) | search steps (fp32) | scoring forwards (fp32) | PFLOPs | GPU-hours |",
             "|---|---|---|---|---|---|"]
    total = 0.0
    for job, rows in table.items():
        count = {k: sum(c for kind, _, c in rows if kind == k) for k in ("bf16", "fp32_step", "fp32")}
        flops = sum(c * gf[m] * 1e9 * (STEP_FORWARDS if k == "fp32_step" else 1) for k, m, c in rows if k != "knn")
        flops += sum(c for k, _, c in rows if k == "knn")
        hours = sum(seconds(k, m, c, gf) for k, m, c in rows) / 3600
        total += hours
        lines.append(f"| {job} | {count['bf16']:.3g} | {count['fp32_step']:.3g} | {count['fp32']:.3g} | "
                     f"{flops / 1e15:,.0f} | {hours:.1f} |")
    lines.append(f"| **total** | | | | | **{total:.0f}** |")
    lines.append("\nGFLOPs per forward: " + ", ".join(f"{m}: {gf[m]:.2f}" for m in sorted(gf)))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="config/paper_official.yaml")
    p.add_argument("--grid-control", action="store_true", help="also the grid-control models' evaluation")
    args = p.parse_args(argv)
    print(report(load(args.config), args.grid_control))
    print(json.dumps({"config": args.config, "grid_control": args.grid_control, "fp32_tflops": FP32_TFLOPS,
                      "paper_images_per_s": PAPER_IMAGES_PER_S, "step_forwards": STEP_FORWARDS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
