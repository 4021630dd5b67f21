#!/bin/bash
# A one-node Slurm cluster on this machine, for the --slurm tests and for
# trying the launcher by hand. Uses Debian's slurmctld, slurmd, slurm-client
# and munge (tools/setup.sh installs them); needs no systemd and no cgroups
# (proctrack/linuxproc, task/none). Everything — config, munge key and
# socket, state, logs — lives in DIR; nothing outside it is touched.
#
#   tools/slurm/local_cluster.sh start DIR   # prints: export SLURM_CONF=DIR/slurm.conf
#   tools/slurm/local_cluster.sh stop DIR    # cancels every job, stops the daemons
#   tools/slurm/local_cluster.sh status DIR
#
# `start` exits 0 once `srun` can run a step, 2 when the daemons cannot run on
# this machine (a reason is printed; tests skip on 2), 1 on other errors.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  exit 1
}
(($# == 2)) || usage
command=$1
dir=$2

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

kill_pidfile() {  # pidfile: TERM, then KILL after 5 s
  local file=$1 pid
  [[ -s $file ]] || return 0
  pid=$(<"$file")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

case $command in
  start)
    for binary in munged slurmctld slurmd srun sinfo scancel; do
      if ! command -v "$binary" >/dev/null; then
        echo "local_cluster: $binary is not installed (run tools/setup.sh)" >&2
        exit 2
      fi
    done
    mkdir -p "$dir"/{state,spool,munge}
    dir=$(cd "$dir" && pwd)
    host=$(hostname -s)
    # munge refuses keys and directories that others can read or write.
    chmod 0700 "$dir/munge"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$dir/munge/munge.key"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=parallel-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
ReturnToService=2
KillWait=2
MessageTimeout=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    export SLURM_CONF=$dir/slurm.conf
    # -f: munged may run as root here; its files are all in our private directory.
    if ! munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" 2>"$dir/munge/start.err"; then
      echo "local_cluster: munged cannot run here: $(head -1 "$dir/munge/start.err")" >&2
      exit 2
    fi
    slurmctld -f "$SLURM_CONF" -i
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 300); do
      if srun -N1 -n1 --immediate=5 true >/dev/null 2>&1; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
      fi
      sleep 0.1
    done
    echo "local_cluster: the cluster did not start within 30 s; logs: $dir/slurmctld.log, $dir/slurmd.log" >&2
    "$0" stop "$dir" >/dev/null 2>&1 || true
    exit 2
    ;;
  stop)
    [[ -d $dir ]] || exit 0
    export SLURM_CONF=$dir/slurm.conf
    if [[ -s $dir/slurmctld.pid ]] && kill -0 "$(<"$dir/slurmctld.pid")" 2>/dev/null; then
      scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    fi
    kill_pidfile "$dir/slurmd.pid"
    kill_pidfile "$dir/slurmctld.pid"
    kill_pidfile "$dir/munge/munged.pid"
    ;;
  status)
    export SLURM_CONF=$dir/slurm.conf
    sinfo
    squeue
    ;;
  *)
    usage
    ;;
esac
