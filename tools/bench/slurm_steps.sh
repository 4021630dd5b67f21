#!/bin/bash
# Slurm job steps per second through parallel_steps --slurm, against the
# floor: `xargs -P2 srun ...` running the same trivial commands as job steps
# of the same allocation (no capture, no order). Starts its own one-node
# cluster (tools/slurm/local_cluster.sh) and stops it at the end. Also times
# a run outside an allocation, which asks for one and gives it back.
#
#   bazel build -c opt //tools:parallel_steps && tools/bench/slurm_steps.sh [N] [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."

n=${1:-100}
runs=${2:-3}
tool=$PWD/bazel-bin/tools/parallel_steps
[[ -x $tool ]] || { echo "build it first: bazel build -c opt //tools:parallel_steps" >&2; exit 1; }

cluster=$(mktemp -d /tmp/pslurmbench.XXXXXX)
list=$(mktemp)
trap 'tools/slurm/local_cluster.sh stop "$cluster" >/dev/null 2>&1; rm -rf "$cluster" "$list"' EXIT
tools/slurm/local_cluster.sh start "$cluster" >/dev/null
export SLURM_CONF=$cluster/slurm.conf
unset SLURM_JOB_ID
for i in $(seq 1 "$n"); do echo "echo $i"; done >"$list"

job=$(salloc --no-shell -n 2 2>&1 | sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
[[ -n $job ]] || { echo "no allocation" >&2; exit 1; }

seconds() {  # command...; the command list on stdin; prints wall seconds
  local start end
  start=$(date +%s.%N)
  "$@" <"$list" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

ours=() floor=() own=()
for _ in $(seq 1 "$runs"); do
  ours+=("$(SLURM_JOB_ID=$job seconds "$tool" --slurm -j 2)")
  floor+=("$(seconds xargs -P2 -I{} srun --quiet --exclusive --nodes=1 --ntasks=1 --jobid="$job" sh -c '{}')")
done
scancel "$job"
while [[ -n $(squeue --noheader) ]]; do sleep 0.1; done
for _ in $(seq 1 "$runs"); do  # the cluster is free now
  own+=("$(seconds "$tool" --slurm -j 2)")
done

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
o=$(median "${ours[@]}")
f=$(median "${floor[@]}")
a=$(median "${own[@]}")
printf '%d trivial commands as Slurm job steps, 2 at a time, median of %d runs\n' "$n" "$runs"
printf '%-44s %7.3f s  %6.1f steps/s\n' "parallel_steps --slurm -j 2 (in an allocation)" "$o" "$(echo "$n / $o" | bc -l)"
printf '%-44s %7.3f s  %6.1f steps/s  (ours is %.2fx this)\n' "xargs -P2 srun (same allocation)" "$f" "$(echo "$n / $f" | bc -l)" "$(echo "$o / $f" | bc -l)"
printf '%-44s %7.3f s  %6.1f steps/s\n' "parallel_steps --slurm -j 2 (own allocation)" "$a" "$(echo "$n / $a" | bc -l)"
