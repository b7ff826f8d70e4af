#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the cluster test:
#   .ci/slurm-cluster.sh install | start | stop | status
# slurmctld and slurmd on the local host name, proctrack/linuxproc, task/none, no accounting
# storage, a large MinJobAge (snakemake-executor-plugin-slurm reads job states with squeue), and
# one GPU as a generic resource without a device file: jobs that ask for a GPU (--gpus=1) are
# accepted and scheduled as on a GPU cluster, and run on the CPU.
set -euo pipefail
CONF_DIR=/etc/slurm
STATE=/var/spool/slurm-imgclf

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

start() {
    stop  # a fresh cluster every time: no daemons or job state left from an earlier start
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$CONF_DIR" "$STATE"/ctld "$STATE"/d /var/log/slurm /run/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || runuser -u munge -- munged 2>/dev/null || munged --force
    cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=imgclf
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=86400
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    : > "$CONF_DIR/cgroup.conf"
    echo "NodeName=$host Name=gpu File=/dev/null Count=1" > "$CONF_DIR/gres.conf"
    slurmctld -c 2>/dev/null || slurmctld
    slurmd -c 2>/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            sinfo
            return 0
        fi
        scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "SLURM did not come up; slurmctld log:" >&2
    tail -20 /var/log/slurm/slurmctld.log >&2 || true
    tail -20 /var/log/slurm/slurmd.log >&2 || true
    return 1
}

stop() {
    scancel --quiet --user "$(id -un)" 2>/dev/null || true
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    for _ in $(seq 20); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.5; done
    rm -rf "$STATE"
    # No config, no controller to wait for: with slurm.conf left behind and slurmctld down, every
    # `scontrol` call (snakemake-executor-plugin-slurm makes one whenever snakemake starts)
    # retries for MessageTimeout (10 s) before it gives up.
    rm -f "$CONF_DIR/slurm.conf" "$CONF_DIR/cgroup.conf" "$CONF_DIR/gres.conf"
}

status() { sinfo && squeue; }

"${1:?usage: $0 install|start|stop|status}"
