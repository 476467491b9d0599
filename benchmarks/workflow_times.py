"""Wall time per rule of a workflow run, from Snakemake's benchmark files (`results/<preset>/benchmarks/*.tsv`).

    python benchmarks/workflow_times.py results/embedded [results/pruning_ablations …]

Prints one row per rule (jobs, total and largest job seconds) and the totals of the parts the README times: the
SPoT part (everything but token pruning and the learned placement), token pruning (`train_pruned`, `pruning`), and
the learned placement (`train_policy`, `learned_placement`) with how much it grows the rest (issue 31's target:
≤ 10 %). Job seconds add up the jobs'
own wall times: with 2 cores running 2 jobs at once the workflow's wall time is about half of the total.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

RULE_PREFIXES = {"learned_placement_": "learned_placement", "pruning_": "pruning", "train_": "train", "evaluate_": "evaluate", "oracle_": "oracle",
                 "prior_selection_": "prior_selection", "throughput_": "throughput", "transfer": "transfer",
                 "data_": "data", "fetch_": "fetch"}


def rule_of(stem: str) -> str:
    """The rule a benchmark file belongs to, from its name (`train_cls_in1k_classifier` → `train`,
    `train_cls_in1k_prune_spot_ad` → `train_pruned`)."""
    if stem.startswith("train_") and ("_prune_" in stem or "_spotprune_" in stem):
        return "train_pruned"
    if stem.startswith("train_") and re.search(r"_policy(_joint(_control)?)?$", stem):
        return "train_policy"
    for prefix, rule in RULE_PREFIXES.items():
        if stem.startswith(prefix):
            return rule
    return stem


def job_seconds(path: Path) -> float:
    """The `s` column (wall seconds) of a benchmark file (the last repeat when there are several)."""
    lines = path.read_text().strip().splitlines()
    header, last = lines[0].split("\t"), lines[-1].split("\t")
    return float(last[header.index("s")])


def main(folders) -> int:
    per_rule = defaultdict(list)
    for folder in folders:
        files = sorted(Path(folder, "benchmarks").glob("*.tsv"))
        if not files:
            print(f"no benchmark files in {folder}/benchmarks: run the workflow first", file=sys.stderr)
            return 2
        for f in files:
            per_rule[rule_of(f.stem)].append(job_seconds(f))
    print("| rule | jobs | job seconds | largest job (s) |\n|---|---|---|---|")
    for rule, secs in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {rule} | {len(secs)} | {sum(secs):.0f} | {max(secs):.0f} |")
    pruning = sum(sum(v) for k, v in per_rule.items() if k in ("train_pruned", "pruning"))
    learned = sum(sum(v) for k, v in per_rule.items() if k in ("train_policy", "learned_placement"))
    total = sum(sum(v) for v in per_rule.values())
    print(f"\nSPoT part: {total - pruning - learned:.0f} job-s; token pruning: {pruning:.0f} job-s; learned placement: "
          f"{learned:.0f} job-s; all: {total:.0f} job-s (≈ {total / 2 / 60:.0f} min of wall time on 2 cores running 2 "
          "jobs at once)")
    if learned and total > learned:
        print(f"the learned placement grows the rest of the workflow by {100 * learned / (total - learned):.1f} % "
              "(target ≤ 10 %)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
