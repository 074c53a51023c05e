#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and for trying the SLURM launcher locally.
#
#   scripts/slurm_local.sh up      # install slurm-wlm + munge if missing, start munged, slurmctld, slurmd
#   scripts/slurm_local.sh env     # print `export SLURM_CONF=...` for the client commands (sbatch, squeue)
#   scripts/slurm_local.sh status  # sinfo + squeue
#   scripts/slurm_local.sh down    # stop every daemon it started, remove its state directory
#
# Needs root (it installs packages and runs slurmd, which starts jobs). Everything lives under
# $SLURM_LOCAL_DIR (default /tmp/slurm-local): slurm.conf, a private munge key and socket, spool,
# state, logs, the pid files. Nothing is written to /etc and no system service is enabled, so `down`
# leaves the machine as it was (the packages stay installed).
#
# The node is sized from this machine (CPUs from nproc, memory from /proc/meminfo) and declares
# $SLURM_LOCAL_FAKE_GPUS GPUs backed by empty files (no real device), so `sbatch --test-only` can check
# multi-GPU submissions; a job actually given them gets no device. No cgroups: proctrack/linuxproc,
# task/none. No database: job records go to a job-completion text file (jobcomp/filetxt), which
# `sacct --completion` reads; running jobs are in squeue / `scontrol show job`.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
FAKE_GPUS=${SLURM_LOCAL_FAKE_GPUS:-8}
KILL_WAIT=${SLURM_LOCAL_KILL_WAIT:-20}   # s between SIGTERM and SIGKILL (scancel, time limit)
UP_TIMEOUT=${SLURM_LOCAL_UP_TIMEOUT:-60}
NODE=$(hostname -s)
CONF=$DIR/slurm.conf

say() { echo "slurm_local: $*" >&2; }
die() { say "$*"; exit 2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (installs packages, runs slurmd); you are $(id -un)"; }

install_packages() {
    local missing=()
    for b in /usr/sbin/slurmctld:slurmctld /usr/sbin/slurmd:slurmd /usr/bin/sbatch:slurm-client /usr/sbin/munged:munge; do
        [ -x "${b%%:*}" ] || missing+=("${b##*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} (apt-get)"
    # The packages' maintainer scripts would start system services; keep them off (we run our own).
    local policy=/usr/sbin/policy-rc.d had_policy=0
    [ -e $policy ] && had_policy=1
    if [ $had_policy = 0 ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$DIR/apt.log" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        say "apt-get install failed; retrying after apt-get update"
        apt-get update -q >>"$DIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$DIR/apt.log" 2>&1 || rc=$?
    fi
    [ $had_policy = 0 ] && rm -f $policy
    [ $rc -eq 0 ] || die "apt-get install ${missing[*]} failed (log: $DIR/apt.log)"
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc --all)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # 10% left to the OS
    mkdir -p "$DIR"/{spool,state,log}
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster on $(hostname), $(date -u +%FT%TZ).
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=$KILL_WAIT
OverTimeLimit=0
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=60
MessageTimeout=20
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    # Fake GPUs: empty files standing in for /dev/nvidia<k> (slurmd drops a gpu gres without File=).
    mkdir -p "$DIR/dev"
    local k
    for k in $(seq 0 $((FAKE_GPUS - 1))); do : >"$DIR/dev/nvidia$k"; done
    echo "NodeName=$NODE Name=gpu File=$DIR/dev/nvidia[0-$((FAKE_GPUS - 1))]" >"$DIR/gres.conf"
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    pid_alive "$DIR/munged.pid" && return 0
    if [ ! -s "$DIR/munge.key" ]; then
        (umask 077; head -c 1024 /dev/urandom >"$DIR/munge.key")
    fi
    chmod 700 "$DIR"
    /usr/sbin/munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munged.seed" \
        || die "munged did not start (log: $DIR/log/munged.log)"
}

wait_idle() {
    local t0=$SECONDS state
    while true; do
        state=$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o '%T' 2>/dev/null || true)
        case "$state" in
            idle|idle~|mixed|allocated) return 0 ;;
        esac
        if [ $((SECONDS - t0)) -ge "$UP_TIMEOUT" ]; then
            say "node $NODE not idle after ${UP_TIMEOUT}s (state: ${state:-none}); logs:"
            tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
            return 1
        fi
        sleep 1
    done
}

up() {
    need_root
    mkdir -p "$DIR"
    install_packages
    write_conf
    start_munge
    export SLURM_CONF=$CONF
    if ! pid_alive "$DIR/slurmctld.pid"; then
        /usr/sbin/slurmctld -i -f "$CONF" || die "slurmctld did not start (log: $DIR/log/slurmctld.log)"
    fi
    if ! pid_alive "$DIR/slurmd.pid"; then
        /usr/sbin/slurmd -f "$CONF" -N "$NODE" || die "slurmd did not start (log: $DIR/log/slurmd.log)"
    fi
    if ! wait_idle; then
        down
        exit 1
    fi
    say "up: node $NODE idle ($(nproc --all) CPUs, $FAKE_GPUS fake GPUs); export SLURM_CONF=$CONF"
}

stop_pid() {  # stop_pid <pidfile> <name>: SIGTERM, wait up to 10 s, then SIGKILL
    local f=$1 pid i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && { say "$2 ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
    fi
    rm -f "$f"
}

down() {
    need_root
    [ -d "$DIR" ] || return 0
    if [ -s "$CONF" ] && pid_alive "$DIR/slurmctld.pid"; then
        # Cancel every job and wait for them to end (KillWait, then SIGKILL), so no slurmstepd or job
        # process outlives the cluster.
        SLURM_CONF=$CONF scancel --quiet --partition=local 2>/dev/null || true
        local t0=$SECONDS
        while [ -n "$(SLURM_CONF=$CONF squeue -h -t PD,R,CG,S,CF,RQ,RS,SO -o %i 2>/dev/null)" ]; do
            [ $((SECONDS - t0)) -ge $((KILL_WAIT + 30)) ] && { say "jobs still ending after $((KILL_WAIT + 30))s"; break; }
            sleep 1
        done
    fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munged.pid" munged
    if [ "${SLURM_LOCAL_KEEP:-0}" = 1 ]; then
        say "down (state kept in $DIR: SLURM_LOCAL_KEEP=1)"
    else
        rm -rf "$DIR"
        say "down"
    fi
}

status() {
    export SLURM_CONF=$CONF
    sinfo
    squeue
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    status) status ;;
    *) die "usage: $0 up|down|env|status (got '${1:-}')" ;;
esac
