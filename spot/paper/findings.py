"""The ``findings`` table: every finding the artifact reports, checked against this run's results
(:mod:`spot.findings`) — one row per finding and scope, and one across its scopes."""
from __future__ import annotations

import pandas as pd

from ..findings import FINDINGS, SOURCES, evaluate_all, reads
from .registry import table

COLUMNS = ("Finding", "Source", "Claim", "Scope", "Statistic", "Estimate (points)", "95 % CI low", "95 % CI high",
           "p (McNemar)", "Images", "Verdict", "Note")


@table("findings", reads=reads(),
       caption="Findings: every claim the artifact reports — the SPoT paper's (ICCVW 2025), seed 003's for SPOT-AD, "
               "and this project's own — checked on this run's results: per backbone (or model pair, budget) the "
               "paired difference behind the claim in points on the same images, its 95 % interval and McNemar's p "
               "(0/1 outcomes; empty for scores averaged over a stochastic prior's seeds), and the verdict: holds "
               "when the interval lies on the claimed side of the threshold (0, or −1 point for \"within 1 point\"), "
               "contradicted when it lies on the other side, inconclusive when it contains it, not measured where "
               "this preset has no such rows; the row \"all\" of each finding is holds or contradicted when every "
               "measured scope agrees, else mixed.")
def findings(inputs, config) -> pd.DataFrame:
    rows = []
    for v in evaluate_all(inputs, config):
        f = FINDINGS[v.finding]
        rows.append(dict(zip(COLUMNS, (
            v.finding, f"{f.source}: {SOURCES[f.source]}", f.quote, v.scope, v.statistic, v.estimate, v.ci_low,
            v.ci_high, v.p_value, v.n_images, v.verdict, v.note))))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["Images"] = frame["Images"].astype("Int64")  # an integer count, empty where no images were compared
    # two significant digits, as text: the tables' CSVs round numbers to 10 decimals, which would make p = 1e-40 a 0
    frame["p (McNemar)"] = frame["p (McNemar)"].map(lambda p: "" if pd.isna(p) else f"{p:.2g}")
    return frame


ALL = "all"  # the scope of a finding's row across its scopes


def _scope_cell(row) -> str:
    if pd.isna(row["Estimate (points)"]):
        return f"{row['Scope']}: {row['Verdict']}"
    return (f"{row['Scope']}: {row['Estimate (points)']:+.1f} [{row['95 % CI low']:+.1f}, "
            f"{row['95 % CI high']:+.1f}] {row['Verdict']}")


def readme_block(findings_csv) -> str:
    """The README's findings section from a findings table: per finding its verdict across scopes, and every scope's
    paired difference (points) with its 95 % interval and verdict — generated, so the README states what the table
    says (tests/test_readme.py checks it against the published reference)."""
    frame = pd.read_csv(findings_csv, dtype={"p (McNemar)": str})
    lines = ["| Finding | Source | Verdict | Per scope: difference (points) [95 % CI] verdict |", "|---|---|---|---|"]
    for name, group in frame.groupby("Finding", sort=False):
        overall = group[group["Scope"] == ALL]
        verdict = overall["Verdict"].iloc[0] if len(overall) else group["Verdict"].iloc[0]
        scopes = "; ".join(_scope_cell(r) for _, r in group[group["Scope"] != ALL].iterrows())
        source = str(group["Source"].iloc[0]).split(":")[0]
        lines.append(f"| {name} | {source} | **{verdict}** | {scopes} |")
    return "\n".join(lines) + "\n"
