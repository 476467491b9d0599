# spot — the workflow from raw data to every table and figure of the paper.
#
#   snakemake --cores 2                                   # the embedded default (config.yaml): CPU, Fashion-MNIST canvas
#   snakemake --cores 2 --configfile config/smoke.yaml    # a tiny end-to-end run (CI)
#   snakemake --profile workflow/profiles/slurm --configfile config/paper.yaml   # the paper: ImageNet, ViT-B/16, SLURM
#   snakemake --cores 2 paper_figures/embedded/figure5.pdf   # one figure (and only what it needs)
#
# Rules per stage live in workflow/rules/; helpers in workflow/rules/common.smk. The preset is config.yaml unless
# --configfile names another (config/paper.yaml, config/smoke.yaml, …); common.smk resolves its `extends:` chain
# (every preset layers over config/paper.yaml, the complete base) and checks it before anything runs (a dry run
# included): the structure against workflow/schemas/config.schema.yaml, every section a `spot` command reads with that
# command's own typed settings, every recipe; a mistake stops the DAG with one line naming the key, the value and
# what is accepted. Config strings reach the jobs' shells quoted.


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/pruning.smk"
include: "workflow/rules/learned.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/compare.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
