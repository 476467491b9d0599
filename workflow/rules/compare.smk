# Did this run reproduce the published reference? When reference/<preset>/ exists (spot publish), the workflow ends
# with `spot compare`: per result row the difference, its tolerance (the runs' per-image outcomes, paired; the
# training-seed spread where reference/<preset>/seed_spread.csv gives one) and a verdict, flipped findings first.
# The job never fails on a difference (--report-only): the report says whether the run reproduced; `spot compare`
# by hand exits 1 when it did not.


rule compare:
    """The comparison of this run with the published reference (markdown and HTML)."""
    conda:
        "../envs/spot.yaml"
    input:
        outputs=lambda w: artifact_outputs(),
        reference=f"{REFERENCE}/PUBLISHED.json",
    output:
        md=f"{OWN}/compare.md",
        html=report(f"{OWN}/compare.html", category="Reproduction",
                    caption="../report/compare.rst"),
    params:
        reference=lambda w, input: str(Path(input.reference).parent),
        preset=PRESET,
        spread=lambda w: f"--seed-spread {SEED_SPREAD}" if Path(SEED_SPREAD).is_file() else "",
    log:
        f"{OWN}/logs/compare.log",
    shell:
        "spot compare . {params.reference} --preset {params.preset} {params.spread} --out {output.md} --html {output.html}"
        " --report-only > {log} 2>&1"
