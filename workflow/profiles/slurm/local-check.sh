#!/usr/bin/env bash
# A real SLURM on this one machine, and the smoke preset run through the project's SLURM profile.
#
#   workflow/profiles/slurm/local-check.sh [--keep]        (as root, or with password-less sudo; CI runs it)
#
# 1. installs Debian's slurm-wlm and munge when missing (apt-get) and starts munged, slurmctld and slurmd with a
#    configuration of their own (/etc/slurm/slurm.conf and gres.conf, removed afterwards; a cluster name, state,
#    logs, socket and ports of their own). It refuses to run where a SLURM is already here: a slurm.conf or gres.conf
#    it did not write, a running slurmctld or slurmd, or a controller that scontrol already reaches; SLURM_CONF and
#    the other SLURM_* variables of the environment are dropped. Before anything is submitted, the controller that
#    scontrol reaches must report this run's own (random) cluster name — a SLURM under another prefix, whose clients
#    read another configuration, is refused. The one node stands in for four 8-GPU nodes — 256 CPUs, 2 TB, 32 GPUs,
#    declared with `SlurmdParameters=config_overrides` — so the profile's real requests (64 CPUs and 480 GB per
#    training job) are scheduled as they are, not shrunk to this machine. The GPUs are character devices that copy
#    /dev/null: SLURM hands them out (CUDA_VISIBLE_DEVICES), CUDA sees none;
# 2. runs `snakemake --profile workflow/profiles/slurm --configfile config/smoke.yaml` — the README's cluster command
#    on the smoke preset — with an overlay profile holding only what a one-node test cluster needs (its partition
#    name, no account, job status from `squeue`: there is no accounting database), and a config overlay that changes
#    no result: training starts under torchrun and asks for 8 GPUs, evaluation for 1, as on a cluster;
# 3. runs the same preset with `--cores 2` at the same time (the SLURM run mostly waits), then checks with
#    check_jobs.py that every job went through sbatch and completed, that SLURM granted each job the CPUs, memory,
#    time limit and GPUs Snakemake resolved for it, and that tables and result files of both runs are byte-identical.
# On any exit it cancels its own jobs (the ids Snakemake logged submitting, and those of its partition, user and
# Snakemake run on its own controller, checked again by cluster name; never a whole queue), stops its daemons,
# removes the files it wrote and its folder (--keep keeps the folder); exits non-zero with a message on any failure.
# It prints at the start what it installs and what it leaves behind (the packages). The tests source this file
# (functions only: main runs when it is executed) and run main with stand-ins for SLURM's commands.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
PYTHON="${SPOT_PYTHON:-$ROOT/.venv/bin/python}"
PRESET=smoke
PARTITION=check
# the configuration must sit at SLURM's compiled-in path: the job-step executor removes SLURM_CONF (with every
# SLURM_* variable) from the environment of the `srun` it starts inside each job
CONF_DIR=/etc/slurm
WORK_PARENT=/tmp
MARK="# written by spot's workflow/profiles/slurm/local-check.sh"
CLUSTER="spotcheck$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"  # this run's: no other controller answers to it
KEEP=0
START=$SECONDS
WORK=""
WROTE=()          # the configuration files this run wrote: the only ones its clean-up removes
MADE_CONF_DIR=0   # whether this run created $CONF_DIR (then removed at exit when empty)
OWN_CONTROLLER=0  # set once the controller scontrol reaches answered with this run's cluster name

fail() { echo "local-check: FAILED: $*" >&2; exit 1; }
say() { echo "local-check [$((SECONDS - START)) s]: $*"; }

announce() {
    cat <<EOF
local-check: what this check does to this machine —
  installs, when missing (apt-get), and leaves installed: Debian's slurm-wlm and munge, with what their install
    scripts set up (their users, /etc/munge/munge.key; where systemd runs, their services) and apt's package lists;
  writes, and removes at exit: $CONF_DIR/slurm.conf and $CONF_DIR/gres.conf (cluster $CLUSTER; it refuses to run
    where either exists and was not written by this check), and $CONF_DIR itself when it had to create it;
  starts, and stops at exit: munged, slurmctld and slurmd (ports 16817 and 16818; key, socket, state and logs in its
    folder $WORK_PARENT/spot-slurm-check.*, removed at exit unless --keep), and cancels at exit its own jobs only;
  leaves behind: the packages above, and nothing else.
EOF
}

forget_slurm_environment() {
    # SLURM_CONF would point the clients at another configuration (a site's cluster), SLURM_CLUSTERS and the
    # commands' own variables (SBATCH_*, SQUEUE_*, ...) at other clusters or other output
    local name
    for name in $(compgen -e); do
        case "$name" in
            SLURM_*|SBATCH_*|SQUEUE_*|SCANCEL_*|SINFO_*|SCONTROL_*|SRUN_*|SALLOC_*|SACCT_*)
                if [ "$name" = SLURM_CONF ]; then say "ignoring SLURM_CONF=$SLURM_CONF from the environment"; fi
                unset "$name" ;;
        esac
    done
}

controller_cluster() {  # the ClusterName of the controller that scontrol reaches; empty when none answers
    { timeout 15 scontrol show config 2>/dev/null || true; } | awk -F' *= *' '$1 == "ClusterName" && !n++ {print $2}'
}

refuse_foreign_configuration() {
    local file
    for file in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
        if { [ -e "$file" ] || [ -L "$file" ]; } && ! grep -qF "$MARK" "$file" 2>/dev/null; then
            fail "$file exists and was not written by this check: this machine has a SLURM of its own," \
                "which this check would replace; run it on a machine without one"
        fi
    done
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        fail "slurmctld or slurmd is already running here (another check, or a SLURM of this machine): stop it first"
    fi
    local name
    name="$(controller_cluster)"
    [ -z "$name" ] || fail "scontrol already reaches a SLURM controller (cluster '$name'): this machine uses a SLURM" \
        "of its own; run the check on a machine without one"
}

write_conf() {  # write_conf NAME < CONTENT: $CONF_DIR/NAME, marked as this check's, removed at exit (not in a pipe:
                # WROTE must be this shell's)
    WROTE+=("$CONF_DIR/$1")
    { echo "$MARK"; cat; } > "$CONF_DIR/$1"
}

require_own_controller() {
    # nothing is submitted (and nothing cancelled at exit) unless the controller the clients reach is this run's
    local name="" deadline=$((SECONDS + 60)) folders
    folders="$(for c in scontrol sbatch squeue scancel sinfo; do
        dirname "$(command -v "$c" || echo '?/missing')"
    done | sort -u)"
    [ "$(wc -l <<< "$folders")" = 1 ] || fail "SLURM's commands (scontrol, sbatch, squeue, scancel, sinfo) come from" \
        "different folders ($(echo $folders)): more than one SLURM here? nothing submitted"
    while [ $SECONDS -lt $deadline ]; do
        name="$(controller_cluster)"
        [ -n "$name" ] && break
        sleep 1
    done
    [ -n "$name" ] || fail "no SLURM controller answers scontrol (this check's is cluster $CLUSTER): nothing submitted"
    [ "$name" = "$CLUSTER" ] || fail "scontrol reaches cluster '$name', not this check's own ($CLUSTER," \
        "$CONF_DIR/slurm.conf): a SLURM under another prefix or configuration? nothing submitted"
    OWN_CONTROLLER=1
}

own_job_ids() {
    # the ids Snakemake logged submitting, and in its own controller's queue those of this check's partition, user
    # and Snakemake run (its job name: a job submitted just before an interruption, not logged yet)
    local log="$WORK/slurm-run.log" run_id
    run_id="$(sed -n 's/.*SLURM run ID: \([A-Za-z0-9_-]*\).*/\1/p' "$log" 2>/dev/null | head -n 1 || true)"
    {
        grep -oE 'with SLURM jobid [0-9]+' "$log" 2>/dev/null | grep -oE '[0-9]+$' || true
        if [ -n "$run_id" ]; then
            squeue -h -p "$PARTITION" -u "$(id -un)" -n "$run_id" -o %i 2>/dev/null || true
        fi
    } | { grep -xE '[0-9]+' || true; } | sort -un
}

cancel_own_jobs() {
    [ "$OWN_CONTROLLER" = 1 ] || return 0  # nothing submitted, or a controller that is not this check's
    if [ "$(controller_cluster)" != "$CLUSTER" ]; then
        echo "local-check: cancelling nothing: scontrol no longer reaches this check's cluster $CLUSTER" >&2
        return 0
    fi
    local ids
    ids="$(own_job_ids)"
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        scancel --quiet $ids 2>/dev/null || true  # no job of this check outlives it
    fi
}

cleanup() {
    local rc=$? file
    if [ -n "${SNAKEMAKE_PID:-}" ]; then kill "$SNAKEMAKE_PID" 2>/dev/null || true; fi
    if [ -n "${LOCAL_PID:-}" ]; then kill "$LOCAL_PID" 2>/dev/null || true; fi
    cancel_own_jobs
    sleep 1
    for pid in "$WORK"/run/slurmd.pid "$WORK"/run/slurmctld.pid "$WORK"/munge/munged.pid; do
        if [ -f "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
    done
    sleep 1
    if [ "$rc" != 0 ]; then cp "$CONF_DIR/slurm.conf" "$WORK/etc/" 2>/dev/null || true; fi
    for file in ${WROTE[@]+"${WROTE[@]}"}; do
        if grep -qF "$MARK" "$file" 2>/dev/null; then rm -f "$file"; fi
    done
    if [ "$MADE_CONF_DIR" = 1 ]; then rmdir "$CONF_DIR" 2>/dev/null || true; fi
    if [ "$rc" != 0 ]; then
        for log in "$WORK"/log/*.log; do
            if [ -f "$log" ]; then echo "--- $log (tail)"; tail -n 20 "$log"; fi
        done >&2
    fi
    if [ "$KEEP" = 1 ]; then echo "local-check: kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}

copy_workflow() {
    mkdir -p "$1"
    cp "$ROOT/Snakefile" "$ROOT/config.yaml" "$1/"
    cp -r "$ROOT/workflow" "$ROOT/config" "$ROOT/notebooks" "$1/"
}

main() {
    [ "${1:-}" = "--keep" ] && KEEP=1
    forget_slurm_environment

    # ------------------------------------------------------------------------------------------- prerequisites
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            exec sudo -n -E "$0" "$@"
        fi
        fail "this check installs and starts SLURM: run it as root or with password-less sudo"
    fi
    announce
    [ -x "$PYTHON" ] || fail "no Python at $PYTHON: install the project first (README, command 2) or set SPOT_PYTHON"
    "$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
        || fail "the SLURM executor plugin is missing: $PYTHON -m pip install -c constraints.txt -e '.[cluster]'"

    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        command -v apt-get >/dev/null || fail "slurm-wlm and munge are not installed and there is no apt-get to install them"
        say "installing slurm-wlm and munge (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
            apt-get update -q >/dev/null 2>&1 || fail "apt-get update failed: the package lists cannot be fetched"
            apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
                || fail "apt-get install slurm-wlm munge failed (messages above)"
        fi
    fi
    id munge >/dev/null 2>&1 || fail "the munge package did not create the munge user"

    # --------------------------------------------------------------------------------------------- the cluster
    refuse_foreign_configuration
    WORK="$(mktemp -d "$WORK_PARENT/spot-slurm-check.XXXXXX")"
    chmod 755 "$WORK"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$WORK"/{etc,run,log,state,spool}
    if [ ! -d "$CONF_DIR" ]; then MADE_CONF_DIR=1; mkdir -p "$CONF_DIR"; fi
    HOST="$(hostname -s)"

    install -d -o munge -g munge -m 0700 "$WORK/munge"
    install -d -o munge -g munge -m 0755 "$WORK/munge-socket"  # clients (root, the jobs) reach the socket
    dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$WORK/munge/munge.key" && chmod 0400 "$WORK/munge/munge.key"
    SOCKET="$WORK/munge-socket/munge.socket"
    runuser -u munge -- munged --key-file="$WORK/munge/munge.key" --socket="$SOCKET" \
        --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/munged.seed" \
        || fail "munged did not start ($WORK/munge/munged.log)"
    munge -n -S "$SOCKET" | unmunge -S "$SOCKET" >/dev/null || fail "munge credentials do not round-trip"

    # 8 fake GPUs: SLURM's gpu plugin wants a character device per GPU (a copy of /dev/null's); without mknod (a
    # container without CAP_MKNOD) the node has no GPUs and the jobs ask for none
    mkdir -p "$WORK/dev"
    GPUS=32
    for i in $(seq 0 $((GPUS - 1))); do mknod "$WORK/dev/nvidia$i" c 1 3 2>/dev/null || { GPUS=0; break; }; done
    NODE_GRES=""
    if [ "$GPUS" -gt 0 ]; then
        NODE_GRES="Gres=gpu:$GPUS"
        write_conf gres.conf <<< "NodeName=$HOST Name=gpu File=$WORK/dev/nvidia[0-$((GPUS - 1))]"
    else
        say "WARNING: mknod is not allowed here: the test node has no GPUs, and GPU requests are not checked"
        write_conf gres.conf < /dev/null
    fi
    write_conf slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=86400
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$HOST CPUs=256 RealMemory=2048000 $NODE_GRES State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    # -f: daemons of a SLURM under another prefix would otherwise read that SLURM's configuration
    slurmctld -f "$CONF_DIR/slurm.conf" || fail "slurmctld did not start"
    slurmd -f "$CONF_DIR/slurm.conf" || fail "slurmd did not start"
    require_own_controller
    for _ in $(seq 60); do
        state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
        [ "$state" = idle ] && break
        sleep 1
    done
    [ "$state" = idle ] || fail "the node did not come up idle (sinfo: '${state:-no answer}')"
    say "SLURM $(sinfo -V | cut -d' ' -f2) up (cluster $CLUSTER): node $HOST idle in partition $PARTITION" \
        "($(sinfo -h -o '%c CPUs, %m MB, %G'))"

    # ------------------------------------------------------------------------------------------------ the runs
    # settings that change no result (neither is a rule param): training starts as on a cluster, jobs ask for GPUs
    cat > "$WORK/cluster-settings.yaml" <<EOF
train_launcher: torchrun --standalone --nproc_per_node=1 -m spot train
resources: {train_gpus: $((GPUS / 4)), eval_gpus: $((GPUS > 0))}
EOF
    SETTINGS=(--configfile config/smoke.yaml "$WORK/cluster-settings.yaml")
    export PATH="$(dirname "$PYTHON"):$PATH"

    copy_workflow "$WORK/slurm-run"
    mkdir -p "$WORK/overlay"
    cat > "$WORK/overlay/config.yaml" <<EOF
# one-node test cluster only: its partition, no accounts, job status from squeue (no accounting database); the
# jobs' logs are kept for check_jobs.py
slurm-no-account: true
slurm-status-command: squeue
slurm-init-seconds-before-status-checks: 5
slurm-keep-successful-logs: true
EOF
    "$PYTHON" - "$WORK/slurm-run/workflow/profiles/slurm/config.yaml" "$PARTITION" >> "$WORK/overlay/config.yaml" <<'EOF'
import sys, yaml
profile = yaml.safe_load(open(sys.argv[1]))
print(yaml.safe_dump({"default-resources": {**profile["default-resources"], "slurm_partition": sys.argv[2]}}))
EOF
    say "running the $PRESET preset through --profile workflow/profiles/slurm, and locally (--cores 2) beside it"
    copy_workflow "$WORK/local-run"
    (cd "$WORK/local-run" && exec "$PYTHON" -m snakemake --cores 2 "${SETTINGS[@]}" > "$WORK/local-run.log" 2>&1) &
    LOCAL_PID=$!
    (cd "$WORK/slurm-run" && exec "$PYTHON" -m snakemake --profile workflow/profiles/slurm --profile "$WORK/overlay" \
        --verbose "${SETTINGS[@]}" > "$WORK/slurm-run.log" 2>&1) &
    SNAKEMAKE_PID=$!
    wait "$SNAKEMAKE_PID" || { tail -n 60 "$WORK/slurm-run.log" >&2; fail "the SLURM run failed (log above)"; }
    SNAKEMAKE_PID=
    scontrol show job -o > "$WORK/jobs.txt"
    say "SLURM run done: $(grep -c . "$WORK/jobs.txt") jobs in the controller's list"
    wait "$LOCAL_PID" || { tail -n 60 "$WORK/local-run.log" >&2; fail "the local run failed (log above)"; }
    LOCAL_PID=
    say "local run done"

    "$PYTHON" "$HERE/check_jobs.py" --log "$WORK/slurm-run.log" --jobs "$WORK/jobs.txt" --slurm-run "$WORK/slurm-run" \
        --local-run "$WORK/local-run" --preset "$PRESET" || fail "see the checks above"
    say "passed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
