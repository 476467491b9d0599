# Experiments: evaluation (Tables 2, 5, 8), the SPoT-ON oracle (Tables 1, 2, 3, 5, 6; Figure 4), examples (Figures 1–3),
# transfer (Table 4), throughput (Figure 5). Each writes a tidy CSV + a JSON provenance sidecar (spot.experiments.protocol).


rule evaluate:
    """Acc@1 and kNN of one backbone family (grid ViT + PatchDropout, SPoT, grid control) × priors × budgets."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        models=lambda w: list(variants(w.backbone).values()),
    output:
        table=report(result("evaluation"), category="Results", subcategory="Evaluation",
                     caption="../report/evaluation.rst"),
        provenance=sidecar(result("evaluation")),
    params:
        settings={"evaluation": config["evaluation"], "saliency": config["saliency"]},
        flags=lambda w: model_flags(variants(w.backbone)),
        data=lambda w: q(data_root()),
    log:
        f"{RESULTS}/logs/evaluate_{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_{{backbone}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot evaluate --config-json \"$SPOT_CONFIG\" --backbone {wildcards.backbone} {params.flags} --data {params.data}"
        " --out {output.table} > {log} 2>&1"


rule prior_selection:
    """Candidate settings of a prior on a split the tables do not report, through one backbone's SPoT model (the
    prior_selection table): `spot evaluate` with the evaluation's protocol on prior_selection's split and candidates."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        model=lambda w: spot_model(w.backbone),
    output:
        table=report(result("prior_selection"), category="Results", subcategory="Prior selection",
                     caption="../report/prior_selection.rst"),
        provenance=sidecar(result("prior_selection")),
    params:
        settings={"prior_selection": config["prior_selection"], "saliency": config["saliency"],
                  "evaluation": evaluation_protocol(("knn", "subset_seed", "crop_mode", "budgets", "batch_size"))},
        override=selection_override_json(),
        data=lambda w: q(data_root()),
    log:
        f"{RESULTS}/logs/prior_selection_{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prior_selection_{{backbone}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot evaluate --config-json \"$SPOT_CONFIG\" --config-json {params.override:q} --backbone {wildcards.backbone}"
        " --model spot={input.model} --data {params.data} --out {output.table} > {log} 2>&1"


rule oracle:
    """SPoT-ON on the retrofitted SPoT model of one backbone: Tables 1, 2, 3, 5 (SPoT-ON rows), 6 and Figure 4."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        model=lambda w: spot_model(w.backbone),
    output:
        table=report(result("oracle"), category="Results", subcategory="Oracle",
                     caption="../report/oracle.rst"),
        provenance=sidecar(result("oracle")),
        trajectories=result("trajectories"),
    params:
        # the oracle shares the evaluation's image protocol and kNN bank (Table 5's SPoT-ON kNN)
        settings={"oracle": config["oracle"], "saliency": config["saliency"],
                  "evaluation": evaluation_protocol(("knn", "subset_seed", "crop_mode"))},
        data=lambda w: q(data_root()),
    log:
        f"{RESULTS}/logs/oracle_{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/oracle_{{backbone}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot oracle --config-json \"$SPOT_CONFIG\" --backbone {wildcards.backbone} --model spot={input.model}"
        " --data {params.data}"
        " --out {output.table} > {log} 2>&1"


rule examples:
    """The positions every placement gives on an example image, for the geometry of one backbone: what Figures 1–3
    draw (and Figure 4 its patch size). No model is trained for it: the classifier's architecture gives the geometry."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
    output:
        table=report(result("examples"), category="Results", subcategory="Examples",
                     caption="../report/examples.rst"),
        provenance=sidecar(result("examples")),
    params:
        settings=lambda w: {"saliency": config["saliency"], "evaluation": evaluation_protocol(("split", "priors", "budgets")),
                            "oracle": {"sparse_budget": config["oracle"]["sparse_budget"]},
                            "geometry": classifier_geometry(w.backbone)},
        data=lambda w: q(data_root()),
    log:
        f"{RESULTS}/logs/examples_{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/examples_{{backbone}}.tsv"
    threads: 1
    shell:
        "spot examples --config-json \"$SPOT_CONFIG\" --backbone {wildcards.backbone} --data {params.data}"
        " --out {output.table} > {log} 2>&1"


rule transfer:
    """Oracle positions found on one SPoT model evaluated on the others (Table 4)."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        models=[spot_model(m) for m in MODELS],
    output:
        table=report(result("transfer"), category="Results", subcategory="Transfer",
                     caption="../report/transfer.rst"),
        provenance=sidecar(result("transfer")),
    params:
        settings={"transfer": config["transfer"], "oracle": config["oracle"],
                  "evaluation": evaluation_protocol(("crop_mode",))},
        flags=model_flags({m: spot_model(m) for m in MODELS}),
        data=lambda w: q(data_root()),
    log:
        f"{RESULTS}/logs/transfer.log",
    benchmark:
        f"{RESULTS}/benchmarks/transfer.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot transfer --config-json \"$SPOT_CONFIG\" {params.flags} --data {params.data} --out {output.table} > {log} 2>&1"


rule throughput:
    """Images/s and GFLOPs of one backbone's SPoT model and grid ViT × budgets (Figure 5); device-dependent,
    measured where the workflow runs, each backbone alone on the machine."""
    conda:
        "../envs/spot.yaml"
    input:
        models=lambda w: list(throughput_models(w.backbone).values()),
    output:
        table=report(result("throughput", OWN), category="Results", subcategory="Throughput",
                     caption="../report/throughput.rst"),
        provenance=sidecar(result("throughput", OWN)),
    params:
        settings={"throughput": config["throughput"], "pruning": PRUNING if config["throughput"].get("pruning") else {},
                  "recipes": {r: recipe_params(r) for r in ((PRUNING.get("models") or {}) | (PRUNING.get("combined")
                              or {})).values()} if config["throughput"].get("pruning") else {}},
        flags=lambda w: model_flags(throughput_models(w.backbone)),
    log:
        f"{OWN}/logs/throughput_{{backbone}}.log",
    benchmark:
        f"{OWN}/benchmarks/throughput_{{backbone}}.tsv"
    threads: config["resources"]["throughput_threads"]  # above --cores: alone on the machine (timings not shared)
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot throughput --config-json \"$SPOT_CONFIG\" --backbone {wildcards.backbone} {params.flags}"
        " --out {output.table} > {log} 2>&1"
