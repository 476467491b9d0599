# Raw inputs: the dataset (Fashion-MNIST canvas, or ImageNet from its archives) and downloaded backbone weights.

# downloads run where Snakemake runs (a cluster's login node has the network its compute nodes often lack); the
# official-checkpoint record is a few lines of JSON
localrules:
    fetch_checkpoint,
    official_checkpoint,


rule data_fmnist:
    """The Fashion-MNIST canvas benchmark (embedded and smoke presets), from Debian's dataset-fashion-mnist."""
    conda:
        "../envs/spot.yaml"
    output:
        manifest=f"{RESULTS}/data/manifest.json",
    params:
        canvas=config["data"].get("canvas"),
        seed=config["data"]["seed"],
        out=lambda w, output: str(Path(output.manifest).parent),
        fmnist=lambda w: f"--fmnist {q(config['data']['fmnist_dir'])}" if config["data"]["fmnist_dir"] else "",
    log:
        f"{RESULTS}/logs/data_fmnist.log",
    benchmark:
        f"{RESULTS}/benchmarks/data_fmnist.tsv"
    shell:
        "spot data fmnist --out {params.out} --seed {params.seed} {params.fmnist}"
        " --canvas-size {params.canvas[canvas_size]} --placement-std {params.canvas[placement_std]}"
        " --max-offset {params.canvas[max_offset]} --fragments {params.canvas[fragments]}"
        " --val-size {params.canvas[val_size]} > {log} 2>&1"


rule data_imagenet:
    """ImageNet-1k from the three raw ILSVRC-2012 archives (paper preset; data.root unset)."""
    conda:
        "../envs/spot.yaml"
    output:
        manifest=f"{RESULTS}/data/imagenet/manifest.json",
    params:
        raw=q(config["data"]["imagenet_raw"]) if config["data"]["imagenet_raw"] else None,
        out=lambda w, output: str(Path(output.manifest).parent),
    log:
        f"{RESULTS}/logs/data_imagenet.log",
    benchmark:
        f"{RESULTS}/benchmarks/data_imagenet.tsv"
    resources:
        runtime=600,
    shell:
        "spot data imagenet --raw {params.raw} --out {params.out} > {log} 2>&1"


rule fetch_checkpoint:
    """A backbone checkpoint from its source (Hugging Face / the MAE release) as safetensors + a record."""
    conda:
        "../envs/spot.yaml"
    output:
        weights=f"{RESULTS}/checkpoints/{{name}}.safetensors",
        record=f"{RESULTS}/checkpoints/{{name}}.json",
    params:
        out=lambda w, output: str(Path(output.weights).parent),
    log:
        f"{RESULTS}/logs/fetch_{{name}}.log",
    shell:
        "spot checkpoints fetch {wildcards.name} --dir {params.out} > {log} 2>&1"


rule official_checkpoint:
    """One of the authors' released SPoT checkpoints in place of a retrofit (retrofit: official)."""
    conda:
        "../envs/spot.yaml"
    input:
        lambda w: config["official"][w.backbone],
    output:
        record=f"{RESULTS}/models/{{backbone}}_official.json",
    log:
        f"{RESULTS}/logs/official_{{backbone}}.log",
    shell:
        "spot checkpoints official {input:q} --backbone {wildcards.backbone} --out {output.record} > {log} 2>&1"
