"""check_jobs.py, the assertions of workflow/profiles/slurm/local-check.sh, on a synthetic Snakemake log and SLURM job
list (the real thing runs in CI: .ci/run calls local-check.sh); and local-check.sh's guards — its own controller, its
own jobs, its own files — run with stand-ins for SLURM's commands."""
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


def test_timing_rows_of_a_result_file_are_not_compared(tmp_path, runs, capsys):
    """The learned placement's result CSV holds accuracies and images/s rows: the timings may differ, not the rest."""
    header = "placement,budget,metric,value\n"
    for run, speed in (("slurm", "1000.0"), ("local", "1234.5")):
        folder = runs / run / "results" / "smoke" / "learned_placement"
        folder.mkdir(parents=True)
        (folder / "cls_in1k.csv").write_text(header + f"learned,9,acc1,55.0\nlearned,9,images_per_s,{speed}\n")
    write_case(tmp_path)
    rc, out, err = run_check(tmp_path, runs, capsys)
    assert rc == 0, err
    assert "2 of 2 tables and result files byte-identical" in out
    (runs / "slurm" / "results" / "smoke" / "learned_placement" / "cls_in1k.csv").write_text(
        header + "learned,9,acc1,56.0\nlearned,9,images_per_s,1000.0\n")  # an accuracy differs: that fails
    rc, _, err = run_check(tmp_path, runs, capsys)
    assert rc == 1 and "learned_placement/cls_in1k.csv differs" in err


def test_time_limits_and_memory_parse():
    assert check_jobs.minutes("2-00:00:00") == 2880 and check_jobs.minutes("01:00:00") == 60
    assert check_jobs.minutes("30:00") == 30 and check_jobs.megabytes("62.50G") == 64000


# ------------------------------------------------------------------------------------------------------------------
# local-check.sh's guards, run for real (main of the sourced script) with stand-ins for SLURM's, munge's and the
# system's commands on PATH that log their calls: never a real SLURM, never a real /etc/slurm.
SCRIPT = ROOT / "workflow/profiles/slurm/local-check.sh"
FAKE = r"""#!/usr/bin/env bash
name="$(basename "$0")"
echo "$name $* | SLURM_CONF=${SLURM_CONF:-}" >> "$FAKE_LOG"
conf_cluster() { sed -n 's/^ClusterName=//p' "$1" 2>/dev/null | head -n 1; }
case "$name" in
  id) case "${1:-}" in -u) echo 0 ;; -un) echo root ;; esac ;;
  pgrep) exit 1 ;;
  install) [ "$1" = -d ] && mkdir -p "${@: -1}" ;;
  hostname) echo node1 ;;
  mknod) : > "$1" ;;
  munge) echo credential ;;
  unmunge) cat > /dev/null ;;
  slurmctld) touch "$FAKE_STATE/controller-up" ;;
  scontrol)
    if [ "$1 $2" = "show config" ]; then
      # a real client: SLURM_CONF first, else its compiled-in configuration; FAKE_SITE: a site SLURM's client
      if [ -n "${SLURM_CONF:-}" ]; then name="$(conf_cluster "$SLURM_CONF")"
      elif [ -n "${FAKE_SITE:-}" ] && { [ -z "${FAKE_SITE_AFTER_START:-}" ] || [ -e "$FAKE_STATE/controller-up" ]; }
      then name="$FAKE_SITE"
      elif [ -e "$FAKE_STATE/controller-up" ]; then name="$(conf_cluster "$FAKE_COMPILED_CONF")"
      else exit 1; fi
      [ -n "$name" ] || exit 1
      printf 'Configuration data as of now\nAccountingStorageType   = accounting_storage/none\n'
      printf 'ClusterName             = %s\nSLURM_CONF              = x\n' "$name"
    fi ;;
  sinfo) case "$*" in *-V*) echo "slurm 23.11.4" ;; *%T*) echo idle ;; *) echo "256 CPUs, 2048000 MB, gpu:32" ;; esac ;;
  squeue)  # the controller's queue: jobs of other users and partitions unless asked for this check's
    case " $* " in *" -p check -u root -n 7f3e-run "*) echo 4243 ;; *) printf '9001\n9002\n4242\n4243\n' ;; esac ;;
  sbatch) echo 4242 ;;
  python)
    case "$1" in
      -c) ;;
      -) cat > /dev/null; echo "default-resources: {slurm_partition: check}" ;;
      -m) if [[ " $* " == *" --profile "* ]]; then
            echo "SLURM run ID: 7f3e-run"
            echo "Job 3 has been submitted with SLURM jobid $(sbatch --parsable --wrap=x) (log: x)."
            exit "${FAKE_SNAKEMAKE_RC:-0}"
          fi ;;
    esac ;;
esac
exit 0
"""
COMMANDS = ("id pgrep install chown runuser hostname mknod munge unmunge munged slurmctld slurmd scontrol sinfo squeue "
            "scancel sbatch python").split()


@pytest.fixture
def sandbox(tmp_path):
    """Stand-ins on PATH, an /etc/slurm of the sandbox (the stand-in clients' compiled-in configuration folder) and a
    folder for the check's work folders; ``run(**env)`` runs the script's main and returns (rc, stdout, stderr, log)."""
    import subprocess

    bin_dir, state, etc, work = (tmp_path / n for n in ("bin", "state", "etc-slurm", "work"))
    for folder in (bin_dir, state, work):
        folder.mkdir()
    (bin_dir / "fake").write_text(FAKE)
    (bin_dir / "fake").chmod(0o755)
    for command in COMMANDS:
        (bin_dir / command).symlink_to("fake")
    log = tmp_path / "calls.log"

    def run(*args, **extra):
        first = extra.pop("PATH_FIRST", None)  # a folder searched before the stand-ins
        env = {"PATH": ":".join(filter(None, [first, str(bin_dir), "/usr/bin:/bin"])), "HOME": str(tmp_path),
               "FAKE_LOG": str(log),
               "FAKE_STATE": str(state), "FAKE_COMPILED_CONF": str(etc / "slurm.conf"),
               "SPOT_PYTHON": str(bin_dir / "python"), **extra}
        code = f'source "$1"; shift; CONF_DIR="{etc}"; WORK_PARENT="{work}"; main "$@"'
        proc = subprocess.run(["bash", "-c", code, "local-check", str(SCRIPT), *args], env=env, capture_output=True,
                              text=True, timeout=120)
        calls = log.read_text().splitlines() if log.exists() else []
        return proc.returncode, proc.stdout, proc.stderr, calls

    run.etc, run.work, run.tmp = etc, work, tmp_path
    return run


def called(calls, command):
    return [c for c in calls if c.split()[0] == command]


def test_local_check_runs_submits_and_cancels_only_its_own_jobs(sandbox):
    rc, out, err, calls = sandbox()
    assert rc == 0, err
    assert "installs, when missing" in out and "leaves behind: the packages above" in out and "passed" in out
    # the controller was asked for its cluster name before anything was submitted, and it was this run's
    first_sbatch = next(i for i, c in enumerate(calls) if c.startswith("sbatch "))
    assert any(c.startswith("scontrol show config") for c in calls[:first_sbatch])
    assert all(c.startswith("slurmctld -f ") or c.split()[0] != "slurmctld" for c in calls)
    # clean-up: only the id Snakemake logged (4242) and the one of the check's partition, user and run (4243)
    assert [c.split(" | ")[0] for c in called(calls, "scancel")] == ["scancel --quiet 4242 4243"]
    assert all("-p check -u root -n 7f3e-run" in c for c in called(calls, "squeue"))
    # it removed what it wrote (and the /etc/slurm it created), and its work folder
    assert not sandbox.etc.exists() and list(sandbox.work.iterdir()) == []


def test_a_failed_run_cancels_only_its_own_jobs_too(sandbox):
    rc, _, err, calls = sandbox(FAKE_SNAKEMAKE_RC="1")
    assert rc == 1 and "the SLURM run failed" in err
    assert [c.split(" | ")[0] for c in called(calls, "scancel")] == ["scancel --quiet 4242 4243"]
    assert not sandbox.etc.exists()


def test_a_foreign_slurm_conf_in_the_environment_is_ignored(sandbox):
    foreign = sandbox.tmp / "site-slurm.conf"
    foreign.write_text("ClusterName=site\nSlurmctldHost=head\n")
    rc, out, err, calls = sandbox(SLURM_CONF=str(foreign), SLURM_CLUSTERS="site", SQUEUE_FORMAT="%all")
    assert rc == 0, err
    assert f"ignoring SLURM_CONF={foreign}" in out
    assert all(c.endswith("SLURM_CONF=") for c in calls)  # no command saw it
    assert [c.split(" | ")[0] for c in called(calls, "scancel")] == ["scancel --quiet 4242 4243"]


def test_a_reachable_foreign_controller_is_refused_before_anything_is_written(sandbox):
    rc, _, err, calls = sandbox(FAKE_SITE="site")
    assert rc == 1
    assert err.strip().splitlines() == [
        "local-check: FAILED: scontrol already reaches a SLURM controller (cluster 'site'): this machine uses a SLURM "
        "of its own; run the check on a machine without one"]
    assert not called(calls, "slurmctld") and not called(calls, "sbatch") and not called(calls, "scancel")
    assert not sandbox.etc.exists() and list(sandbox.work.iterdir()) == []


def test_clients_that_reach_another_cluster_are_refused_before_any_sbatch(sandbox):
    """A SLURM under another prefix: the daemons started, but scontrol answers with another cluster's name."""
    rc, _, err, calls = sandbox(FAKE_SITE="site", FAKE_SITE_AFTER_START="1")
    assert rc == 1
    assert "FAILED: scontrol reaches cluster 'site', not this check's own (spotcheck" in err
    assert not called(calls, "sbatch") and not called(calls, "squeue") and not called(calls, "scancel")
    assert not [c for c in calls if c.startswith("python -m")]  # no Snakemake run
    assert not sandbox.etc.exists()  # its own files removed


def test_slurm_commands_of_two_installations_are_refused_before_any_sbatch(sandbox):
    site = sandbox.tmp / "opt-slurm-bin"
    site.mkdir()
    (site / "sbatch").symlink_to(sandbox.tmp / "bin" / "fake")
    rc, _, err, calls = sandbox(PATH_FIRST=str(site))
    assert rc == 1
    assert f"come from different folders ({sandbox.tmp / 'bin'} {site}): more than one SLURM here?" in err
    assert not called(calls, "sbatch") and not called(calls, "scancel")
    assert not sandbox.etc.exists()


@pytest.mark.parametrize("name", ["gres.conf", "slurm.conf"])
def test_an_existing_configuration_file_is_refused_and_kept(sandbox, name):
    sandbox.etc.mkdir()
    (sandbox.etc / name).write_text("NodeName=gpu01 Name=gpu File=/dev/nvidia[0-7]\n")
    rc, _, err, calls = sandbox()
    assert rc == 1
    assert err.strip().splitlines() == [
        f"local-check: FAILED: {sandbox.etc / name} exists and was not written by this check: this machine has a "
        "SLURM of its own, which this check would replace; run it on a machine without one"]
    assert not called(calls, "slurmctld") and not called(calls, "sbatch") and not called(calls, "scancel")
    assert (sandbox.etc / name).read_text() == "NodeName=gpu01 Name=gpu File=/dev/nvidia[0-7]\n"
    assert sorted(p.name for p in sandbox.etc.iterdir()) == [name]


def test_a_leftover_of_its_own_is_replaced_and_removed_other_files_kept(sandbox):
    sandbox.etc.mkdir()
    mark = "# written by spot's workflow/profiles/slurm/local-check.sh"
    (sandbox.etc / "gres.conf").write_text(f"{mark}\nNodeName=old\n")  # a killed run's
    (sandbox.etc / "cgroup.conf").write_text("site\n")
    rc, _, err, _ = sandbox()
    assert rc == 0, err
    assert sorted(p.name for p in sandbox.etc.iterdir()) == ["cgroup.conf"]  # the folder was there: kept
