# Models: the embedded preset's backbones trained here, SPoT retrofitting chains and their grid controls.


rule train_backbone:
    """A backbone of the embedded preset (spec `train:RECIPE`): supervised grid ViT, MAE pre-training or its
    grid fine-tune. Resumable: the state lives in runs/<preset>/state, outside the declared outputs."""
    conda:
        "../envs/spot.yaml"
    input:
        data=data_manifest(),
        parent=lambda w: spec_path(w.backbone, "pretrained") if w.role == "classifier"
        and config["backbones"][w.backbone].get("pretrained") else [],
    output:
        weights=f"{RESULTS}/models/{{backbone}}_{{role}}.safetensors",
        record=f"{RESULTS}/models/{{backbone}}_{{role}}.json",
    wildcard_constraints:
        role="classifier|pretrained",
    params:
        recipe=lambda w: recipe_params(spec(config["backbones"][w.backbone][w.role]).name),
        recipe_name=lambda w: spec(config["backbones"][w.backbone][w.role]).name,
        data=lambda w: q(data_root()),
        state=lambda w: f"{STATE}/{w.backbone}_{w.role}",
        parent=lambda w, input: f"--parent {q(input.parent)}" if input.parent else "",
    log:
        f"{RESULTS}/logs/train_{{backbone}}_{{role}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_{{backbone}}_{{role}}.tsv"
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["train_gpus"],
        runtime=config["resources"]["train_minutes"],
    shell:
        _train_shell("recipe")


# One stage of a retrofit chain (variant `spot`) or of its grid control (variant `grid_control`): e.g. SPoT
# retrofitting, or MAE retrofitting then the classification fine-tune. Every training job is train_backbone's, with
# its own files and recipe.
use rule train_backbone as train_chain_stage with:
    input:
        data=data_manifest(),
        parent=chain_parent,
    output:
        weights=f"{RESULTS}/models/{{backbone}}_{{variant}}{{stage}}.safetensors",
        record=f"{RESULTS}/models/{{backbone}}_{{variant}}{{stage}}.json",
    wildcard_constraints:
        variant="spot|grid_control",
        stage=r"\d+",
    params:
        recipe=lambda w: recipe_params(recipe_chain(w.backbone, w.variant)[int(w.stage)]),
        recipe_name=lambda w: recipe_chain(w.backbone, w.variant)[int(w.stage)],
        data=lambda w: q(data_root()),
        state=lambda w: f"{STATE}/{w.backbone}_{w.variant}{w.stage}",
        parent=lambda w, input: f"--parent {q(input.parent)}",
    log:
        f"{RESULTS}/logs/train_{{backbone}}_{{variant}}{{stage}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_{{backbone}}_{{variant}}{{stage}}.tsv"


rule data_fmnist_plain:
    """Plain, centred 28×28 Fashion-MNIST (the sanity check's data)."""
    conda:
        "../envs/spot.yaml"
    output:
        manifest=f"{RESULTS}/sanity/data/manifest.json",
    params:
        out=lambda w, output: str(Path(output.manifest).parent),
    log:
        f"{RESULTS}/logs/data_fmnist_plain.log",
    shell:
        "spot data fmnist --variant plain --out {params.out} > {log} 2>&1"


# Sanity check, not part of `all`: a grid ViT on plain Fashion-MNIST (recipe sanity_plain_fmnist), next to the
# published 2-conv CNN's 91.6 %. `snakemake --cores 2 sanity`.
use rule train_backbone as sanity_plain_fmnist with:
    input:
        data=f"{RESULTS}/sanity/data/manifest.json",
    output:
        weights=f"{RESULTS}/sanity/plain_fmnist_vit.safetensors",
        record=f"{RESULTS}/sanity/plain_fmnist_vit.json",
    params:
        recipe=lambda w: recipe_params("sanity_plain_fmnist"),
        recipe_name="sanity_plain_fmnist",
        data=lambda w, input: q(Path(input.data).parent),
        state=f"{STATE}/sanity_plain_fmnist",
        parent="",
    log:
        f"{RESULTS}/logs/train_sanity_plain_fmnist.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_sanity_plain_fmnist.tsv"


rule sanity:
    input:
        rules.sanity_plain_fmnist.output.record,
