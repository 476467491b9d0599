# Experiments: evaluation (Tables 2, 5, 8), the SPoT-ON oracle (Tables 1, 2, 3, 5, 6; Figure 4), transfer (Table 4),
# throughput (Figure 5). Each writes a tidy CSV + a JSON provenance sidecar.


rule evaluate:
    """Acc@1 and kNN of one backbone family (grid ViT + PatchDropout, SPoT, grid control) × priors × budgets."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        models=lambda w: list(model_args(w.model).values()),
    output:
        table=report(f"{RESULTS}/evaluation/{{model}}.csv", category="Results", subcategory="Evaluation",
                     caption="../report/evaluation.rst"),
        provenance=f"{RESULTS}/evaluation/{{model}}.json",
    params:
        settings={"evaluation": config["evaluation"], "saliency": config["saliency"]},
        flags=lambda w: _model_flags(model_args(w.model)),
        config=MERGED_CONFIG,
        data=lambda w: data_root(),
    log:
        f"{RESULTS}/logs/evaluate_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_{{model}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot evaluate --config {params.config} {params.flags} --data {params.data} --out {output.table} > {log} 2>&1"


rule oracle:
    """SPoT-ON on the retrofitted SPoT model of one backbone: Tables 1, 2, 3, 5 (SPoT-ON rows), 6 and Figure 4."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        model=lambda w: spot_model(w.model),
    output:
        table=report(f"{RESULTS}/oracle/{{model}}.csv", category="Results", subcategory="Oracle",
                     caption="../report/oracle.rst"),
        provenance=f"{RESULTS}/oracle/{{model}}.json",
        trajectories=f"{RESULTS}/oracle/{{model}}.trajectories.npz",
    params:
        # the oracle shares the evaluation's image protocol and kNN bank (Table 5's SPoT-ON kNN)
        settings={"oracle": config["oracle"], "saliency": config["saliency"],
                  "evaluation": evaluation_protocol(("knn", "subset_seed", "crop_mode"))},
        config=MERGED_CONFIG,
        data=lambda w: data_root(),
    log:
        f"{RESULTS}/logs/oracle_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/oracle_{{model}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot oracle --config {params.config} --model {wildcards.model}={input.model} --data {params.data}"
        " --out {output.table} > {log} 2>&1"


rule transfer:
    """Oracle positions found on one SPoT model evaluated on the others (Table 4)."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        models=[spot_model(m) for m in MODELS],
    output:
        table=report(f"{RESULTS}/transfer.csv", category="Results", subcategory="Transfer",
                     caption="../report/transfer.rst"),
        provenance=f"{RESULTS}/transfer.json",
    params:
        settings={"transfer": config["transfer"], "oracle": config["oracle"],
                  "evaluation": evaluation_protocol(("crop_mode",))},
        flags=_model_flags({m: spot_model(m) for m in MODELS}),
        config=MERGED_CONFIG,
        data=lambda w: data_root(),
    log:
        f"{RESULTS}/logs/transfer.log",
    benchmark:
        f"{RESULTS}/benchmarks/transfer.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot transfer --config {params.config} {params.flags} --data {params.data} --out {output.table} > {log} 2>&1"


rule throughput:
    """Images/s and GFLOPs per model × budget (Figure 5); device-dependent, measured where the workflow runs."""
    conda:
        "../envs/spot.yaml"
    input:
        models=[spot_model(m) for m in MODELS] + [spec_path(m, "classifier") for m in MODELS],
    output:
        table=report(f"{RESULTS}/throughput.csv", category="Results", subcategory="Throughput",
                     caption="../report/throughput.rst"),
        provenance=f"{RESULTS}/throughput.json",
    params:
        settings={"throughput": config["throughput"]},
        flags=_model_flags({**{f"{m}:spot": spot_model(m) for m in MODELS},
                            **{f"{m}:vit": spec_path(m, "classifier") for m in MODELS}}),
        config=MERGED_CONFIG,
    log:
        f"{RESULTS}/logs/throughput.log",
    benchmark:
        f"{RESULTS}/benchmarks/throughput.tsv"
    threads: config["resources"]["throughput_threads"]  # above --cores: alone on the machine (timings not shared)
    resources:
        gpu=config["resources"]["eval_gpus"],
    shell:
        "spot throughput --config {params.config} {params.flags} --out {output.table} > {log} 2>&1"
