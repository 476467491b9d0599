# The learned placement (ours; docs/placements.md "A learned placement"): each backbone's glance policies, trained
# for its SPoT model, and the learned_placement experiment that compares them with every prior at equal cost.


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
        positions=result("learned_positions", OWN),
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
