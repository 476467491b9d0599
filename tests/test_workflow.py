"""The Snakemake workflow: the DAG of every preset resolves, bad configs fail clearly, lint is clean, and the smoke
preset runs end to end producing every table and figure, each auditing cleanly."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FMNIST_FIX, copy_workflow, real_fmnist_installed, require

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, cwd=ROOT, timeout=300):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(output: str) -> dict:
    block = output.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the workflow's files, so that runs here never touch the repository's results."""
    work = copy_workflow(ROOT, tmp_path_factory.mktemp("workflow"))
    if (ROOT / "reference" / "smoke").is_dir():  # the published smoke reference: the smoke run compares itself to it
        shutil.copytree(ROOT / "reference" / "smoke", work / "reference" / "smoke")
    return work


def test_paper_preset_resolves_the_full_dag(workdir):
    done = snakemake("-n", "--cores", "8", "--configfile", "config/paper.yaml", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout)
    # cls_in1k, cls_in21k, mae_in1k (+decoder), mae_in1k_ft; DeiT-S and DeiT-T (token pruning)
    assert counts["fetch_checkpoint"] == 6
    assert counts["train_chain_stage"] == 8  # 2 supervised retrofits + MAE retrofit & fine-tune, and grid controls
    assert counts["data_imagenet"] == 1 and "train_backbone" not in counts
    assert (counts["evaluate"], counts["oracle"], counts["transfer"]) == (3, 3, 1)
    assert counts["prior_selection"] == 3  # Salient's candidate settings through each SPoT model
    # pruning: each pruned backbone (DeiT-S/T) × each method (SPOT-AD, EViT, DynamicViT, heuristic); SPoT + SPOT-AD
    # on each SPoT backbone; a pruning job and a throughput job for each backbone, SPoT's and pruning's
    from spot.train.recipes import load_config

    cfg = load_config(workdir / "config" / "paper.yaml")
    pruned, spot_backbones = cfg["pruning"]["backbones"], cfg["backbones"]
    expected = len(pruned) * len(cfg["pruning"]["models"]) + len(spot_backbones) * len(cfg["pruning"]["combined"])
    assert expected == 2 * 4 + 3  # the paper's setting, as the seed and the paper run it
    everyone = len(set(pruned) | set(spot_backbones))
    assert (counts["train_pruned"], counts["pruning"], counts["throughput"]) == (expected, everyone, everyone)
    for deit in ("deit_s", "deit_t"):
        assert f"results/paper/models/{deit}_prune_spot_ad.safetensors" in done.stdout
        assert f"results/paper/checkpoints/{deit}.safetensors" in done.stdout
    assert "results/paper/models/cls_in1k_spotprune_spot_ad_spot.safetensors" in done.stdout
    # every registered table and figure: the paper's 8 tables and figures 1–5, 5b; token pruning's three tables and
    # one figure; the oracle's controls, the prior selection, the findings and the learned placement's table and two
    # figures (ours)
    from spot.paper import ARTIFACTS

    kinds = [a.kind for a in ARTIFACTS.values()]
    assert (counts["table"], counts["figure"]) == (kinds.count("table"), kinds.count("figure")) == (15, 9)


def test_pruning_ablations_preset_adds_the_seeds_ablations(workdir):
    done = snakemake("-n", "--cores", "2", "--configfile", "config/pruning_ablations.yaml", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout)
    # one backbone (CLS-IN21k): 4 methods, 6 ablations, SPOT-AD and EViT fine-tuned at ρ = 0.5, EViT at the shared
    # rate, SPoT + SPOT-AD
    assert counts["train_pruned"] == 4 + 6 + 3 + 1 and counts["train_backbone"] == 1
    assert "results/pruning_ablations/models/cls_in21k_prune_spot_ad_r05.safetensors" in done.stdout
    # standalone: its own models and results, none of another preset's
    assert "results/pruning_ablations/models/cls_in21k_prune_spot_ad_no_dynamics.safetensors" in done.stdout
    assert "results/pruning_ablations/pruning/cls_in21k.csv" in done.stdout
    assert "results/embedded" not in done.stdout and "cls_in1k" not in done.stdout
    # transfer needs two backbones: no transfer job, and the tables reading it (Tables 1, 4, 5) are not built
    assert "transfer" not in counts and "table5.csv" not in done.stdout and counts["table"] == 11
    from spot.train.recipes import load_config, load_recipe

    config = load_config(workdir / "config" / "pruning_ablations.yaml")
    assert load_recipe(config, "prune_spot_ad_no_mean").prune.settings == {"statistics": ["variance"]}
    assert load_recipe(config, "prune_spot_ad_r05").prune.keep_ratio == 0.5
    assert load_recipe(config, "prune_spot_ad_shared").prune.settings == {"shared": True}
    shared_rate, spot_ad = load_recipe(config, "prune_evit_shared_rate"), load_recipe(config, "prune_spot_ad")
    assert shared_rate.prune.method == "evit" and shared_rate.prune.settings == {"fuse": True}
    assert (shared_rate.optimizer, shared_rate.schedule) == (spot_ad.optimizer, spot_ad.schedule)


def resolved_resources(output: str, rule: str) -> dict:
    """The resources Snakemake printed for the first job of ``rule`` (dry-run output)."""
    block = re.search(rf"^(?:local)?rule {rule}:\n(.*?)\n\n", output, re.M | re.S).group(1)
    line = re.search(r"^\s+resources: (.+)$", block, re.M).group(1)
    return dict(item.split("=", 1) for item in line.split(", "))


def test_paper_preset_dry_runs_through_the_slurm_profile(workdir):
    """The README's cluster command (with -n): the SLURM executor plugin is installed, the profile is valid, and a
    training job asks for the preset's GPUs and time and the profile's CPUs and memory (local-check.sh submits them)."""
    done = snakemake("--profile", "workflow/profiles/slurm", "--configfile", "config/paper.yaml", "-n", cwd=workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    train = resolved_resources(done.stdout, "train_chain_stage")
    assert (train["gpu"], train["runtime"], train["cpus_per_task"], train["mem_mb"]) == ("8", "2880", "64", "480000")
    assert train["slurm_partition"] == "gpu"
    evaluate = resolved_resources(done.stdout, "evaluate")
    assert (evaluate["gpu"], evaluate["runtime"]) == ("1", "720") and "cpus_per_task" not in evaluate  # its threads


def test_parsing_the_workflow_does_not_import_torch(workdir, tmp_path):
    """Every cluster job parses the workflow twice: a torch that fails to import must not matter to the DAG."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('torch imported while parsing the workflow')")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([*SNAKEMAKE, "-n", "--cores", "2"], cwd=workdir, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert job_counts(done.stdout)["train_backbone"] == 4


def test_embedded_default_trains_its_own_backbones(workdir):
    done = snakemake("-n", "--cores", "2", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = job_counts(done.stdout)
    assert counts["train_backbone"] == 4 and counts["data_fmnist"] == 1 and "fetch_checkpoint" not in counts


def test_embedded_long_preset_only_lengthens_the_supervised_backbones(workdir):
    from spot.train.recipes import load_config, load_recipe, recipe_to_dict

    done = snakemake("-n", "--cores", "2", "--configfile", "config/embedded_long.yaml", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout)["train_backbone"] == 4 and "results/embedded_long/" in done.stdout
    base = load_config(workdir / "config.yaml")
    long = load_config(workdir / "config" / "embedded_long.yaml")  # its extends: chain resolved
    changed = {name for name in base["recipes"]
               if recipe_to_dict(load_recipe(base, name)) != recipe_to_dict(load_recipe(long, name))}
    assert changed == {"backbone_base", "backbone_cls_in1k", "backbone_cls_in21k"}
    assert load_recipe(long, "backbone_cls_in21k").epochs == 16 and load_recipe(base, "backbone_cls_in21k").epochs == 8
    assert {k: v for k, v in long.items() if k not in ("preset", "recipes")} == \
        {k: v for k, v in base.items() if k not in ("preset", "recipes")}


def test_one_figure_target_runs_only_what_it_needs(workdir):
    done = snakemake("-n", "--cores", "2", "paper_figures/embedded/figure3.pdf", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout) == {"data_fmnist": 1, "examples": 1, "figure": 1, "total": 3}  # no training


def test_a_users_fashion_mnist_folder_as_the_readme_says(workdir):
    """`--config 'data={fmnist_dir: DIR}'` (README set-up, the data script's message) sets only that key."""
    done = snakemake("-n", "-p", "--cores", "2", "results/embedded/data/manifest.json", "--config",
                     "data={fmnist_dir: /srv/fmnist}", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "spot data fmnist --out results/embedded/data --seed 0 --fmnist /srv/fmnist --canvas-size 48" in done.stdout


def test_bad_config_values_fail_with_a_clear_message(workdir):
    def fails(*args):
        done = snakemake("-n", "--cores", "2", *args, cwd=workdir)
        assert done.returncode != 0
        return done.stdout + done.stderr

    message = fails("--config", "retrofit=maybe")
    assert "retrofit" in message and "'maybe'" in message and "train" in message
    assert "budgets" in fails("--config", 'evaluation={"budgets": [0]}')
    bad = workdir / "bad.yaml"
    bad.write_text("recipes:\n  retrofit_cls: {optimizer: {layer_decay: 1.5}}\n")
    message = fails("--configfile", str(bad))  # an overlay that names no base is not a preset
    assert "extends no preset" in message and "extends: config.yaml" in message
    bad.write_text("extends: config.yaml\nrecipes:\n  retrofit_cls: {optimizer: {layer_decay: 1.5}}\n")
    message = fails("--configfile", str(bad))
    assert "optimizer.layer_decay = 1.5 is not valid" in message
    # an overlay reusing the default's results may not change what they depend on
    bad.write_text("extends: config.yaml\npreset: reuse\nresults_of: embedded\nevaluation: {limit: 500}\n")
    message = fails("--configfile", str(bad))
    assert "results_of = 'embedded'" in message and "changes evaluation" in message
    bad.write_text("extends: config.yaml\npreset: reuse\nresults_of: nowhere\n")
    assert "no preset file config/nowhere.yaml" in fails("--configfile", str(bad))


def test_lint_is_clean(workdir):
    done = snakemake("--lint", cwd=workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_notebooks_are_stored_without_outputs():
    import nbformat

    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def _compared_with_the_published_smoke_reference(workdir):
    """The run ended with its comparison to reference/smoke (committed): every record compared, and on the machine
    kind the reference was made on (same CPU model; every job at one thread) every row bit-identical."""
    import json

    from spot.reproduce.compare import compare
    from spot.provenance import parse_cpuinfo

    marker = workdir / "reference" / "smoke" / "PUBLISHED.json"
    require(marker.is_file(), "the published smoke reference (reference/smoke)", "spot publish --preset smoke")
    report = (workdir / "results" / "smoke" / "compare.md").read_text()
    assert "REPRODUCED" in report and "smoke" in report
    c = compare(workdir, workdir / "reference" / "smoke", "smoke")
    assert len(c.rows) > 100 and not len(c.unmatched), c.unmatched.head()
    cpu = parse_cpuinfo(Path("/proc/cpuinfo").read_text())["cpu"] if Path("/proc/cpuinfo").is_file() else None
    if [cpu] == json.loads(marker.read_text())["cpus"]:
        assert (c.rows["verdict"] == "identical").all(), c.rows[c.rows["verdict"] != "identical"].head()
        assert c.exit_code() == 0


def test_smoke_preset_end_to_end(workdir):
    """The whole DAG on the tiny preset: every table and figure exists, is non-empty and audits cleanly."""
    require(os.environ.get("SPOT_SKIP_SMOKE") != "1", "the smoke run (SPOT_SKIP_SMOKE=1 asked to leave it out)",
            "unset SPOT_SKIP_SMOKE")
    require(real_fmnist_installed(), "Fashion-MNIST", FMNIST_FIX)
    done = snakemake("--cores", "2", "--configfile", "config/smoke.yaml", cwd=workdir, timeout=1500)
    assert done.returncode == 0, done.stderr[-5000:]
    out = workdir / "paper_figures" / "smoke"
    from spot.paper import ARTIFACTS

    tables = [n for n, a in ARTIFACTS.items() if a.kind == "table"]
    figures = [n for n, a in ARTIFACTS.items() if a.kind == "figure"]
    assert {"pruning_table1", "pruning_ablations", "sampling_vs_pruning", "figure_sampling_vs_pruning"} <= set(ARTIFACTS)
    for name in tables:
        for ext in ("csv", "md", "tex"):
            assert (out / f"{name}.{ext}").stat().st_size > 0, name
    for name in figures:
        for ext in ("pdf", "png"):
            assert (out / f"{name}.{ext}").stat().st_size > 0, name
    import pandas as pd

    comparison = pd.read_csv(out / "sampling_vs_pruning.csv")  # every cost point has both families measured
    assert len(comparison) == 3 * 2 and comparison["Winner"].isin(["pruning", "sampling", "tie", "tie (within noise)"]).all()
    from spot.reproduce.audit import audit

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for target in [out / f"{n}.csv" for n in tables] + [out / f"{n}.pdf" for n in figures]:
            links, _ = audit(target.relative_to(workdir))
            assert links and not [link for link in links if link.broken], target
        links, _ = audit(Path("paper_figures/smoke/table5.csv"))
        kinds = {link.kind for link in links}
        assert {"result table", "checkpoint", "checkpoint record", "data manifest"} <= kinds
    finally:
        os.chdir(cwd)
    _compared_with_the_published_smoke_reference(workdir)
    # a second run has nothing to do
    again = snakemake("-n", "--cores", "2", "--configfile", "config/smoke.yaml", cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr
    # a preset that reuses these results (`results_of:`, an overlay on a finished run) re-runs none of them:
    # no shared job's params may hold the preset's file names
    reusing = "extends: smoke.yaml\npreset: smoke_reuse\nresults_of: smoke\n"
    (workdir / "config" / "smoke_reuse.yaml").write_text(reusing)
    reuse = snakemake("-n", "--cores", "2", "--configfile", "config/smoke_reuse.yaml", cwd=workdir)
    assert reuse.returncode == 0, reuse.stderr[-3000:]
    shared = {"train_chain_stage", "train_backbone", "evaluate", "prior_selection", "oracle", "transfer",
              "train_pruned", "train_policy"}
    assert not shared & set(job_counts(reuse.stdout)), job_counts(reuse.stdout)
    # the HTML report, with a caption per table and figure
    report = snakemake("--configfile", "config/smoke.yaml", "--report", "report.html", cwd=workdir)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert (workdir / "report.html").stat().st_size > 100_000
