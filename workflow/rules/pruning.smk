# Token pruning ("SPOT-AD", Schlesinger et al., and its baselines): fine-tunes of the classifiers and SPoT models, and one
# evaluation job per backbone (accuracy and GFLOPs over the keep-ratio sweep, ToMe, sampling at equal cost).


# A pruning fine-tune (`task: prune` recipe of `pruning.models` on the classifier, or of `pruning.combined` on the
# SPoT model). Resumable like every training job, which it is (models.smk's train_backbone).
use rule train_backbone as train_pruned with:
    input:
        data=data_manifest(),
        parent=lambda w: classifier_path(w.backbone) if w.base == "prune" else spot_model(w.backbone),
    output:
        weights=f"{RESULTS}/models/{{backbone}}_{{base}}_{{setting}}.safetensors",
        record=f"{RESULTS}/models/{{backbone}}_{{base}}_{{setting}}.json",
    wildcard_constraints:
        base="prune|spotprune",
    params:
        recipe=lambda w: recipe_params(pruning_recipe(w.setting)),
        recipe_name=lambda w: pruning_recipe(w.setting),
        data=lambda w: q(data_root()),
        state=lambda w: f"{STATE}/{w.backbone}_{w.base}_{w.setting}",
        parent=lambda w, input: f"--parent {q(input.parent)}",
    log:
        f"{RESULTS}/logs/train_{{backbone}}_{{base}}_{{setting}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_{{backbone}}_{{base}}_{{setting}}.tsv"


rule pruning:
    """Accuracy and GFLOPs of one backbone's pruned models over `pruning.sweep`, ToMe, and SPoT / PatchDropout /
    the grid control at the cost of `pruning.equal_cost` (SPOT-AD paper Tables 1, 2, 7, 8; sampling vs pruning)."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        models=lambda w: list(pruning_inputs(w.backbone).values()),
    output:
        table=report(result("pruning", OWN), category="Results", subcategory="Pruning",
                     caption="../report/pruning.rst"),
        provenance=sidecar(result("pruning", OWN)),
    params:
        settings={"pruning": PRUNING, "evaluation": config["evaluation"], "saliency": config["saliency"]},
        flags=lambda w: model_flags(pruning_inputs(w.backbone)),
        data=lambda w: q(data_root()),
    log:
        f"{OWN}/logs/pruning_{{backbone}}.log",
    benchmark:
        f"{OWN}/benchmarks/pruning_{{backbone}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot pruning --config-json \"$SPOT_CONFIG\" --backbone {wildcards.backbone} {params.flags} --data {params.data}"
        " --out {output.table} > {log} 2>&1"


# -- the learned placement (ours; docs/placements.md "A learned placement")

LEARNED = config["learned_placement"]
POLICY_RECIPES = {"policy": LEARNED["recipe"], **({"policy_joint": LEARNED["joint_recipe"]}
                                                  if LEARNED.get("joint_recipe") else {})}


def learned_inputs(backbone):
    """--model NAME=PATH of one backbone's learned_placement job: its SPoT model, its policies, the others' policy."""
    models = {"spot": spot_model(backbone), "policy": f"{RESULTS}/models/{backbone}_policy.safetensors"}
    if "policy_joint" in POLICY_RECIPES:
        models["joint"] = f"{RESULTS}/models/{backbone}_policy_joint.safetensors"
    models.update({f"policy@{other}": f"{RESULTS}/models/{other}_policy.safetensors"
                   for other in MODELS if other != backbone})
    return models


use rule train_backbone as train_policy with:
    input:
        data=data_manifest(),
        parent=lambda w: spot_model(w.backbone),
    output:
        weights=f"{RESULTS}/models/{{backbone}}_{{policy}}.safetensors",
        record=f"{RESULTS}/models/{{backbone}}_{{policy}}.json",
    wildcard_constraints:
        policy=alternation(POLICY_RECIPES),
    params:
        recipe=lambda w: recipe_params(POLICY_RECIPES[w.policy]),
        recipe_name=lambda w: POLICY_RECIPES[w.policy],
        data=lambda w: q(data_root()),
        state=lambda w: f"{STATE}/{w.backbone}_{w.policy}",
        parent=lambda w, input: f"--parent {q(input.parent)}",
    log:
        f"{RESULTS}/logs/train_{{backbone}}_{{policy}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_{{backbone}}_{{policy}}.tsv"


rule learned_placement:
    """The learned placement of one backbone against every prior at equal total GFLOPs, with its controls."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        models=lambda w: list(learned_inputs(w.backbone).values()),
    output:
        table=report(result("learned_placement", OWN), category="Results", subcategory="Learned placement",
                     caption="../report/learned_placement.rst"),
        provenance=sidecar(result("learned_placement", OWN)),
    params:
        settings={"learned_placement": LEARNED, "saliency": config["saliency"]},
        flags=lambda w: model_flags(learned_inputs(w.backbone)),
        data=lambda w: q(data_root()),
    log:
        f"{OWN}/logs/learned_placement_{{backbone}}.log",
    benchmark:
        f"{OWN}/benchmarks/learned_placement_{{backbone}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot learned_placement --config-json \"$SPOT_CONFIG\" --backbone {wildcards.backbone} {params.flags}"
        " --data {params.data} --out {output.table} > {log} 2>&1"
