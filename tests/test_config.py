"""Presets (spot.config): the paper preset is the complete base, every other preset an overlay that names it with
`extends:`; the workflow and the commands resolve them the same way; the modules the DAG build reads import no torch."""
import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from weights.test_official import release_state, save

from spot.config import add_config_arguments, config_from_args, load_config, load_configs

ROOT = Path(__file__).resolve().parents[1]


def test_extends_chains_are_resolved_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("a: {x: 1, y: 2}\nlist: [1, 2]\n")
    (tmp_path / "sub" / "mid.yaml").write_text("extends: ../base.yaml\na: {y: 3}\n")
    (tmp_path / "top.yaml").write_text("extends: sub/mid.yaml\nlist: [9]\nb: 4\n")
    assert load_config(tmp_path / "top.yaml") == {"a": {"x": 1, "y": 3}, "list": [9], "b": 4}
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ValueError, match="extends itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("extends: [a]\n")
    with pytest.raises(ValueError, match="path of another config file"):
        load_config(tmp_path / "bad.yaml")
    assert load_configs([tmp_path / "top.yaml"], {"a": {"x": 0}})["a"] == {"x": 0, "y": 3}


def test_replace_takes_a_mapping_whole_instead_of_merging_it(tmp_path):
    (tmp_path / "base.yaml").write_text("a: {x: 1, y: 2}\nb: {z: 3}\n")
    (tmp_path / "one.yaml").write_text("extends: base.yaml\nreplace: [a]\na: {y: 5}\nb: {w: 4}\n")
    assert load_config(tmp_path / "one.yaml") == {"a": {"y": 5}, "b": {"z": 3, "w": 4}}  # a replaced, b merged
    (tmp_path / "unset.yaml").write_text("extends: base.yaml\nreplace: [c]\n")
    with pytest.raises(ValueError, match="replace must list top-level keys this file sets"):
        load_config(tmp_path / "unset.yaml")
    (tmp_path / "orphan.yaml").write_text("replace: [a]\na: {}\n")
    with pytest.raises(ValueError, match="needs `extends:`"):
        load_config(tmp_path / "orphan.yaml")


def test_command_line_layers_files_then_json_items(tmp_path):
    (tmp_path / "site.yaml").write_text("data: {root: /srv/imagenet}\n")
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    args = p.parse_args(["--config", "config/paper.yaml", "--config-json",
                         json.dumps([str(tmp_path / "site.yaml"), {"evaluation": {"limit": 7}}])])
    config = config_from_args(args)
    assert config["data"]["root"] == "/srv/imagenet" and config["evaluation"]["limit"] == 7
    assert config["preset"] == "paper" and config["evaluation"]["budgets"] == [25, 49, 100, 196]
    again = p.parse_args(["--config-json", json.dumps(["config/paper.yaml", {"evaluation": {"limit": 7}}]),
                          "--config-json", json.dumps([{"evaluation": {"limit": 3, "seeds": [5]}}])])
    layered = config_from_args(again)  # a repeated --config-json layers over the previous ones
    assert layered["evaluation"]["limit"] == 3 and layered["evaluation"]["seeds"] == [5]
    assert layered["evaluation"]["budgets"] == [25, 49, 100, 196]
    for bad in ("{not json", '{"a": 1}', "[1]"):
        with pytest.raises(ValueError, match="--config-json"):
            config_from_args(p.parse_args(["--config-json", bad]))
    with pytest.raises(ValueError, match="give a config file"):
        config_from_args(p.parse_args([]))


def test_the_paper_preset_is_complete_and_extends_nothing():
    """A key the paper preset leaves out would take a code default; every experiment setting is written in it."""
    from spot.experiments.evaluate import EvaluationSettings
    from spot.experiments.oracle import OracleSettings, TransferSettings
    from spot.experiments.saliency import SaliencySettings
    from spot.experiments.throughput import ThroughputSettings

    raw = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert "extends" not in raw

    def missing(cls, values, where):
        out = []
        for f in dataclasses.fields(cls):
            if f.name not in values:
                out.append(f"{where}.{f.name}")
            elif dataclasses.is_dataclass(f.type if not isinstance(f.type, str) else None):
                out += missing(f.type, values[f.name], f"{where}.{f.name}")
        return out

    sections = {"evaluation": EvaluationSettings, "oracle": OracleSettings, "transfer": TransferSettings,
                "throughput": ThroughputSettings}
    gaps = [g for name, cls in sections.items() for g in missing(cls, raw[name], name)]
    gaps += [f"evaluation.knn.{k}" for k in ("k", "temperature", "train_split", "train_limit", "chunk_size")
             if k not in raw["evaluation"]["knn"]]
    gaps += [f"oracle.trajectories.{k}" for k in ("images",) if k not in raw["oracle"]["trajectories"]]
    gaps += [f"saliency.{f.name}" for f in dataclasses.fields(SaliencySettings)
             if f.name not in raw["saliency"]]
    assert not gaps, f"config/paper.yaml leaves these to code defaults: {gaps}"
    for key in ("preset", "retrofit", "official", "train_launcher", "resources", "data", "backbones", "recipes",
                "figures"):
        assert key in raw, key


def test_every_other_preset_is_an_overlay():
    for name in ("config.yaml", "config/smoke.yaml", "config/embedded_long.yaml", "config/pruning_ablations.yaml"):
        raw = yaml.safe_load((ROOT / name).read_text())
        assert raw.get("extends"), f"{name} must name what it extends"
    embedded = load_config(ROOT / "config.yaml")
    assert embedded["preset"] == "embedded" and embedded["data"]["kind"] == "fmnist"
    assert load_config(ROOT / "config" / "smoke.yaml")["evaluation"]["limit"] == 100


def test_modules_the_workflow_reads_import_no_torch(tmp_path):
    """The DAG build imports spot, spot.config, spot.train.recipes, spot.core.placement, spot.paper and
    spot.experiments.protocol as they are (common.smk): a torch that cannot be imported must not matter to them."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('torch imported while building the DAG')")
    code = f"""
import sys
import spot, spot.config, spot.train.recipes, spot.core.placement, spot.paper, spot.experiments.protocol
config = spot.config.load_config({str(ROOT / 'config.yaml')!r})
spot.train.recipes.load_recipe(config, "retrofit_cls")
assert spot.train.recipes.load_recipe(config, "prune_evit").prune.method == "evit"
assert spot.core.placement.check_placement(dict(name="center", scale=0.3), "x").label == "center(scale=0.3)"
assert "table5" in spot.paper.ARTIFACTS and "figure5" in spot.paper.ARTIFACTS
assert "evaluation" in spot.experiments.protocol.RESULT_KINDS
assert "torch" not in sys.modules or type(sys.modules["torch"]).__name__ == "_LazyModule"  # never loaded
"""
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_settings_modules_import_no_torch():
    """Every section's typed settings live in spot.settings, which the DAG build imports with spot.config: with
    torch, timm, torchvision and safetensors unimportable, every spot.settings module imports, and config.yaml's
    sections (every preset's) are built and validated by spot.config.check_sections."""
    modules = sorted(p.stem for p in (ROOT / "spot" / "settings").glob("*.py") if p.stem != "__init__")
    presets = [str(ROOT / "config.yaml"), *map(str, sorted((ROOT / "config").glob("*.yaml")))]
    code = f"""
import importlib, sys
for name in ("torch", "timm", "torchvision", "safetensors", "transformers"):
    sys.modules[name] = None  # import torch → ImportError
import spot.settings
for name in {modules!r}:
    importlib.import_module("spot.settings." + name)
import spot.config as cfg
from spot.data.canvas import CanvasConfig
assert all(module.startswith("settings.") for module, _ in cfg.SECTION_SETTINGS.values())
for preset in {presets!r}:
    config = cfg.load_config(preset)
    unused = () if any((config["pruning"].get("models") or {{}}).values()) else ("pruning",)
    assert set(cfg.check_sections(config, unused=unused)) == set(cfg.SECTION_SETTINGS), preset
    if config["data"]["kind"] == "fmnist" and config["data"].get("canvas") is not None:
        cfg.settings_from_dict(CanvasConfig, config["data"]["canvas"], "data.canvas").validate()
heavy = sorted(n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in
               ("torch", "timm", "torchvision", "safetensors", "transformers"))
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_registry_declares_every_artifact_once_with_its_inputs_and_caption():
    from spot import paper

    names = list(paper.ARTIFACTS)
    assert [n for n in names if n.startswith("table")] == [f"table{i}" for i in range(1, 9)]
    assert [n for n in names if n.startswith("figure")] == ["figure1", "figure2", "figure3", "figure4", "figure5",
                                                            "figure5b", "figure_sampling_vs_pruning",
                                                            "figure_learned_placement", "figure_learned_positions"]
    assert {"pruning_table1", "pruning_ablations", "sampling_vs_pruning", "learned_placement"} <= set(names)
    for a in paper.ARTIFACTS.values():
        assert a.reads and set(a.reads) <= set(paper.RESULT_KINDS) and len(a.caption) > 40, a.name
    with pytest.raises(ValueError, match="registered twice"):
        paper.registry.table("table5", reads=("oracle",), caption="again")(lambda inputs, config: None)
    with pytest.raises(ValueError, match="unknown result kind"):
        paper.registry.table("table99", reads=("nope",), caption="x")


# ------------------------------------------------------------------------- a mistake fails at the dry run, in a line

def test_settings_check_every_value_against_its_declared_type():
    """settings_from_dict (every section's and every recipe's typed settings): the declared type decides, not what
    YAML or the command line happened to produce; NaN and infinities are no numbers; one line names key and value."""
    from spot.experiments.evaluate import EvaluationSettings
    from spot.config import settings_from_dict
    from spot.train.recipes import load_recipe, recipe_from_dict

    def message(fn):
        with pytest.raises(ValueError) as err:
            fn()
        assert "\n" not in str(err.value)
        return str(err.value)

    base = load_config(ROOT / "config.yaml")

    def recipe(**values):
        return load_recipe({**base, "recipes": {**base["recipes"], "r": {"extends": "retrofit_cls", **values}}}, "r")

    assert message(lambda: recipe(epochs="two")) == "recipes.r.epochs must be an integer, got 'two'"
    assert message(lambda: recipe(epochs=-1)) == "recipes.r.epochs = -1 is not valid; accepted: an integer ≥ 1"
    assert message(lambda: recipe(seed="abc")) == "recipes.r.seed must be an integer, got 'abc'"
    assert message(lambda: recipe(seed=True)) == "recipes.r.seed must be an integer, got true"
    for bad in (float("nan"), float("inf"), ".nan", "fast"):
        assert message(lambda: recipe(optimizer={"lr": bad})).startswith(
            "recipes.r.optimizer.lr must be a finite number or null, got ")
    assert "recipes.r.optimizer.betas" in message(lambda: recipe(optimizer={"betas": ["a", 0.9]}))
    assert recipe(optimizer={"lr": "3e-3"}).optimizer.lr == 3e-3  # YAML 1.1 reads 3e-3 as a string
    assert message(lambda: recipe_from_dict({"optimizer": {"lrr": 1}}, "x")).startswith(
        "recipes.x.optimizer: unknown key 'lrr'; accepted: betas, blr, clip_grad, eps, layer_decay, lr, name")
    evaluation = dict(base["evaluation"])
    assert message(lambda: settings_from_dict(EvaluationSettings, {**evaluation, "priorz": []}, "evaluation")) \
        .startswith("evaluation: unknown key 'priorz'; accepted: autocast, batch_size, budgets")
    assert message(lambda: settings_from_dict(EvaluationSettings, {**evaluation, "limit": "100"}, "evaluation")) \
        == "evaluation.limit must be an integer or null, got '100'"
    assert message(lambda: settings_from_dict(EvaluationSettings, {**evaluation, "knn": {"temperature": "x"}},
                                              "evaluation")) == \
        "evaluation.knn.temperature must be a finite number, got 'x'"


def test_command_line_values_are_read_as_yaml():
    """Snakemake reads a nested --config value with YAML's BaseLoader (every scalar a string); the workflow reads
    the same arguments as a config file would be read, quotes included."""
    from spot.config import parse_config_args

    assert parse_config_args(["evaluation={budgets: [4, 9], limit: null}", 'data={root: "a b;c", seed: 3}',
                              "retrofit=train", "recipe_seed_offset=2", "results_of=", "x={y: [1, 2"]) == {
        "evaluation": {"budgets": [4, 9], "limit": None}, "data": {"root": "a b;c", "seed": 3},
        "retrofit": "train", "recipe_seed_offset": 2, "results_of": None, "x": "{y: [1, 2"}
    assert parse_config_args(["a={b: 1}", "a={c: 2}"]) == {"a": {"b": 1, "c": 2}}  # repeated keys merge
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_config_args(["novalue"])


@pytest.mark.parametrize("preset", [str(p.relative_to(ROOT)) for p in [ROOT / "config.yaml",
                                                                       *sorted((ROOT / "config").glob("*.yaml"))]])
def test_every_section_of_every_preset_builds_the_commands_settings(preset):
    """spot.config.check_sections builds what each command builds: every shipped preset passes, and its schema check
    too."""
    from spot.config import SECTION_SETTINGS, check_finite, check_schema, check_sections

    config = load_config(ROOT / preset)
    check_schema(config, yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text()))
    check_finite(config)
    unused = () if any((config["pruning"].get("models") or {}).values()) else ("pruning",)
    settings = check_sections(config, unused=unused)
    assert set(settings) == set(SECTION_SETTINGS) == {"evaluation", "oracle", "transfer", "throughput", "saliency",
                                                      "pruning", "learned_placement"}


def test_schema_errors_are_one_line_naming_the_key_and_what_is_accepted():
    from spot.config import check_finite, check_schema

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    config = load_config(ROOT / "config.yaml")

    def message(change):
        with pytest.raises(ValueError) as err:
            bad = json.loads(json.dumps(config))
            change(bad)
            check_schema(bad, schema)
            check_finite(bad)
        assert "\n" not in str(err.value) and len(str(err.value)) < 400, str(err.value)
        return str(err.value)

    assert message(lambda c: c.update(evaluaton={})).startswith(
        "unknown top-level key 'evaluaton'; accepted: backbones, data, evaluation, figures")
    assert message(lambda c: c["data"]["canvas"].update(canvas_sise=4)).startswith(
        "data.canvas: unknown key 'canvas_sise'; accepted: canvas_size, fragments")
    assert message(lambda c: c["data"].update(kind="mnist")) == \
        "data.kind = 'mnist' is not valid; accepted: fmnist, imagenet"
    assert message(lambda c: c["backbones"].update({"a b;c": c["backbones"]["cls_in1k"]})).startswith(
        "backbones: the name 'a b;c' is not valid; accepted: a string matching ^[A-Za-z0-9_]")
    assert message(lambda c: c["backbones"]["cls_in1k"].update(classifier="fetch:../x")).startswith(
        "backbones.cls_in1k.classifier = 'fetch:../x' is not valid; accepted: a string matching ^(train|fetch):")
    assert message(lambda c: c["pruning"]["models"].update(spot_ad="x;y")).startswith(
        "pruning.models.spot_ad = 'x;y' is not valid; accepted: null or a string matching")
    assert message(lambda c: c["data"]["canvas"].update(placement_std=float("nan"))) == \
        "data.canvas.placement_std = nan is not valid; accepted: a finite number"


# The same through `snakemake -n`: a copy of the workflow, each mistake a dry run that fails in a few lines.

def dry_run(workdir, *args, env=None):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           **(env or {})}
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=300, env=env)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from helpers import copy_workflow

    work = copy_workflow(ROOT, tmp_path_factory.mktemp("workflow"))
    overlays = {
        "priorz": {"evaluation": {"priorz": ["uniform"]}},
        "top": {"evaluaton": {"limit": 5}},
        "parent_lr": {"recipes": {"retrofit_cls": {"optimizer": {"lr": "fast"}}}},
        "nan_lr": {"recipes": {"retrofit_cls": {"optimizer": {"lr": float("nan")}}}},
        "epochs": {"recipes": {"retrofit_cls": {"epochs": "two"}}},
        "seed": {"recipes": {"backbone_base": {"seed": "abc"}}},
        "backbone_name": {"backbones": {"x; rm -rf y": {"label": "X", "classifier": "train:backbone_cls_in1k",
                                                        "retrofit": ["retrofit_cls"], "grid_control": []}}},
        "fetch": {"backbones": {"cls_in1k": {"classifier": "fetch:a b"}}},
        "setting": {"pruning": {"models": {"a/b": "prune_evit"}}},
        "canvas": {"data": {"canvas": {"canvas_sise": 40}}},
        "missing_base": {"extends": "nope.yaml"},
    }
    (work / "bad").mkdir()
    for name, overlay in overlays.items():
        (work / "bad" / f"{name}.yaml").write_text(yaml.safe_dump({"extends": "../config.yaml", **overlay}))
    return work


BAD = [  # (arguments of the dry run, the line it must print)
    (["--configfile", "bad/priorz.yaml"], "config: evaluation: unknown key 'priorz'; accepted: autocast, batch_size,"),
    (["--configfile", "bad/top.yaml"], "config: unknown top-level key 'evaluaton'; accepted: backbones,"),
    (["--configfile", "bad/parent_lr.yaml"],  # named in the recipe that writes it, not in one extending it
     "config: recipes.retrofit_cls.optimizer.lr must be a finite number or null, got 'fast'"),
    (["--configfile", "bad/nan_lr.yaml"], "config: recipes.retrofit_cls.optimizer.lr = nan is not valid; accepted: "
                                          "a finite number"),
    (["--configfile", "bad/epochs.yaml"], "config: recipes.retrofit_cls.epochs must be an integer, got 'two'"),
    (["--configfile", "bad/seed.yaml"], "config: recipes.backbone_base.seed must be an integer, got 'abc'"),
    (["--config", "recipes={retrofit_cls: {epochs: -1}}"],
     "config: recipes.retrofit_cls.epochs = -1 is not valid; accepted: an integer ≥ 1"),
    (["--config", "evaluation={subset_seed: abc}"],
     "config: evaluation.subset_seed must be an integer, got 'abc'"),
    (["--config", "oracle={settings: [{lr: .nan, steps: 3}]}"],
     "config: oracle.settings[0].lr = nan is not valid; accepted: a finite number"),  # before the typed check
    (["--config", "throughput={dtype: float8}"], "config: throughput.dtype = 'float8'; accepted: float32"),
    (["--config", "prior_selection={candidates: [centre]}"], "unknown placement 'centre'"),
    (["--configfile", "bad/backbone_name.yaml"],
     "config: backbones: the name 'x; rm -rf y' is not valid; accepted: a string matching ^[A-Za-z0-9_]"),
    (["--configfile", "bad/fetch.yaml"], "config: backbones.cls_in1k.classifier = 'fetch:a b' is not valid"),
    (["--configfile", "bad/setting.yaml"], "config: pruning.models: the name 'a/b' is not valid"),
    (["--configfile", "bad/canvas.yaml"], "config: data.canvas: unknown key 'canvas_sise'; accepted: canvas_size,"),
    (["--configfile", "bad/missing_base.yaml"], "config: config file 'bad/nope.yaml' not found"),
]


@pytest.mark.parametrize("args, line", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_config_is_named_at_the_dry_run_in_one_line(workdir, args, line):
    rc, out = dry_run(workdir, *args)
    assert rc != 0 and line in out, out[-3000:]
    assert len(out.splitlines()) < 30, out


def test_the_check_needs_no_torch(workdir, tmp_path):
    """The DAG build checks every section with spot.settings, loaded without spot/__init__: no torch needed."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('torch imported while parsing the workflow')")
    rc, out = dry_run(workdir, "--configfile", "bad/priorz.yaml", env={"PYTHONPATH": str(tmp_path)})
    assert rc != 0 and "config: evaluation: unknown key 'priorz'" in out and "torch imported" not in out, out[-3000:]


def test_numeric_command_line_overrides_work(workdir):
    rc, out = dry_run(workdir, "--config", "evaluation={budgets: [4, 9], limit: 100}", "oracle={budgets: [4]}",
                      "recipes={retrofit_cls: {epochs: 2, optimizer: {lr: 1e-3}}}")
    assert rc == 0, out[-3000:]


@pytest.mark.parametrize("preset", [str(p.relative_to(ROOT)) for p in [ROOT / "config.yaml",
                                                                       *sorted((ROOT / "config").glob("*.yaml"))]])
def test_every_shipped_preset_dry_runs(workdir, preset):
    """A stand-in for what a preset reads from outside its own run: the released weights (paper_official)."""
    config = load_config(ROOT / preset)
    args = ["--configfile", preset]
    if config.get("retrofit") == "official":
        (workdir / "release").mkdir(exist_ok=True)
        for name in config["official"]:
            (workdir / "release" / f"{name}.pth").touch()
        args += ["--config", "official={" + ", ".join(f"{n}: release/{n}.pth" for n in config["official"]) + "}"]
    rc, out = dry_run(workdir, *args)
    assert rc == 0, out[-3000:]


def test_config_strings_reach_the_shell_quoted(workdir):
    """A path with a space or `;` stays one argument: `snakemake -n -p` prints the commands the jobs would run."""
    rc, out = dry_run(workdir, "-p", "results/embedded/data/manifest.json", "--config",
                      'data={fmnist_dir: "/srv/my fmnist; touch x"}')
    assert rc == 0, out[-3000:]
    assert "spot data fmnist --out results/embedded/data --seed 0 --fmnist '/srv/my fmnist; touch x' " in out
    (workdir / "my data").mkdir(exist_ok=True)
    (workdir / "my data" / "manifest.json").write_text("{}")
    rc, out = dry_run(workdir, "-p", "results/embedded/evaluation/cls_in1k.csv", "--config", 'data={root: "my data"}')
    assert rc == 0, out[-3000:]
    assert " --data 'my data' --out results/embedded/evaluation/cls_in1k.csv" in out
    (workdir / "release dir").mkdir(exist_ok=True)
    (workdir / "release dir" / "a;b.pth").touch()
    rc, out = dry_run(workdir, "-p", "results/embedded/models/cls_in1k_official.json", "--config", "retrofit=official",
                      'official={cls_in1k: "release dir/a;b.pth"}')
    assert rc == 0, out[-3000:]
    assert "spot checkpoints official 'release dir/a;b.pth' --backbone cls_in1k" in out


def test_names_are_wildcard_constraints_matched_literally(workdir):
    """A backbone name with a dot (allowed by the schema) is escaped in the `backbone` wildcard's constraint."""
    (workdir / "bad" / "dotted.yaml").write_text(yaml.safe_dump({"extends": "../config.yaml", "backbones": {
        "cls.v2": {"label": "CLS v2", "classifier": "train:backbone_cls_in1k", "retrofit": ["retrofit_cls"],
                   "grid_control": []}}}))
    rc, out = dry_run(workdir, "results/embedded/evaluation/cls.v2.csv", "--configfile", "bad/dotted.yaml")
    assert rc == 0 and "results/embedded/models/cls.v2_spot0.safetensors" in out, out[-3000:]
    rc, out = dry_run(workdir, "results/embedded/evaluation/clsXv2.csv", "--configfile", "bad/dotted.yaml")
    assert rc != 0 and "MissingRuleException" in out, out[-3000:]


def test_a_quoted_path_with_a_space_and_a_semicolon_runs(workdir):
    """Not only printed quoted: the official-checkpoint job really runs on `release dir/a;b.pth` and records that
    file, and nothing after the `;` is executed."""
    from spot.provenance import sha256_file

    release = workdir / "release run"
    release.mkdir(exist_ok=True)
    weights = save(release, release_state(depth=1, D=64, k=8, classes=5), name="a;touch injected.pth")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    target = "results/embedded/models/cls_in1k_official.json"
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", target, "--config", "retrofit=official",
                           f'official={{cls_in1k: "release run/{weights.name}"}}'],
                          cwd=workdir, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    record = json.loads((workdir / target).read_text())
    assert Path(record["path"]) == weights.resolve() and record["sha256"] == sha256_file(weights)
    assert not list(workdir.rglob("injected.pth"))
