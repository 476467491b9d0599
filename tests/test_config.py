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
    from spot.evaluate import EvaluationSettings
    from spot.oracle import OracleSettings, TransferSettings
    from spot.saliency import SaliencySettings
    from spot.throughput import ThroughputSettings

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
    """The DAG build loads spot.config, spot.recipes and spot.paper without spot/__init__ (common.smk's
    spot_module): a torch that cannot be imported must not matter to them."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('torch imported while building the DAG')")
    code = f"""
import importlib, importlib.util, sys, types
pkg = types.ModuleType("_spot_light"); pkg.__path__ = [{str(ROOT / 'spot')!r}]; sys.modules["_spot_light"] = pkg
config = importlib.import_module("_spot_light.config").load_config({str(ROOT / 'config.yaml')!r})
importlib.import_module("_spot_light.recipes").load_recipe(config, "retrofit_cls")
assert importlib.import_module("_spot_light.recipes").load_recipe(config, "prune_evit").prune.method == "evit"
placement = importlib.import_module("_spot_light.placement")
assert placement.check_placement(dict(name="center", scale=0.3), "x").label == "center(scale=0.3)"
paper = importlib.import_module("_spot_light.paper")
assert "table5" in paper.ARTIFACTS and "figure5" in paper.ARTIFACTS
assert "torch" not in sys.modules or type(sys.modules["torch"]).__name__ == "_LazyModule"  # never loaded
"""
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_registry_declares_every_artifact_once_with_its_inputs_and_caption():
    from spot import paper

    names = list(paper.ARTIFACTS)
    assert [n for n in names if n.startswith("table")] == [f"table{i}" for i in range(1, 9)]
    assert [n for n in names if n.startswith("figure")] == ["figure1", "figure2", "figure3", "figure4", "figure5",
                                                            "figure5b", "figure_sampling_vs_pruning"]
    assert {"pruning_table1", "pruning_ablations", "sampling_vs_pruning"} <= set(names)
    for a in paper.ARTIFACTS.values():
        assert a.reads and set(a.reads) <= set(paper.RESULT_KINDS) and len(a.caption) > 40, a.name
    with pytest.raises(ValueError, match="registered twice"):
        paper.registry.table("table5", reads=("oracle",), caption="again")(lambda inputs, config: None)
    with pytest.raises(ValueError, match="unknown result kind"):
        paper.registry.table("table99", reads=("nope",), caption="x")
