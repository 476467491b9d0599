# Tables and figures: the notebooks in notebooks/ executed by papermill, one job per table or figure, so that
# `snakemake paper_figures/<preset>/figure5.pdf` runs only what figure 5 needs.


def _evaluations():
    return [f"{RESULTS}/evaluation/{m}.csv" for m in MODELS]


def _oracles():
    return [f"{RESULTS}/oracle/{m}.csv" for m in MODELS]


# what each table/figure is computed from (result tables; the notebooks read their provenance sidecars too)
TABLE_INPUTS = {
    1: _oracles,
    2: lambda: _evaluations() + _oracles(),
    3: _oracles,
    4: lambda: [f"{RESULTS}/transfer.csv"],
    5: lambda: _evaluations() + _oracles(),
    6: _oracles,
    7: lambda: [spot_model(m).replace(".safetensors", ".json") for m in MODELS if config["retrofit"] == "train"],
    8: _evaluations,
}
FIGURE_INPUTS = {
    1: lambda: [data_manifest()],
    2: lambda: [data_manifest()],
    3: lambda: [data_manifest()],
    4: lambda: [f"{RESULTS}/oracle/{m}.trajectories.npz" for m in MODELS],
    5: lambda: [f"{RESULTS}/throughput.csv"] + _evaluations() + _oracles(),
}


rule table:
    """Table N of the paper as CSV, Markdown and LaTeX, from this preset's measurements."""
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
        out_dir=FIGURES,
    log:
        f"{RESULTS}/logs/table{{n}}.log",
    shell:
        "{PAPERMILL} {input.notebook} {output.notebook} -p table {wildcards.n} -r results {params.results:q}"
        " -r config {params.config} -r out_dir {params.out_dir} --cwd . > {log} 2>&1"


rule figure:
    """Figure N of the paper as PDF and PNG."""
    input:
        notebook="notebooks/figures.ipynb",
        results=lambda w: FIGURE_INPUTS[int(w.n)](),
    output:
        pdf=report(f"{FIGURES}/figure{{n}}.pdf", category="Figures", caption="../report/figure.rst",
                   labels={"figure": "{n}"}),
        png=f"{FIGURES}/figure{{n}}.png",
        notebook=f"{FIGURES}/notebooks/figure{{n}}.ipynb",
    wildcard_constraints:
        n="[1-5]",
    params:
        results=lambda w, input: ",".join(input.results),
        config=MERGED_CONFIG,
        out_dir=FIGURES,
        data=lambda w: data_root(),
    log:
        f"{RESULTS}/logs/figure{{n}}.log",
    shell:
        "{PAPERMILL} {input.notebook} {output.notebook} -p figure {wildcards.n} -r results {params.results:q}"
        " -r config {params.config} -r out_dir {params.out_dir} -r data {params.data} --cwd . > {log} 2>&1"
