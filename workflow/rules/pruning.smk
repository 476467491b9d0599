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
