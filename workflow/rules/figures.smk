# Tables and figures: the notebooks in notebooks/ executed by papermill, one job per table or figure, so that
# `snakemake paper_figures/<preset>/figure5.pdf` runs only what figure 5 needs.


rule table:
    """Table N of the paper as CSV, Markdown and LaTeX, from this preset's measurements."""
    conda:
        "../envs/spot.yaml"
    input:
        notebook="notebooks/tables.ipynb",
        results=lambda w: TABLE_INPUTS[int(w.n)](),
    output:
        csv=report(f"{FIGURES}/table{{n}}.csv", category="Tables", caption="../report/table.rst",
                   labels={"table": "{n}"}),
        md=f"{FIGURES}/table{{n}}.md",
        tex=f"{FIGURES}/table{{n}}.tex",
        notebook=f"{FIGURES}/notebooks/table{{n}}.ipynb",
    wildcard_constraints:
        n="[1-8]",
    params:
        results=lambda w, input: ",".join(input.results),
        config=MERGED_CONFIG,
        out_dir=lambda w, output: str(Path(output.csv).parent),
    log:
        f"{RESULTS}/logs/table{{n}}.log",
    shell:
        "papermill {input.notebook} {output.notebook} -p table {wildcards.n} -r results {params.results:q}"
        " -r config {params.config} -r out_dir {params.out_dir} --cwd . > {log} 2>&1"


rule figure:
    """Figure N of the paper as PDF and PNG."""
    conda:
        "../envs/spot.yaml"
    input:
        notebook="notebooks/figures.ipynb",
        results=lambda w: FIGURE_INPUTS[w.n](),
    output:
        pdf=report(f"{FIGURES}/figure{{n}}.pdf", category="Figures", caption="../report/figure.rst",
                   labels={"figure": "{n}"}),
        png=f"{FIGURES}/figure{{n}}.png",
        notebook=f"{FIGURES}/notebooks/figure{{n}}.ipynb",
    wildcard_constraints:
        n="|".join(FIGURE_INPUTS),
    params:
        results=lambda w, input: ",".join(input.results),
        config=MERGED_CONFIG,
        out_dir=lambda w, output: str(Path(output.pdf).parent),
        data=lambda w: data_root(),
    log:
        f"{RESULTS}/logs/figure{{n}}.log",
    shell:
        "papermill {input.notebook} {output.notebook} -p figure {wildcards.n} -r results {params.results:q}"
        " -r config {params.config} -r out_dir {params.out_dir} -r data {params.data} --cwd . > {log} 2>&1"
