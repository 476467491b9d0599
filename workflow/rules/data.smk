# Raw inputs: the dataset (Fashion-MNIST canvas, or ImageNet from its archives) and downloaded backbone weights.


rule data_fmnist:
    """The Fashion-MNIST canvas benchmark (embedded and smoke presets), from Debian's dataset-fashion-mnist."""
    output:
        manifest=f"{RESULTS}/data/manifest.json",
    params:
        canvas=config["data"]["canvas"],
        seed=config["data"]["seed"],
        out=f"{RESULTS}/data",
        fmnist=lambda w: f"--fmnist {config['data']['fmnist_dir']}" if config["data"]["fmnist_dir"] else "",
    log:
        f"{RESULTS}/logs/data_fmnist.log",
    benchmark:
        f"{RESULTS}/benchmarks/data_fmnist.tsv"
    shell:
        "{SPOT} data fmnist --out {params.out} --seed {params.seed} {params.fmnist}"
        " --canvas-size {params.canvas[canvas_size]} --placement-std {params.canvas[placement_std]}"
        " --max-offset {params.canvas[max_offset]} --fragments {params.canvas[fragments]}"
        " --val-size {params.canvas[val_size]} > {log} 2>&1"


rule data_imagenet:
    """ImageNet-1k from the three raw ILSVRC-2012 archives (paper preset; data.root unset)."""
    output:
        manifest=f"{RESULTS}/data/imagenet/manifest.json",
    params:
        raw=config["data"]["imagenet_raw"],
        out=f"{RESULTS}/data/imagenet",
    log:
        f"{RESULTS}/logs/data_imagenet.log",
    benchmark:
        f"{RESULTS}/benchmarks/data_imagenet.tsv"
    resources:
        runtime=600,
    shell:
        "{SPOT} data imagenet --raw {params.raw} --out {params.out} > {log} 2>&1"


rule fetch_checkpoint:
    """A backbone checkpoint from its source (Hugging Face / the MAE release) as safetensors + a record."""
    output:
        weights=f"{RESULTS}/checkpoints/{{name}}.safetensors",
        record=f"{RESULTS}/checkpoints/{{name}}.json",
    params:
        out=f"{RESULTS}/checkpoints",
    log:
        f"{RESULTS}/logs/fetch_{{name}}.log",
    shell:
        "{SPOT} checkpoints fetch {wildcards.name} --dir {params.out} > {log} 2>&1"


def data_manifest():
    """The prepared dataset's manifest (what every stage reads): built by a rule unless data.root points elsewhere."""
    if config["data"]["root"]:
        return f"{config['data']['root']}/manifest.json"
    return f"{RESULTS}/data/imagenet/manifest.json" if config["data"]["kind"] == "imagenet" \
        else f"{RESULTS}/data/manifest.json"


def data_root():
    return str(Path(data_manifest()).parent)
