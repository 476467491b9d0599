# Helpers shared by the rules: the preset, config validation, paths per preset, recipes, model chains.
#
# Parsing the workflow has no side effects and does not import torch (every cluster job parses it twice, sbatch job
# and srun step): the spot modules it imports are torch-free — spot.config, spot.train.recipes, spot.core.placement,
# spot.paper, spot.experiments.protocol and spot.settings, whose modules define the sections' typed settings (the
# experiment modules that run them import torch); nothing is written and no environment variable is set.
#
# A mistake in the config stops the DAG build (`snakemake -n` included) with one line naming the key, the value and
# what is accepted: the files and --config values are read (a missing `extends:` file is named; a missing
# --configfile is reported by Snakemake itself, before it reads this workflow), the whole config is checked
# against workflow/schemas/config.schema.yaml (its structure: sections, keys, names that become paths and wildcards),
# then every section a spot command reads is built into that command's typed settings and validated by the same code
# the command runs (spot.config.check_sections), every recipe by spot.train.recipes, every placement by spot's registry.
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

try:  # spot's torch-free layer: `import spot` loads nothing heavy until a model is used
    import spot.config as spot_config
    import spot.train.recipes as spot_recipes
    from spot.core.placement import check_placement
    from spot.data.canvas import CanvasConfig
    from spot.experiments import protocol as spot_protocol
    from spot.paper import ARTIFACTS
except ImportError as err:
    raise WorkflowError(f"the spot package is not importable ({err}): pip install -c constraints.txt -e . (README)")


def _config_error(err):
    """A config mistake as Snakemake prints it: one line, ``config: …``."""
    return WorkflowError(f"config: {str(err).splitlines()[0] if str(err) else type(err).__name__}")


def _read_schema():
    import yaml

    return yaml.safe_load(Path(workflow.basedir, "workflow/schemas/config.schema.yaml").read_text())


SCHEMA = _read_schema()


def check_config(config, where=""):
    """The schema, then no NaN/infinity: one line for the first mistake; then Snakemake's own validation, which
    fills the schema's defaults in (it cannot fail any more)."""
    cfg = spot_config
    try:
        cfg.check_schema(config, SCHEMA, where)
        cfg.check_finite(config, where)
    except ValueError as err:
        raise _config_error(err)
    validate(config, schema="../schemas/config.schema.yaml")


# The preset: the --configfile files (else config.yaml, the embedded default), each with its `extends:` chain
# resolved (config/paper.yaml is the complete base; the others are overlays on it), then Snakemake's --config values.
# Snakemake's own merge of the --configfile files is replaced by this one, so that a preset never inherits a key from
# a file it does not extend. The --config values are read as YAML, as a config file's (spot.config.parse_config_args:
# Snakemake reads nested values as strings); each job's Snakemake gets the same arguments.
CONFIG_FILES = [os.path.relpath(p) for p in workflow.config_settings.configfiles] or ["config.yaml"]
_config_args = workflow.config_settings.config_args
try:
    CONFIG_OVERRIDES = spot_config.parse_config_args(_config_args) \
        if isinstance(_config_args, (list, tuple)) else \
        json.loads(json.dumps(dict(workflow.config_settings.config), default=dict))
    _resolved = spot_config.load_configs(CONFIG_FILES, CONFIG_OVERRIDES)
except (ValueError, OSError) as err:
    raise _config_error(err)
_missing = [k for k in ("preset", "data", "backbones", "recipes", "evaluation", "oracle", "transfer", "throughput",
                        "saliency", "prior_selection") if k not in _resolved]
if _missing:
    raise WorkflowError(f"config: {' + '.join(CONFIG_FILES)} extends no preset and lacks {', '.join(_missing)}: an "
                        f"overlay names what it starts from, e.g. `extends: config.yaml` (the embedded default) or "
                        f"`extends: config/paper.yaml`, as a path relative to its own folder")
config.clear()
config.update(_resolved)
check_config(config)


def _check_sections():
    """Every section a spot command reads, built into the command's typed settings and validated by the same code
    (spot.config.check_sections; the evaluation's also as prior_selection's jobs override it), and the canvas of the
    Fashion-MNIST data: a misspelt key, a value of the wrong type or out of range stops the DAG build."""
    cfg = spot_config
    pruning = config.get("pruning") or {}
    prunes = any(v for key in ("models", "combined") for v in (pruning.get(key) or {}).values()) or \
        (config["throughput"] or {}).get("pruning") is True
    try:  # `pruning:` with every fine-tune off (paper_official) is read by no command: only its keys are checked
        cfg.check_sections(config, unused=() if prunes else ("pruning",))
        if config["data"]["kind"] == "fmnist" and config["data"].get("canvas") is not None:
            cfg.settings_from_dict(CanvasConfig, config["data"]["canvas"], "data.canvas").validate()
    except ValueError as err:
        raise _config_error(err)
    try:  # prior_selection's jobs run `spot evaluate` with its split and candidates layered over the evaluation
        override = json.loads(selection_override_json())[0]
        cfg.check_sections(cfg.merge_configs(config, override), sections=("evaluation",))
    except ValueError as err:
        raise _config_error(f"prior_selection (spot evaluate's settings with its split and candidates): {err}")


def selection_override_json():
    """The override that turns the evaluation into prior_selection's: its split and candidates, one seed, no
    snapped, grid-model or extra-budget measurements, no PatchDropout. The rule layers it over the run's config
    (``--config-json`` twice), so that its params hold settings only — not the preset's file names, which differ
    between presets that share these results."""
    s = config["prior_selection"]
    override = {"evaluation": {"split": s["split"], "limit": s.get("limit"), "priors": s["candidates"],
                               "seeds": [s.get("seed", 0)], "extra_budgets": [], "snapped": False,
                               "grid_model_priors": [], "extra_budget_priors": [], "patchdropout": False}}
    return json.dumps([override], sort_keys=True)


_check_sections()


def _check_recipes():
    """Fail at DAG-build time, with spot's own message, on any invalid recipe of `recipes:` — every one, not only
    those the DAG trains (`spot train --recipe NAME` runs any), each after the recipes it extends, so that a mistake
    is named in the recipe that writes it, not in one that inherits it."""
    recipes = spot_recipes
    done = set()

    def check(name, chain=()):
        if name in done or name in chain:
            return
        parent = (config["recipes"].get(name) or {}).get("extends") if isinstance(config["recipes"].get(name), dict) \
            else None
        if isinstance(parent, str) and parent in config["recipes"]:
            check(parent, (*chain, name))
        try:
            recipes.load_recipe(config, name)
        except ValueError as err:
            raise _config_error(err)
        done.add(name)

    for name in config["recipes"]:
        check(name)


_check_recipes()


# how the `spot` commands get the same config: one JSON list of the files and the overrides, in order (not a param:
# which files hold a value does not change a result — the rules' params hold the values that do)
SPOT_CONFIG = json.dumps(CONFIG_FILES + ([CONFIG_OVERRIDES] if CONFIG_OVERRIDES else []), sort_keys=True)

# every job's shell: bash strict mode (Snakemake's default prefix); `spot` and `papermill` of the Python that runs
# Snakemake, also without an activated virtual environment; training jobs start with `train_launcher` (e.g.
# torchrun). Environment of the jobs' shells, not params: none of it changes a result, so none of it re-runs a job.
_JOB_ENV = {"PATH": f"{shlex.quote(str(Path(sys.executable).parent))}:$PATH", "SPOT_TRAIN": config["train_launcher"],
            "SPOT_CONFIG": SPOT_CONFIG}
shell.prefix(("set -euo pipefail; export " + " ".join(
    f"{k}={v if k == 'PATH' else shlex.quote(v)}" for k, v in _JOB_ENV.items()) + "; ").replace("{", "{{").replace("}", "}}"))

PRESET = config["preset"]
# `results_of: NAME` (an overlay on a finished run of preset NAME that only adds to its `pruning:` section): the
# data, every trained model and the SPoT experiments are preset NAME's own files (results/NAME/…), reused, not
# recomputed, and new fine-tunes join them there; this preset's pruning and throughput results, and the logs of its
# tables and figures, are its own (OWN). Checked: the sections those shared files depend on equal NAME's.
RESULTS_OF = config.get("results_of")
RESULTS = f"results/{RESULTS_OF or PRESET}"
OWN = f"results/{PRESET}"
FIGURES = f"paper_figures/{PRESET}"
STATE = f"runs/{RESULTS_OF or PRESET}/state"  # resumable training state: deliberately not a declared output
DATA = config["data"]["root"] or f"{RESULTS}/data"
MODELS = list(config["backbones"])

SHARED_SECTIONS = ("data", "backbones", "evaluation", "oracle", "transfer", "saliency", "retrofit", "knn",
                   "prior_selection")


def _check_results_of(name):
    """The preset whose results ``results_of`` reuses must agree on every section they depend on."""
    path = "config.yaml" if name == "embedded" else f"config/{name}.yaml"
    if not Path(path).exists():
        raise WorkflowError(f"config: results_of = {name!r}: no preset file {path} (a preset NAME lives in "
                            f"config/NAME.yaml; `embedded` in config.yaml)")
    base = spot_config.load_configs([path])
    check_config(base)
    if base["preset"] != name:
        raise WorkflowError(f"config: results_of = {name!r}, but {path} is preset {base['preset']!r}")
    changed = [k for k in SHARED_SECTIONS if base.get(k) != config.get(k)]
    changed += [f"recipes.{r}" for r, v in base["recipes"].items() if config["recipes"].get(r) != v]
    if changed:
        raise WorkflowError(f"config: results_of = {name!r} reuses that preset's models and experiments, but this "
                            f"preset changes {', '.join(changed)}: reusing would overwrite its results; drop the "
                            f"change or `results_of`")


if RESULTS_OF:
    _check_results_of(RESULTS_OF)


# Token pruning (`pruning:`): the backbones whose classifiers are fine-tuned with every `pruning.models` recipe (the
# `backbones:` themselves, or extra ones such as DeiT-S/T in the paper preset), and the SPoT backbones, whose SPoT
# models get the `pruning.combined` recipes. A pruning job per backbone of either kind.
PRUNING = dict(config.get("pruning") or {})
for _key in ("models", "combined"):  # a setting mapped to null is switched off (how an overlay removes one)
    PRUNING[_key] = {k: v for k, v in (PRUNING.get(_key) or {}).items() if v}
PRUNING_BACKBONES = list(PRUNING.get("backbones") or MODELS) if PRUNING.get("models") else []
PRUNING_JOBS = list(dict.fromkeys(PRUNING_BACKBONES + (MODELS if PRUNING.get("combined") else [])))
_clash = set(PRUNING.get("models") or {}) & set(PRUNING.get("combined") or {})
if _clash or set(PRUNING.get("backbones") or {}) & set(MODELS):
    raise WorkflowError(f"config: pruning setting or backbone names must be distinct from each other and from "
                        f"`backbones:` ({sorted(_clash) or sorted(set(PRUNING.get('backbones') or {}) & set(MODELS))})")


def _check_placements():
    """Fail at DAG-build time on a placement the config names that spot's registry does not know (a typo, a wrong
    setting), with spot's own message listing what is accepted."""
    check = check_placement
    e = config["evaluation"]
    specs = [(f"evaluation.priors", p) for p in e.get("priors", [])]
    for key in ("snapped", "grid_model_priors", "extra_budget_priors", "grid_placements"):
        if isinstance(e.get(key), list):
            specs += [(f"evaluation.{key}", p) for p in e[key]]
    specs += [("oracle.priors", p) for p in config["oracle"].get("priors", [])]
    specs += [("transfer.prior", config["transfer"].get("prior", "isotropic"))]
    for where, spec in specs:
        try:
            check(spec, where)
        except ValueError as err:
            raise WorkflowError(f"config: {err}")


_check_placements()


def recipe_params(name):
    """The resolved recipe as a plain dict: the params of a training job (a change re-trains)."""
    recipes = spot_recipes
    load_recipe, recipe_to_dict = recipes.load_recipe, recipes.recipe_to_dict

    return json.dumps(recipe_to_dict(load_recipe(config, name)), sort_keys=True)


def spec(text):
    """A preset's checkpoint spec (`train:RECIPE` or `fetch:NAME`), typed: spot.config.CheckpointSpec."""
    return spot_config.CheckpointSpec.parse(text)


def classifier_geometry(backbone):
    """What a backbone's classifier architecture is built from (its spec, and a trained one's recipe model): a change
    re-runs the jobs that read only its geometry."""
    given = spec(config["backbones"][backbone]["classifier"])
    model = (config.get("recipes") or {}).get(given.name, {}).get("model") if given.source == "train" else None
    return {"classifier": str(given), "model": model}


def spec_path(backbone, role):
    """Checkpoint of a backbone's `classifier` or `pretrained` spec (`train:RECIPE` or `fetch:NAME`)."""
    given = spec(config["backbones"][backbone][role])
    if given.source == "fetch":
        return f"{RESULTS}/checkpoints/{given.name}.safetensors"
    return f"{RESULTS}/models/{backbone}_{role}.safetensors"


def recipe_chain(backbone, variant):
    """The recipes of a retrofit chain: variant `spot` (retrofit) or `grid_control` (its grid control)."""
    b = config["backbones"][backbone]
    return b["retrofit"] if variant == "spot" else b["grid_control"]


def chain_output(backbone, variant, stage=None):
    recipes = recipe_chain(backbone, variant)
    stage = len(recipes) - 1 if stage is None else stage
    return f"{RESULTS}/models/{backbone}_{variant}{stage}.safetensors"


def chain_parent(wildcards):
    stage = int(wildcards.stage)
    if stage > 0:
        return chain_output(wildcards.backbone, wildcards.variant, stage - 1)
    return spec_path(wildcards.backbone, config["backbones"][wildcards.backbone].get("start", "classifier"))


def spot_model(backbone):
    """The retrofitted SPoT model of a backbone: trained here, or the authors' released weights (retrofit: official)."""
    if config["retrofit"] == "official":
        return f"{RESULTS}/models/{backbone}_official.json"
    return chain_output(backbone, "spot")


ALL_BACKBONES = list(dict.fromkeys(MODELS + PRUNING_JOBS))


def alternation(names, empty="no_match"):
    """A wildcard constraint that matches exactly ``names`` (escaped: a name is text, not a pattern)."""
    return "|".join(re.escape(n) for n in names) or empty


wildcard_constraints:
    backbone=alternation(ALL_BACKBONES),
    setting=alternation(list(PRUNING.get("models") or {}) + list(PRUNING.get("combined") or {}), "no_setting"),


def classifier_path(backbone):
    """The classifier checkpoint of a SPoT backbone or of a pruning-only backbone (`pruning.backbones`)."""
    if backbone in config["backbones"]:
        return spec_path(backbone, "classifier")
    given = spec(PRUNING["backbones"][backbone])
    return f"{RESULTS}/checkpoints/{given.name}.safetensors" if given.source == "fetch" else \
        f"{RESULTS}/models/{backbone}_classifier.safetensors"


def pruned_path(backbone, setting):
    """A pruning fine-tune: `{backbone}_prune_{setting}` (of the classifier) or `{backbone}_spotprune_{setting}`
    (of the SPoT model)."""
    base = "spotprune" if setting in (PRUNING.get("combined") or {}) else "prune"
    return f"{RESULTS}/models/{backbone}_{base}_{setting}.safetensors"


def pruning_recipe(setting):
    return {**(PRUNING.get("models") or {}), **(PRUNING.get("combined") or {})}[setting]


def pruning_inputs(backbone):
    """--model NAME=PATH of one backbone's pruning job."""
    models = {"parent": classifier_path(backbone)}
    if backbone in MODELS:
        models.update({k: v for k, v in variants(backbone).items() if k != "parent"})
        models.update({s: pruned_path(backbone, s) for s in PRUNING.get("combined") or {}})
    if backbone in PRUNING_BACKBONES:
        models.update({s: pruned_path(backbone, s) for s in PRUNING.get("models") or {}})
    return models


def throughput_models(backbone):
    """The models a throughput job times: a SPoT backbone's SPoT model and grid ViT; a pruning-only backbone's
    classifier."""
    if backbone in MODELS:
        return {"spot": spot_model(backbone), "parent": spec_path(backbone, "classifier")}
    return {"parent": classifier_path(backbone)}


def variants(backbone):
    """A backbone's models by variant (the `variant` column of the results): the grid ViT, its SPoT retrofit, and
    the retrofit's grid control (none when its `grid_control:` chain is empty)."""
    models = {"parent": spec_path(backbone, "classifier"), "spot": spot_model(backbone)}
    if recipe_chain(backbone, "grid_control"):
        models["grid_control"] = chain_output(backbone, "grid_control")
    return models


# The tables and figures, from spot's registry (spot/paper: one builder per artifact declares what it reads and its
# caption): the targets of `all`, each job's inputs and the report's captions come from there.
TABLES = [name for name, a in ARTIFACTS.items() if a.kind == "table"]
FIGURE_NAMES = [name for name, a in ARTIFACTS.items() if a.kind == "figure"]


# The published reference of this preset (spot publish): when there is one, the run ends by comparing itself with it.
REFERENCE = f"reference/{PRESET}"
SEED_SPREAD = f"{REFERENCE}/seed_spread.csv"


def buildable(name):
    """Whether this preset measures what artifact ``name`` needs: a file of every kind it reads (its optional kinds
    aside) — a preset without token pruning (paper_official) has no pruning tables."""
    a = ARTIFACTS[name]
    return all(result_files(kind) for kind in a.reads if kind not in a.optional)


def artifact_outputs():
    return [f"{FIGURES}/{name}.csv" for name in TABLES if buildable(name)] + \
        [f"{FIGURES}/{name}.pdf" for name in FIGURE_NAMES if buildable(name)]


def all_outputs():
    compare = [f"{OWN}/compare.md"] if Path(f"{REFERENCE}/PUBLISHED.json").is_file() else []
    return artifact_outputs() + compare


def data_manifest():
    """The prepared dataset's manifest (what every stage reads): built by a rule unless data.root points elsewhere."""
    if config["data"]["root"]:
        return f"{config['data']['root']}/manifest.json"
    return f"{RESULTS}/data/imagenet/manifest.json" if config["data"]["kind"] == "imagenet" \
        else f"{RESULTS}/data/manifest.json"


def data_root():
    return str(Path(data_manifest()).parent)


def q(value):
    """``value`` as one shell word (shlex.quote): config strings that reach a rule's ``shell:`` — paths (data.root,
    data.fmnist_dir, data.imagenet_raw) may hold spaces or ``;`` — go through it in the rule's params. A plain path
    stays as it is, so the params of existing runs, and the rules' shell text, are unchanged: nothing re-runs.
    (official_checkpoint's input, a released checkpoint's path, is quoted in its shell text: ``{input:q}``.)"""
    return shlex.quote(str(value))


def _train_shell(recipe_key):
    return (
        "$SPOT_TRAIN --config-json \"$SPOT_CONFIG\" --recipe {params.recipe_name} --data {params.data}"
        " --out {output.weights} --state-dir {params.state} --no-progress {params.parent} > {log} 2>&1"
    )


def evaluation_protocol(keys):
    """The `evaluation:` settings another experiment shares (a change re-runs it too)."""
    return {k: config["evaluation"].get(k) for k in keys}


def model_flags(models):
    """--model NAME=PATH arguments of the experiment commands (shell-quoted)."""
    return " ".join(f"--model {q(f'{name}={path}')}" for name, path in models.items())


RESULT_KINDS = spot_protocol.RESULT_KINDS


def result(kind, results=RESULTS, job="{backbone}"):
    """Where a run keeps the ``kind`` result of ``job`` (spot.experiments.protocol.RESULT_KINDS; default: the rule's wildcard)."""
    return spot_protocol.result_path(kind, results, job)


def sidecar(table):
    """The provenance (.json) beside a result table."""
    return str(Path(table).with_suffix(".json"))


def result_files(kind):
    """The files of one kind of result (spot.experiments.protocol.RESULT_KINDS) in this preset: one per backbone (the
    preset's own pruning and throughput, which time this machine), the records of the trained SPoT models (Table 7
    reads their recipes), the data manifest."""
    if kind == "pruning":
        return [result(kind, OWN, m) for m in PRUNING_JOBS]
    if kind == "throughput":
        return [result(kind, OWN, m) for m in dict.fromkeys(MODELS + PRUNING_BACKBONES)]
    if kind in ("learned_placement", "learned_positions"):  # its images/s rows time this machine
        return [result(kind, OWN, m) for m in MODELS]
    if kind == "records":
        return [spot_model(m).replace(".safetensors", ".json") for m in MODELS if config["retrofit"] == "train"]
    if kind == "examples":  # Figures 1–3 draw the first backbone's
        return [result(kind, RESULTS, MODELS[0])]
    if kind == "data":
        return [data_manifest()]
    if kind == "transfer" and len(MODELS) < 2:  # from one backbone to another: none with one backbone (the tables
        return []                               # that read it are not built)
    if "{job}" not in RESULT_KINDS[kind].path:
        return [result(kind)]
    return [result(kind, RESULTS, m) for m in MODELS]


def artifact_inputs(name):
    """{kind: [files]} of what table or figure ``name`` reads."""
    return {kind: result_files(kind) for kind in ARTIFACTS[name].reads}


# -- the learned placement (ours): the policy recipes and a backbone's learned_placement inputs

LEARNED = config["learned_placement"]
POLICY_RECIPES = {"policy": LEARNED["recipe"],
                  **{name: LEARNED[key] for name, key in (("policy_joint", "joint_recipe"),
                                                          ("policy_joint_control", "joint_control_recipe"))
                     if LEARNED.get(key)}}


def learned_inputs(backbone):
    """--model NAME=PATH of one backbone's learned_placement job: its SPoT model, its policies, the others' policy, and
    the grid ViT (PatchDropout) and grid control at equal cost."""
    models = {**variants(backbone), "policy": f"{RESULTS}/models/{backbone}_policy.safetensors"}
    for name, model in (("policy_joint", "joint"), ("policy_joint_control", "joint_control")):
        if name in POLICY_RECIPES:
            models[model] = f"{RESULTS}/models/{backbone}_{name}.safetensors"
    models.update({f"policy@{other}": f"{RESULTS}/models/{other}_policy.safetensors"
                   for other in MODELS if other != backbone})
    return models
