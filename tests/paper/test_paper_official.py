"""The `paper_official` preset (config/paper_official.yaml): the paper's evaluation on the authors' released
checkpoints. Its DAG (dry runs, stand-in checkpoints in the release's format) asks for no retrofit and no pruning
fine-tune; the oracle tables need no training at all; and on a tiny fake ImageNet its commands — as the workflow's
rules call them, `spot checkpoints official` first — produce Tables 1–6 and Figure 5, performing exactly the forwards
that benchmarks/paper_official_cost.py counts from the config (the basis of the README's estimate)."""
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import copy_workflow
from weights.test_official import release_state, save
from paper.test_paper_fake_imagenet import SMALL, fake_imagenet

from spot import paper
from spot.app.cli import main
from spot.config import load_configs
from spot.core.models import SPoTViT

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import paper_official_cost as cost  # noqa: E402

PRESET = "config/paper_official.yaml"
RELEASE = {"cls_in1k": "spot_1k_b16.pth", "cls_in21k": "spot_21k_b16.pth", "mae_in1k": "spot_mae_b16.pth"}
EVALUATION_TABLES = [f"table{i}" for i in range(1, 7)]
ORACLE_TABLES = ["table1", "table3", "table4", "table6"]  # read the oracle and transfer only
TRAINING = ("train_backbone", "train_chain_stage", "train_pruned")


def targets(tables, figures=()):
    out = "paper_figures/paper_official"
    return [f"{out}/{t}.csv" for t in tables] + [f"{out}/{f}.pdf" for f in figures]


def stand_ins(folder: Path) -> dict:
    """Checkpoints in the release's key layout (tiny: depth 1, width 64) under the release's file names."""
    folder.mkdir(parents=True, exist_ok=True)
    return {b: str(save(folder, release_state(depth=1, D=64, k=16, classes=3, mae=b == "mae_in1k"), name=name))
            for b, name in RELEASE.items()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the workflow with a site overlay pointing `official:` at stand-in checkpoints."""
    work = copy_workflow(ROOT, tmp_path_factory.mktemp("paper_official"))
    site = {"extends": "paper_official.yaml", "official": stand_ins(work / "release")}
    (work / "config" / "site.yaml").write_text(yaml.safe_dump(site))
    return work


def dry_run(workdir, *names):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "snakemake", *names, "-n", "--cores", "2", "--configfile",
                           "config/site.yaml"], cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    block = done.stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}, done.stdout


def test_the_preset_is_an_overlay_of_the_paper_preset_with_official_weights():
    raw = yaml.safe_load((ROOT / PRESET).read_text())
    assert raw["extends"] == "paper.yaml" and raw["preset"] == "paper_official" and raw["retrofit"] == "official"
    config, paper_config = load_configs([ROOT / PRESET]), load_configs([ROOT / "config" / "paper.yaml"])
    assert set(config["official"]) == set(config["backbones"]) == set(RELEASE)
    assert not any((config["pruning"]["models"] or {}).values()) and not any(config["pruning"]["combined"].values())
    # nothing else differs from the paper preset: its evaluation protocol, oracle, transfer, saliency, data
    for key in ("evaluation", "oracle", "transfer", "saliency", "data", "prior_selection"):
        assert config[key] == paper_config[key], key
    # … and its backbones only lack the grid controls (retrofits trained on grid patches: training)
    assert {b: {**v, "grid_control": []} for b, v in paper_config["backbones"].items()} == config["backbones"]


def test_the_dry_run_evaluates_the_released_models_and_trains_no_retrofit_or_pruning(workdir):
    counts, out = dry_run(workdir, *targets(EVALUATION_TABLES, ["figure5"]))
    assert counts["official_checkpoint"] == 3
    assert (counts["evaluate"], counts["oracle"], counts["transfer"], counts["prior_selection"]) == (3, 3, 1, 3)
    assert (counts["throughput"], counts["table"], counts["figure"]) == (3, 6, 1)
    assert "train_backbone" not in counts and "train_pruned" not in counts and "pruning" not in counts
    assert "_spot0" not in out and "deit" not in out  # no retrofit, no DeiT (pruning) checkpoint
    assert not set(TRAINING) & set(counts) and "_grid_control" not in out, counts  # no grid control either


def test_the_oracle_tables_need_no_training(workdir):
    counts, _ = dry_run(workdir, *targets(ORACLE_TABLES))
    assert not set(TRAINING) & set(counts), counts
    assert (counts["official_checkpoint"], counts["oracle"], counts["transfer"], counts["table"]) == (3, 3, 1, 4)


def test_the_whole_preset_needs_no_training_and_builds_no_pruning_table(workdir):
    """Its default target: every table and figure it can measure (not the pruning ones: nothing is pruned)."""
    counts, out = dry_run(workdir)
    assert not set(TRAINING) & set(counts), counts
    assert "pruning_table1" not in out and "paper_figures/paper_official/table5.csv" in out
    assert "paper_figures/paper_official/findings.csv" in out  # its pruning findings: not measured


# ---- end to end on a tiny fake ImageNet: the commands of the preset's rules, one backbone's models ----

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_imagenet_official")
    data = fake_imagenet(root)
    records = {}
    for backbone, path in stand_ins(root / "release").items():  # rule official_checkpoint's command
        records[backbone] = root / f"{backbone}_official.json"
        assert main(["checkpoints", "official", path, "--backbone", backbone, "--out", str(records[backbone])]) == 0
    small = root / "small.yaml"
    small.write_text(yaml.safe_dump({  # the fake-ImageNet test's small settings; fewer searches (time)
        **SMALL, "saliency": {**SMALL["saliency"], "cache_dir": str(root / "sal")},
        "oracle": {**SMALL["oracle"], "budgets": [25], "controls": {"blank": None}},
        "transfer": {"budgets": [25], "random_target": False},
        "prior_selection": {"limit": 6, "candidates": ["isotropic", "center"]}}))
    config = load_configs([ROOT / PRESET, small])
    s = config["prior_selection"]
    selection = json.dumps([{"evaluation": {"split": s["split"], "limit": s["limit"], "priors": s["candidates"],
                                            "seeds": [s["seed"]], "extra_budgets": [], "snapped": False,
                                            "grid_model_priors": [], "extra_budget_priors": [],
                                            "patchdropout": False}}])
    configs, out = ["--config", str(ROOT / PRESET), "--config", str(small)], root / "results"
    common = [*configs, "--data", str(data), "--device", "cpu"]
    model = ["--backbone", "mae_in1k", "--model", f"spot={records['mae_in1k']}"]
    forwards = {}
    commands = {
        "evaluate": ["evaluate", *common, *model, "--out", str(out / "evaluation.csv")],
        "prior_selection": ["evaluate", *common, "--config-json", selection, *model,
                            "--out", str(out / "selection.csv")],
        "oracle": ["oracle", *common, *model, "--out", str(out / "oracle.csv")],
        "transfer": ["transfer", *common, *[f"--model={b}={r}" for b, r in records.items()],
                     "--out", str(out / "transfer.csv")],
        "throughput": ["throughput", *configs, *model, "--device", "cpu", "--out", str(out / "throughput.csv")]}
    for job, command in commands.items():
        with counted_forwards() as forwards[job]:
            assert main(command) == 0, job
    inputs = {"evaluation": [out / "evaluation.csv"], "oracle": [out / "oracle.csv"],
              "transfer": [out / "transfer.csv"], "throughput": [out / "throughput.csv"],
              "prior_selection": [out / "selection.csv"]}
    return inputs, config, records, forwards


class counted_forwards:
    """Counts the SPoT models' image-forwards while active: Counter {(kind, tokens): images}, kind ``fp32_step`` for
    a forward whose positions require grad (a SPoT-ON step), else ``forward``."""

    def __enter__(self):
        self.counts, self.patch = Counter(), pytest.MonkeyPatch()
        embed = SPoTViT.embed_tokens

        def counting(model, images, positions):
            kind = "fp32_step" if positions.requires_grad else "forward"
            self.counts[(kind, positions.shape[-2])] += images.shape[0]
            return embed(model, images, positions)

        self.patch.setattr(SPoTViT, "embed_tokens", counting)
        return self.counts

    def __exit__(self, *exc):
        self.patch.undo()


def expected(rows) -> Counter:
    """The cost script's (kind, budget, count) rows as the counter counts them (scoring kinds merged)."""
    out = Counter()
    for kind, m, count in rows:
        if kind != "knn" and count:
            out[("fp32_step" if kind == "fp32_step" else "forward", m)] += count
    return out


def test_the_cost_estimate_counts_the_forwards_the_commands_perform(run):
    """benchmarks/paper_official_cost.py counts forwards from the config; here they are counted as they happen."""
    _, config, _, forwards = run
    for job, rows in (("evaluate", cost.evaluate_job(config, variants=("spot",))),  # the run evaluates one model
                      ("prior_selection", cost.prior_selection_job(config)), ("oracle", cost.oracle_job(config)),
                      ("transfer", cost.transfer_job(config, len(config["backbones"])))):
        assert forwards[job] == expected(rows), job


def test_official_records_point_at_the_release_files(run):
    _, _, records, _ = run
    for backbone, record in records.items():
        info = json.loads(record.read_text())
        assert info["format"] == "official" and Path(info["path"]).name == RELEASE[backbone]


def test_tables_1_to_6_and_figure5_from_the_released_format(run):
    inputs, config, _, _ = run
    for name in EVALUATION_TABLES:
        table = paper.build(name, {k: inputs[k] for k in paper.ARTIFACTS[name].reads}, config)
        assert len(table), name
    t4 = paper.build("table4", {"transfer": inputs["transfer"]}, config)
    assert len(t4) == 6 and t4["Transfer (%)"].between(0, 100).all()  # every ordered pair of the three models
    t6 = paper.build("table6", {"oracle": inputs["oracle"]}, config).set_index("Case")
    assert {"Background prior", "Boundary prior", "Ascent (SPoT-ON)", "Label obfuscation (SPoT-ON)"} <= set(t6.index)
    t1 = paper.build("table1", {k: inputs[k] for k in ("oracle", "transfer")}, config)
    assert set(t1.Model) == {"MAE-IN1k"} and set(t1[t1.Method == "SPoT-ON"].Positions) == {"Grid", "Subpixel"}
    fig = paper.build("figure5", {k: inputs[k] for k in paper.ARTIFACTS["figure5"].reads}, config)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("SPoT (backbone and prior chosen on val") for label in labels)
