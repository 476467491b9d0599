# Tables and figures: notebooks/artifact.ipynb executed by papermill, one job per table or figure, so that
# `snakemake paper_figures/<preset>/figure5.pdf` runs only what figure 5 needs. Which tables and figures exist, what
# each reads and its caption come from spot's registry (spot/paper; ARTIFACTS in common.smk).


rule table:
    """A table of the paper as CSV, Markdown and LaTeX, from this preset's measurements (a figure: `use rule` below)."""
    conda:
        "../envs/spot.yaml"
    input:
        notebook="notebooks/artifact.ipynb",
        results=lambda w: [f for files in artifact_inputs(w.name).values() for f in files],
    output:
        csv=report(f"{FIGURES}/{{name}}.csv", category="Tables", caption="../report/artifact.rst",
                   labels={"table": "{name}"}),
        md=f"{FIGURES}/{{name}}.md",
        tex=f"{FIGURES}/{{name}}.tex",
        notebook=f"{FIGURES}/notebooks/{{name}}.ipynb",
    wildcard_constraints:
        name=alternation(TABLES),
    params:
        inputs=lambda w: json.dumps(artifact_inputs(w.name)),
        caption=lambda w: ARTIFACTS[w.name].caption,
        out_dir=lambda w, output: str(Path(output.notebook).parent.parent),
    log:
        f"{OWN}/logs/{{name}}.log",
    shell:  # a kernel starts slowly on a loaded 2-core machine: papermill's 60 s default failed once under CI
        "papermill --start-timeout 600 {input.notebook} {output.notebook} -r name {wildcards.name} -r inputs {params.inputs:q}"
        " -r config_json \"$SPOT_CONFIG\" -r out_dir {params.out_dir} --cwd . > {log} 2>&1"


# A figure of the paper as PDF and PNG: the same job as a table's, with a figure's files.
use rule table as figure with:
    output:
        pdf=report(f"{FIGURES}/{{name}}.pdf", category="Figures", caption="../report/artifact.rst",
                   labels={"figure": "{name}"}),
        png=f"{FIGURES}/{{name}}.png",
        notebook=f"{FIGURES}/notebooks/{{name}}.ipynb",
    wildcard_constraints:
        name=alternation(FIGURE_NAMES),
