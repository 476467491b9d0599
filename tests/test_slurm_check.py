"""check_jobs.py, the assertions of workflow/profiles/slurm/local-check.sh, on a synthetic Snakemake log and SLURM job
list (the real thing runs in CI: .ci/run calls local-check.sh)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_jobs", ROOT / "workflow/profiles/slurm/check_jobs.py")
check_jobs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_jobs)

BLOCK = """
[Tue Dec  1 21:00:00 2026]
rule {rule}:
    output: results/smoke/{rule}.csv
    jobid: {jobid}
    wildcards: model=cls_in1k
    threads: {threads}
    resources: tmpdir=<TBD>, mem_mb=480000, mem=480 GB, slurm_partition=check, runtime=60, cpus_per_task=64, gpu={gpu}
"""
LOCAL = """
[Tue Dec  1 21:09:00 2026]
localrule all:
    input: paper_figures/smoke/table1.csv
    jobid: 0
    resources: tmpdir=/tmp
"""
SUBMITTED = "Job {jobid} has been submitted with SLURM jobid {slurm} (log: {log}).\n"
JOB = ("JobId={slurm} JobName=uuid UserId=root(0) JobState={state} Reason=None TimeLimit={limit} NumCPUs={cpus} "
       "MinMemoryNode=480000M TRES=cpu={cpus},mem=480000M,node=1,billing={cpus}{tres} TresPerJob={per_job} "
       "Comment=rule_{rule}_wildcards_cls_in1k\n")


@pytest.fixture
def runs(tmp_path):
    for run in ("slurm", "local"):
        folder = tmp_path / run / "paper_figures" / "smoke"
        folder.mkdir(parents=True)
        (folder / "table1.csv").write_text("a,b\n1,2\n")
        (tmp_path / run / "results" / "smoke" / "throughput").mkdir(parents=True)
        (tmp_path / run / "results" / "smoke" / "throughput" / "cls_in1k.csv").write_text(run)  # timings: not compared
    return tmp_path


def write_case(tmp_path, *, cpus=64, gpus_granted=8, visible="0,1,2,3,4,5,6,7", state="COMPLETED", submit=True,
               limit="01:00:00", threads=1):
    slurm_log = tmp_path / "1.log"
    slurm_log.write_text(f"environment: environ({{'CUDA_VISIBLE_DEVICES': '{visible}', 'SLURM_JOB_ID': '1'}})\n")
    log = BLOCK.format(rule="train_backbone", jobid=3, gpu=8, threads=threads) + LOCAL
    if submit:
        log += "sbatch call: sbatch --parsable --comment rule_train_backbone_wildcards_cls_in1k -t 60 --gpus=8" \
               " --wrap=\"python -m snakemake\"\n" + SUBMITTED.format(jobid=3, slurm=1, log=slurm_log)
    tres = f",gres/gpu={gpus_granted}" if gpus_granted else ""
    jobs = JOB.format(slurm=1, state=state, limit=limit, cpus=cpus, tres=tres, rule="train_backbone",
                      per_job=f"gres:gpu:{gpus_granted}" if gpus_granted else "(null)")
    (tmp_path / "log.txt").write_text(log)
    (tmp_path / "jobs.txt").write_text(jobs)


def run_check(tmp_path, runs, capsys):
    rc = check_jobs.main(["--log", str(tmp_path / "log.txt"), "--jobs", str(tmp_path / "jobs.txt"),
                          "--slurm-run", str(runs / "slurm"), "--local-run", str(runs / "local")])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_a_consistent_run_passes(tmp_path, runs, capsys):
    write_case(tmp_path)
    rc, out, err = run_check(tmp_path, runs, capsys)
    assert rc == 0, err
    assert "1 of 1 cluster jobs went through sbatch" in out and "1 local rule jobs; 1 GPU jobs" in out
    assert "--gpus=8" in out and "1 of 1 tables and result files byte-identical" in out


@pytest.mark.parametrize("case, message", [
    (dict(cpus=16), "16 CPUs granted, 64 resolved"),
    (dict(gpus_granted=0, visible=""), "0 GPUs granted, gpu=8 resolved"),
    (dict(visible="0,1"), "2 GPUs in CUDA_VISIBLE_DEVICES, 8 requested"),
    (dict(state="FAILED"), "is FAILED"),
    (dict(submit=False), "was not submitted with sbatch"),
    (dict(limit="04:00:00"), "time limit 04:00:00, runtime=60"),
    (dict(threads=128), "threads 128 > the 64 CPUs granted"),
])
def test_each_mismatch_fails_naming_it(tmp_path, runs, capsys, case, message):
    write_case(tmp_path, **case)
    rc, _, err = run_check(tmp_path, runs, capsys)
    assert rc == 1 and message in err


def test_a_table_that_differs_fails(tmp_path, runs, capsys):
    write_case(tmp_path)
    (runs / "slurm" / "paper_figures" / "smoke" / "table1.csv").write_text("a,b\n1,3\n")
    rc, _, err = run_check(tmp_path, runs, capsys)
    assert rc == 1 and "paper_figures/smoke/table1.csv differs" in err


def test_time_limits_and_memory_parse():
    assert check_jobs.minutes("2-00:00:00") == 2880 and check_jobs.minutes("01:00:00") == 60
    assert check_jobs.minutes("30:00") == 30 and check_jobs.megabytes("62.50G") == 64000
