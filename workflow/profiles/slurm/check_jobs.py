"""What `local-check.sh` asserts after the smoke preset ran through the SLURM profile (standard library only).

    python check_jobs.py --log SNAKEMAKE_OUTPUT --jobs SCONTROL_SHOW_JOB_O --slurm-run DIR --local-run DIR [--preset P]

1. every job Snakemake ran went through ``sbatch``: each job block of the run's output (``rule NAME:`` … ``jobid: N``
   … ``resources: …``) has a "Job N has been submitted with SLURM jobid X" line, and X is a COMPLETED job in the
   controller's job list (``scontrol show job -o``) whose comment names the same rule;
2. the resources Snakemake resolved for the job (the rules' declarations, the profile's ``default-resources`` and
   ``set-resources``) are what SLURM granted: CPUs, memory, time limit and GPUs; ``threads`` fit in the CPUs; a GPU
   job sees as many GPUs in ``CUDA_VISIBLE_DEVICES``;
3. the tables and result files of the SLURM run are byte-identical to the local ``--cores`` run of the same preset.

Prints what it checked, the ``sbatch`` calls of the training rules, and exits 1 naming every mismatch.
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from pathlib import Path

TRAIN_RULES = ("train_backbone", "train_chain_stage", "sanity_plain_fmnist")


def job_blocks(log: str) -> dict[int, dict]:
    """Snakemake's job blocks: ``{jobid: {rule, local, threads, resources}}``."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:\n)", log):
        head = re.match(r"(local)?(?:rule|checkpoint) (\w+):\n", block)
        jobid = re.search(r"^\s+jobid: (\d+)$", block, re.M)
        if not head or not jobid:
            continue
        resources = {}
        if m := re.search(r"^\s+resources: (.+)$", block, re.M):
            resources = dict(item.split("=", 1) for item in m.group(1).split(", ") if "=" in item)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        jobs[int(jobid.group(1))] = {"rule": head.group(2), "local": bool(head.group(1)), "resources": resources,
                                     "threads": int(threads.group(1)) if threads else 1}
    return jobs


def submissions(log: str) -> dict[int, tuple[str, Path]]:
    """``{snakemake jobid: (SLURM jobid, the job's SLURM log)}``."""
    return {int(m.group(1)): (m.group(2), Path(m.group(3))) for m in
            re.finditer(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?$", log, re.M)}


def visible_gpus(slurm_log: Path) -> int | None:
    """How many GPUs SLURM exposed to the job (CUDA_VISIBLE_DEVICES in the environment the job step logs)."""
    text = slurm_log.read_text(errors="replace") if slurm_log.is_file() else ""
    m = re.search(r"'CUDA_VISIBLE_DEVICES': '([^']*)'", text)
    return len([d for d in m.group(1).split(",") if d]) if m else None


def sbatch_calls(log: str) -> list[str]:
    return re.findall(r"sbatch call: (sbatch .+?)(?: --wrap=.*)?$", log, re.M)


def slurm_jobs(text: str) -> dict[str, dict]:
    """``scontrol show job -o``: one line per job of ``Key=Value`` pairs."""
    jobs = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+(?:/\w+)?)=(\S*)", line))
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def minutes(limit: str) -> int:
    """SLURM's time limit ``[D-]HH:MM:SS`` (or ``MM:SS``) in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + (parts[2] > 0)


def megabytes(memory: str) -> int:
    value, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", memory).groups()
    return round(float(value) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[unit])


def granted_gpus(job: dict) -> int:
    for key in ("TresPerJob", "TresPerNode", "TRES"):
        if m := re.search(r"gres[:/]gpu[:=](\d+)", job.get(key, "")):
            return int(m.group(1))
    return 0


def check_resources(rule: str, wanted: dict, threads: int, job: dict) -> list[str]:
    problems = []
    cpus = int(wanted.get("cpus_per_task", threads))
    if int(job["NumCPUs"]) != cpus:
        problems.append(f"{rule}: {job['NumCPUs']} CPUs granted, {cpus} resolved (cpus_per_task)")
    if threads > int(job["NumCPUs"]):
        problems.append(f"{rule}: threads {threads} > the {job['NumCPUs']} CPUs granted")
    if "mem_mb" in wanted and megabytes(job["MinMemoryNode"]) < int(wanted["mem_mb"]):
        problems.append(f"{rule}: {job['MinMemoryNode']} memory granted, mem_mb={wanted['mem_mb']} resolved")
    if "runtime" in wanted and minutes(job["TimeLimit"]) != int(wanted["runtime"]):
        problems.append(f"{rule}: time limit {job['TimeLimit']}, runtime={wanted['runtime']} min resolved")
    if granted_gpus(job) != int(wanted.get("gpu", 0)):
        problems.append(f"{rule}: {granted_gpus(job)} GPUs granted, gpu={wanted.get('gpu', 0)} resolved")
    return problems


# the words of a timing-like metric (images_per_s …), as spot.reproduce.compare.TIMING_WORDS reads them
TIMING_WORDS = frozenset({"time", "times", "timing", "wall", "elapsed", "duration", "latency", "seconds", "sec",
                          "s", "ms"})


def without_timings(data: bytes) -> bytes:
    """A result CSV without its timing rows (a ``metric`` like ``images_per_s``: the learned placement's file mixes
    them with accuracies); other files unchanged."""
    text = data.decode(errors="replace")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or "metric" not in rows[0]:
        return data
    k = rows[0].index("metric")
    kept = [r for r in rows[1:] if len(r) <= k or not TIMING_WORDS & set(r[k].lower().split("_"))]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([rows[0], *kept])
    return out.getvalue().encode()


def compare_outputs(slurm_run: Path, local_run: Path, preset: str) -> tuple[list[str], list[str]]:
    """Tables (csv, md, tex) and result CSVs of both runs: (compared files, differing files). Throughput is timing,
    and so are the timing rows of a result CSV (compared without them)."""
    patterns = [f"paper_figures/{preset}/table*.csv", f"paper_figures/{preset}/table*.md",
                f"paper_figures/{preset}/table*.tex", f"results/{preset}/**/*.csv"]
    compared, differ = [], []
    for pattern in patterns:
        for path in sorted(local_run.glob(pattern)):
            rel = path.relative_to(local_run)
            if "throughput" in rel.parts or "throughput" in rel.name:
                continue  # wall-clock measurements
            compared.append(str(rel))
            other = slurm_run / rel
            if not other.is_file() or without_timings(other.read_bytes()) != without_timings(path.read_bytes()):
                differ.append(str(rel))
    return compared, differ


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log", required=True, type=Path)
    p.add_argument("--jobs", required=True, type=Path)
    p.add_argument("--slurm-run", required=True, type=Path)
    p.add_argument("--local-run", required=True, type=Path)
    p.add_argument("--preset", default="smoke")
    args = p.parse_args(argv)
    log = args.log.read_text(errors="replace")
    blocks, submitted, granted = job_blocks(log), submissions(log), slurm_jobs(args.jobs.read_text())
    problems = []
    remote = {jobid: b for jobid, b in blocks.items() if not b["local"]}
    if not remote:
        problems.append("no job blocks in the Snakemake output (was it run with --verbose?)")
    for jobid, block in sorted(remote.items()):
        rule = block["rule"]
        if jobid not in submitted:
            problems.append(f"job {jobid} ({rule}) was not submitted with sbatch")
            continue
        slurm_id, slurm_log = submitted[jobid]
        job = granted.get(slurm_id)
        if job is None:
            problems.append(f"job {jobid} ({rule}): SLURM job {slurm_id} is not in the controller's job list")
            continue
        if job.get("JobState") != "COMPLETED" or not job.get("Comment", "").startswith(f"rule_{rule}"):
            problems.append(f"job {jobid} ({rule}): SLURM job {slurm_id} is {job.get('JobState')} with comment "
                            f"{job.get('Comment')!r}")
        problems += check_resources(rule, block["resources"], block["threads"], job)
        gpus = int(block["resources"].get("gpu", 0))
        if gpus and visible_gpus(slurm_log) != gpus:
            problems.append(f"job {jobid} ({rule}): {visible_gpus(slurm_log)} GPUs in CUDA_VISIBLE_DEVICES, {gpus} "
                            f"requested ({slurm_log})")
    rules = sorted({b["rule"] for b in remote.values()})
    gpu_jobs = sum(int(b["resources"].get("gpu", 0)) > 0 for b in remote.values())
    print(f"{len(submitted)} of {len(remote)} cluster jobs went through sbatch and COMPLETED in SLURM "
          f"({len(blocks) - len(remote)} local rule jobs; {gpu_jobs} GPU jobs); rules: {', '.join(rules)}")
    print("sbatch calls of the training rules:")
    for call in sbatch_calls(log):
        if any(f"rule_{r}" in call for r in TRAIN_RULES):
            print(f"  {call}")
    compared, differ = compare_outputs(args.slurm_run, args.local_run, args.preset)
    if not compared:
        problems.append(f"the local run produced no tables under {args.local_run}/paper_figures/{args.preset}")
    problems += [f"{rel} differs between the SLURM and the local run" for rel in differ]
    print(f"{len(compared) - len(differ)} of {len(compared)} tables and result files byte-identical to the local run")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
