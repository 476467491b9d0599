# Helpers shared by the rules: config validation, paths per preset, recipes, model chains.
import json
import os
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

min_version("9.0")

validate(config, schema="../schemas/config.schema.yaml")

envvars:
    "PATH",


# jobs find `spot` and `papermill` of the Python that runs Snakemake, also without an activated virtual environment;
# training jobs start with `train_launcher` (e.g. torchrun): an environment variable, not a param, because it does
# not change results and must not trigger re-training
os.environ.update(SPOT_TRAIN=config["train_launcher"])
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
PRESET = config["preset"]
RESULTS = f"results/{PRESET}"
FIGURES = f"paper_figures/{PRESET}"
STATE = f"runs/{PRESET}/state"  # resumable training state: deliberately not a declared output
DATA = config["data"]["root"] or f"{RESULTS}/data"
MODELS = list(config["backbones"])


def _spot_recipes():
    """``spot.recipes`` (standard library + yaml) loaded without the ``spot`` package, whose ``__init__`` imports
    torch and timm: parsing the workflow stays light, which every cluster job pays twice (sbatch job, srun step)."""
    import importlib.util

    name = "_spot_recipes"
    if name not in sys.modules:
        package = importlib.util.find_spec("spot")
        if package is None:
            raise WorkflowError("the spot package is not installed: pip install -c constraints.txt -e . (README)")
        spec = importlib.util.spec_from_file_location(
            name, Path(package.submodule_search_locations[0]) / "recipes.py")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded  # dataclasses resolve the module's annotations through sys.modules
        spec.loader.exec_module(loaded)
    return sys.modules[name]


def _check_recipes():
    """Fail at DAG-build time, with spot's own message, on any recipe the DAG uses that is invalid."""
    load_recipe = _spot_recipes().load_recipe

    used = set()
    for name, b in config["backbones"].items():
        for spec in (b.get("classifier"), b.get("pretrained")):
            if spec and spec.startswith("train:"):
                used.add(spec.split(":", 1)[1])
        used.update(b.get("retrofit", []) + b.get("grid_control", []))
    for recipe in sorted(used):
        try:
            load_recipe(config, recipe)
        except ValueError as err:
            raise WorkflowError(f"config: {err}")


_check_recipes()

# The merged configuration (config.yaml + presets + --config overrides) that the `spot` commands read. Rewritten
# only when it changes; rules record the sections that change their results in `params`, so editing a setting
# re-runs exactly the jobs it affects (and editing workers/threads/paths re-runs nothing).
MERGED_CONFIG = f"{RESULTS}/config.yaml"
_text = yaml.safe_dump(config, sort_keys=False)
if not Path(MERGED_CONFIG).is_file() or Path(MERGED_CONFIG).read_text() != _text:
    Path(MERGED_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    _tmp = Path(MERGED_CONFIG).with_suffix(".yaml.tmp")
    _tmp.write_text(_text)
    _tmp.replace(MERGED_CONFIG)


def recipe_params(name):
    """The resolved recipe as a plain dict: the params of a training job (a change re-trains)."""
    recipes = _spot_recipes()
    load_recipe, recipe_to_dict = recipes.load_recipe, recipes.recipe_to_dict

    return json.dumps(recipe_to_dict(load_recipe(config, name)), sort_keys=True)


def spec_path(model, role):
    """Checkpoint of a backbone's `classifier` or `pretrained` spec (`train:RECIPE` or `fetch:NAME`)."""
    spec = config["backbones"][model][role]
    kind, name = spec.split(":", 1)
    if kind == "fetch":
        return f"{RESULTS}/checkpoints/{name}.safetensors"
    return f"{RESULTS}/models/{model}_{role}.safetensors"


def recipe_chain(model, variant):
    """The recipes of a retrofit chain: variant `spot` (retrofit) or `gridctl` (its grid control)."""
    b = config["backbones"][model]
    return b["retrofit"] if variant == "spot" else b["grid_control"]


def chain_output(model, variant, stage=None):
    recipes = recipe_chain(model, variant)
    stage = len(recipes) - 1 if stage is None else stage
    return f"{RESULTS}/models/{model}_{variant}{stage}.safetensors"


def chain_parent(wildcards):
    stage = int(wildcards.stage)
    if stage > 0:
        return chain_output(wildcards.model, wildcards.variant, stage - 1)
    return spec_path(wildcards.model, config["backbones"][wildcards.model].get("start", "classifier"))


def spot_model(model):
    """The retrofitted SPoT model of a backbone: trained here, or the authors' released weights (retrofit: official)."""
    if config["retrofit"] == "official":
        return f"{RESULTS}/models/{model}_official.json"
    return chain_output(model, "spot")


def model_args(model):
    """--model NAME=PATH arguments of the experiment commands for one backbone family."""
    return {f"{model}:vit": spec_path(model, "classifier"), f"{model}:spot": spot_model(model),
            f"{model}:gridctl": chain_output(model, "gridctl")}


def all_outputs():
    from itertools import chain as _concat

    return list(_concat(
        [f"{FIGURES}/table{i}.csv" for i in range(1, 9)],
        [f"{FIGURES}/figure{i}.pdf" for i in FIGURE_INPUTS],
    ))


def data_manifest():
    """The prepared dataset's manifest (what every stage reads): built by a rule unless data.root points elsewhere."""
    if config["data"]["root"]:
        return f"{config['data']['root']}/manifest.json"
    return f"{RESULTS}/data/imagenet/manifest.json" if config["data"]["kind"] == "imagenet" \
        else f"{RESULTS}/data/manifest.json"


def data_root():
    return str(Path(data_manifest()).parent)


def _train_shell(recipe_key):
    return (
        "$SPOT_TRAIN --config {params.config} --recipe {params.recipe_name} --data {params.data}"
        " --out {output.weights} --state-dir {params.state} --no-progress {params.parent} > {log} 2>&1"
    )


def evaluation_protocol(keys):
    """The `evaluation:` settings another experiment shares (a change re-runs it too)."""
    return {k: config["evaluation"].get(k) for k in keys}


def _model_flags(models):
    return " ".join(f"--model {name}={path}" for name, path in models.items())


def _evaluations():
    return [f"{RESULTS}/evaluation/{m}.csv" for m in MODELS]


def _oracles():
    return [f"{RESULTS}/oracle/{m}.csv" for m in MODELS]


# what each table/figure is computed from (result tables; the notebooks read their provenance sidecars too)


TABLE_INPUTS = {
    1: _oracles,
    2: lambda: _evaluations() + _oracles(),
    3: _oracles,
    4: lambda: [f"{RESULTS}/transfer.csv"],
    5: lambda: _evaluations() + _oracles(),
    6: _oracles,
    7: lambda: [spot_model(m).replace(".safetensors", ".json") for m in MODELS if config["retrofit"] == "train"],
    8: _evaluations,
}


FIGURE_INPUTS = {
    "1": lambda: [data_manifest()],
    "2": lambda: [data_manifest()],
    "3": lambda: [data_manifest()],
    "4": lambda: [f"{RESULTS}/oracle/{m}.trajectories.npz" for m in MODELS],
    "5": lambda: [f"{RESULTS}/throughput.csv"] + _evaluations() + _oracles(),  # the paper's single panel
    "5b": lambda: [f"{RESULTS}/throughput.csv"] + _evaluations() + _oracles(),  # one panel per backbone
}
